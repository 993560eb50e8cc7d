//! keysync's Envoy wasm filter: authenticates API keys against a key store held in
//! Envoy shared data, kept current from keysync.
//!
//! One `.wasm`, two roles (see `config`): the auth filter on every worker
//! (`auth_worker`, `auth_request`) and the sync service once per process
//! (`sync_service`, `full_refresh`, `watch_client`). Both reach Envoy only through the
//! [`host::Host`] seam, implemented with proxy-wasm host calls in `adapter/` and by a
//! fake in native unit tests; the contract itself (credentials, replies) lives in
//! `keysync-contract`. Every module is private: the dead-code lint sees unused items.
#![forbid(unsafe_code)]
// Runs inside Envoy's wasm VM, where a panic kills the VM of a whole worker.
#![deny(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unimplemented,
    clippy::unreachable
)]

mod adapter;
mod auth_request;
mod auth_worker;
mod bucket;
mod config;
mod decision;
mod duration_sample;
#[cfg(test)]
mod fake_host;
mod full_refresh;
mod host;
mod key_hash;
mod key_store;
mod keysync_api;
mod local_rate_limit;
mod negative_cache;
mod policy;
mod provenance;
mod quota;
mod quota_sync;
mod record;
mod record_cache;
mod schedule;
mod shared_data;
mod staleness;
mod stats;
mod store_meta;
mod sync_lease;
mod sync_service;
mod usage;
mod usage_flush;
mod watch_client;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // Also installs a panic hook that logs at critical level. The root context narrows
    // the level to Envoy's own once host calls are allowed.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(adapter::Plugin::default())
    });
}}
