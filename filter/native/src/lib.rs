//! keysync's native Envoy filter: an Envoy dynamic module (`libkeysync_filter_native.so`)
//! loaded by `envoy.filters.http.dynamic_modules` (the auth filter, `keysync-auth`) and
//! `envoy.bootstrap.dynamic_modules` (the sync service, `keysync-sync`). The logic is the
//! filter core's (`keysync-filter-core`), the same as the wasm filter's; this crate is its
//! second adapter:
//!
//! - `abi`: the dynamic-module ABI of Envoy 1.40 (the only `unsafe` code), with safe handles;
//! - `native_host`, `native_request`: the core's host seam over them, with the store in
//!   process memory (`shared_store`), stats between flushes (`metric_table`), gRPC to keysync
//!   over Envoy's HTTP streams (`grpc`) and the core's log lines in Envoy's (`envoy_logger`);
//! - `auth_filter`: the HTTP filter on every worker; `sync_extension`: the sync service;
//! - `panic_guard` (no panic reaches Envoy) and `registry` (which filters a build contains).
//!
//! The `demo` feature adds a demonstration filter that the smoke test
//! (`e2e/tests/native_abi.rs`) drives through every declaration in a real Envoy; the
//! `contract-calls` feature a benchmark control, the contract's calls alone
//! (`contract_calls`).
#![deny(unsafe_code)]
// Runs inside Envoy's process: a panic is caught at the hooks, but none is planned.
#![deny(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unimplemented,
    clippy::unreachable
)]

// With `panic = "abort"` the guard catches nothing and the first panic kills Envoy.
#[cfg(panic = "abort")]
compile_error!(
    "keysync-filter-native must unwind on panic: build it with `--profile native-release` \
     (make build-native), not the workspace's abort-on-panic release profile"
);

#[allow(unsafe_code)]
// Parts only the demonstration calls (callouts, per-stream metrics) are kept for it.
#[cfg_attr(not(feature = "demo"), allow(dead_code, unused_imports))]
mod abi;
mod auth_filter;
#[cfg(feature = "contract-calls")]
mod contract_calls;
#[cfg(feature = "demo")]
mod demo;
mod envoy_logger;
mod grpc;
mod metric_table;
mod native_host;
mod native_request;
mod panic_guard;
mod registry;
mod shared_store;
mod sync_extension;
mod wakeups;

/// The module Envoy's hooks reach (see `abi::Module`).
static MODULE: &dyn abi::Module = &registry::Registry;
