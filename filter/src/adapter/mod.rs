//! The proxy-wasm adapter: the only code that talks to Envoy. It implements the
//! [`crate::host::Host`] seam with `proxy_wasm::hostcalls` and turns the SDK's context
//! callbacks into calls on the filter's flows (`auth_request`, `sync_service`).

#[cfg(feature = "crash-test")]
mod crash_test;
mod http_context;
mod proxy_wasm_host;
mod root_context;

pub use root_context::Plugin;
