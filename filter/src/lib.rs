//! keysync's Envoy wasm filter: authenticates API keys against a key store held in
//! Envoy shared data, kept current from keysync.
//!
//! The decisions (the store layout, verdicts, refresh bookkeeping, rate limits; the
//! contract itself, credentials and replies, lives in `keysync-contract`) are plain
//! Rust tested natively; the modules that make proxy-wasm host calls
//! (`plugin`, `auth_request`, `sync_service`, `shared_data`, `keysync_api`, `clock`,
//! `stats`) are kept thin.
#![forbid(unsafe_code)]
// Runs inside Envoy's wasm VM, where a panic kills the VM of a whole worker.
#![deny(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unimplemented,
    clippy::unreachable
)]

pub mod bucket;
pub mod config;
pub mod decision;
pub mod key_hash;
pub mod key_store;
pub mod local_rate_limit;
pub mod negative_cache;
pub mod record;
pub mod record_cache;
pub mod refresh;
pub mod schedule;
pub mod shared_data;
pub mod store_meta;
pub mod watch;

mod auth_request;
mod auth_worker;
mod clock;
mod keysync_api;
mod plugin;
mod stats;
mod sync_service;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // Also installs a panic hook that logs at critical level. `plugin` narrows the level
    // to Envoy's own once host calls are allowed.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(plugin::Plugin::default())
    });
}}
