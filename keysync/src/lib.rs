//! keysync: the sidecar that serves API-key records to the Envoy wasm filter, and the
//! operator CLI that creates and revokes those keys.
//!
//! The binary (`main.rs`) only parses arguments and reports errors; everything else is
//! here so tests can drive it in-process. The folders follow a key from PostgreSQL to
//! Envoy:
//!
//! - [`key_set`]: the in-memory model of the active keys (entries, their rate limits and
//!   policies, the compact table, the changes and their log);
//! - [`sync`]: keeping that key set in step with PostgreSQL (full reloads, catch-ups by
//!   revision as soon as PostgreSQL announces a change, and what a lookup of an unknown
//!   key waits for);
//! - [`serve`]: serving the key set to the filter over gRPC (`ListKeys`, `LookupKey`,
//!   the `WatchKeys` stream), to gateways without the filter through Envoy's external
//!   authorization API, and an admin HTTP port for health and metrics;
//! - [`global_limit`]: Envoy's rate-limit service on the same gRPC port, counting in
//!   Redis across every gateway;
//! - [`operations`]: what operators do to organizations, keys and rate limits, with
//!   validation and transactions, returning serializable results;
//! - [`cli`]: the command line that parses arguments, calls an operation (or runs
//!   `serve`) and prints the result as text or JSON;
//! - [`admin_api`]: the same operations over HTTP (`/v1/` on the admin port), for
//!   operators' own backends, with admin tokens and idempotent creates;
//! - [`leak_reports`]: the endpoint a secret scanner posts leaked keys to (signed), which
//!   revokes or flags them;
//! - [`usage`]: the gateways' usage counters, flushed over gRPC and rolled up by hour in
//!   PostgreSQL (read by [`operations::usage`]).
//!
//! The rest is shared: settings ([`config`]), the PostgreSQL connection ([`database`]),
//! metrics, readiness, shutdown, key hashes, the clock and keeping repeated complaints to
//! one log line a period ([`log_throttle`]).
#![forbid(unsafe_code)]

pub mod admin_api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod database;
pub mod global_limit;
pub mod key_hash;
pub mod key_set;
pub mod leak_reports;
pub mod log_throttle;
pub mod metrics;
pub mod operations;
pub mod quota;
pub mod readiness;
pub mod serve;
pub mod shutdown;
pub mod sync;
pub mod url_redaction;
pub mod usage;
