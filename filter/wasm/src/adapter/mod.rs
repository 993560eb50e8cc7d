//! The proxy-wasm adapter: the only code that talks to Envoy. It implements the core's
//! host seam with `proxy_wasm::hostcalls` (`proxy_wasm_host`) and turns the SDK's context
//! callbacks into calls on the core's flows (`root_context`, `http_context`); what it
//! decides itself is plain code tested natively (`role`, `grpc_reply`).

#[cfg(feature = "crash-test")]
mod crash_test;
mod grpc_reply;
mod http_context;
mod proxy_wasm_host;
mod role;
mod root_context;

pub use root_context::Plugin;
