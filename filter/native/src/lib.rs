//! keysync's native Envoy filter: an Envoy dynamic module (`libkeysync_filter_native.so`)
//! loaded by `envoy.filters.http.dynamic_modules` and `envoy.bootstrap.dynamic_modules`.
//!
//! For now this is the layer under it: `abi` (the dynamic-module ABI of Envoy 1.40, the only
//! `unsafe` code, with safe handles over it), `panic_guard` (no panic reaches Envoy) and
//! `registry` (which filters a build contains). The filter itself, an adapter implementing
//! the filter core's host seam over `abi`, comes next; the `demo` feature builds a
//! demonstration filter that the smoke test (`e2e/tests/native_abi.rs`) drives through every
//! declaration in a real Envoy.
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
// Until the adapter on the filter core uses it, only the demonstration calls most of it.
#[cfg_attr(not(feature = "demo"), allow(dead_code, unused_imports))]
mod abi;
#[cfg(feature = "demo")]
mod demo;
mod panic_guard;
mod registry;

/// The module Envoy's hooks reach (see `abi::Module`).
static MODULE: &dyn abi::Module = &registry::Registry;
