//! keysync's Envoy wasm filter: the proxy-wasm adapter of `keysync-filter-core`. The
//! logic (the request flow, the sync service, the store) is the core's; this crate only
//! implements the core's host seam with proxy-wasm host calls (`adapter/`) and hands
//! Envoy's callbacks to it.
//!
//! One `.wasm`, two roles (see the core's plugin configuration): the auth filter on every
//! worker and the sync service once per process.
#![forbid(unsafe_code)]
// Runs inside Envoy's wasm VM, where a panic kills the VM of a whole worker.
#![deny(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unimplemented,
    clippy::unreachable
)]

mod adapter;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // Also installs a panic hook that logs at critical level. The root context narrows
    // the level to Envoy's own once host calls are allowed.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(adapter::Plugin::default())
    });
}}
