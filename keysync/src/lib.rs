//! keysync: the sidecar that serves API-key records to the Envoy wasm filter, and the
//! operator CLI that creates and revokes those keys.
//!
//! The binary (`main.rs`) only parses arguments and reports errors; everything else is
//! here so tests can drive it in-process. `serve` keeps an in-memory copy of the active
//! keys ([`store`], laid out compactly in a [`key_table`]), fills it from PostgreSQL
//! ([`loader`], [`refresh`]), follows changes by revision ([`catch_up`]) as soon as
//! PostgreSQL announces them ([`change_listener`]), so that lookups of unknown keys need
//! not ask the database ([`freshness`], [`miss`]), keeps the recent changes
//! ([`changelog`], [`change_feed`]), and answers the filter over gRPC ([`grpc`],
//! [`watch`]) while an admin HTTP port reports health and metrics ([`admin`],
//! [`metrics`]). Each key record carries the rate limit it runs under
//! ([`rate_limit`]; operators set limits through [`limits`]), and the same gRPC port
//! serves Envoy's rate-limit service, counting in Redis across every gateway
//! ([`global_limit`]). For gateways without the wasm filter, it also answers Envoy's
//! external authorization API from the same store ([`ext_authz`]).
#![forbid(unsafe_code)]

pub mod admin;
pub mod api_key;
pub mod backoff;
pub mod catch_up;
pub mod change_feed;
pub mod change_listener;
pub mod changelog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod database;
pub mod ext_authz;
#[cfg(test)]
mod fake_catch_up;
pub mod freshness;
pub mod global_limit;
pub mod grpc;
pub mod key_table;
pub mod keys;
pub mod limits;
pub mod loader;
pub mod metrics;
pub mod miss;
pub mod orgs;
pub mod rate_limit;
pub mod readiness;
pub mod refresh;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod table;
pub mod url_redaction;
pub mod watch;
