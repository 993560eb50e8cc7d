//! A demonstration filter and bootstrap extension (feature `demo`, test builds only, not the
//! product): small on purpose, they drive every declaration of `abi` through a real Envoy so
//! that `e2e/tests/native_abi.rs` can tell a wrong declaration from a right one.
//!
//! - `keysync-abi-demo` (HTTP filter, `filter.rs`): 401 without `x-api-key`, 403 for a wrong
//!   key (the contract's replies), and for the right one forwards with headers read from
//!   Envoy (source address, route name, route metadata); a `x-demo-panic` header panics;
//!   `x-demo-wait` makes the request wait for a thread, a callout, or work on the main thread
//!   (`main_thread.rs`: a configuration's callout or stream) before it is forwarded.
//! - `keysync-abi-demo-gate` (bootstrap extension, `init_gate.rs`): holds Envoy's init until
//!   a file exists.

mod filter;
mod init_gate;
mod main_thread;
mod settings;

pub use filter::{new_filter_config, FILTER_NAME};
pub use init_gate::{new_init_gate, INIT_GATE_NAME};
