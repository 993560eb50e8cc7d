//! keysync: the sidecar that serves API-key records to the Envoy wasm filter, and the
//! operator CLI that creates and revokes those keys.
//!
//! The binary (`main.rs`) only parses arguments and reports errors; everything else is
//! here so tests can drive it in-process. The folders follow a key from PostgreSQL to
//! Envoy:
//!
//! - [`key_set`]: the in-memory model of the active keys (entries, their rate limits and
//!   policies, the compact table, the changes and their log), which `sync` writes and
//!   `grpc` reads;
//! - [`sync`]: keeping that key set in step with PostgreSQL (full reloads, catch-ups by
//!   revision as soon as PostgreSQL announces a change, the periodic confirmation, and
//!   what a lookup of an unknown key waits for);
//! - [`global_limit`], [`quota`], [`usage`]: the rate-limit counters in Redis, monthly
//!   quota leases, and the gateways' usage counters rolled up by hour in PostgreSQL;
//! - [`anomaly`]: each organization's hourly traffic judged against its own baseline,
//!   and the alerts raised when it departs from it;
//! - [`billing`]: price plans and what an organization's usage costs on them (exact
//!   integer money), and the invoices issued at each month's close;
//! - [`grpc`]: every service on the gRPC port (`keysync.v1.KeySync` for the filter, with
//!   its `WatchKeys` stream, usage flushes and quota leases; Envoy's rate-limit and
//!   external authorization APIs; gRPC health), and the port's token, TLS and guard;
//! - [`fleet`]: the gateways that report the revision they serve, kept in PostgreSQL,
//!   and the receipts of revocations that wait for them;
//! - [`admin_port`]: the admin HTTP port (`/healthz`, `/readyz`, `/metrics`);
//! - [`api_port`]: the operator API's own listener (`/v1/`, the leak-report endpoint, the
//!   web console of [`console`]);
//! - [`server`]: the composition root of `keysync serve`, which wires all of the above
//!   together with their [`metrics`];
//! - [`operations`]: what operators do to organizations, keys, rate limits and quotas,
//!   with validation and transactions, returning serializable results;
//! - [`cli`]: the command line that parses arguments, calls an operation (or runs
//!   `serve`) and prints the result as text or JSON;
//! - [`admin_api`]: the same operations over HTTP (`/v1/` on the API listener), for
//!   operators' own backends, with admin tokens and idempotent creates;
//! - [`leak_reports`]: the endpoint a secret scanner posts leaked keys to (signed), which
//!   revokes or flags them;
//! - [`webhooks`]: signed webhooks (Standard Webhooks): the outbox the changes write,
//!   and `serve`'s sender.
//!
//! The rest is shared: settings ([`config`]), the PostgreSQL connection ([`database`],
//! with libpq's TLS rules in [`database_tls`]; [`ca_file`] and [`tls_failure`] serve
//! TLS to PostgreSQL and Redis alike), readiness, shutdown, the clock, metric label
//! spelling ([`metric_label`]), keeping repeated complaints to one log line a period
//! ([`log_throttle`]), URLs with their password hidden ([`url_redaction`]) and settings
//! files read again when they change ([`watched_file`]). The
//! wire's vocabulary (key hashes, subject kinds, usage outcomes, key policies) is
//! [`keysync_contract`]'s, shared with the filter.
#![forbid(unsafe_code)]

pub mod admin_api;
pub mod admin_port;
pub mod anomaly;
pub mod api_port;
pub mod billing;
pub mod ca_file;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod database;
pub mod database_tls;
pub mod fleet;
pub mod global_limit;
pub mod grpc;
pub mod key_set;
pub mod leak_reports;
pub mod log_throttle;
pub mod metric_label;
pub mod metrics;
pub mod operations;
pub mod quota;
pub mod readiness;
pub mod server;
pub mod shutdown;
pub mod sync;
pub mod tls_failure;
pub mod url_redaction;
pub mod usage;
pub mod watched_file;
pub mod webhooks;
