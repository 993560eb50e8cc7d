//! The HTTP contexts Envoy creates for every request on a worker: an auth filter's hands
//! the SDK's callbacks to the request flow (the core's `AuthRequest`); the readiness
//! gate's asks the core's `ReadinessGate`; a plugin that is neither gets one that
//! refuses (`role::refuse_misconfigured`).

use crate::adapter::proxy_wasm_host::{self, ProxyWasmHost, ProxyWasmRequest};
use crate::adapter::role::refuse_misconfigured;
use keysync_filter_core::{AuthRequest, ReadinessGate};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct AuthHttpContext {
    pub request: AuthRequest<ProxyWasmHost>,
}

pub fn action(action: keysync_filter_core::Action) -> Action {
    match action {
        keysync_filter_core::Action::Continue => Action::Continue,
        keysync_filter_core::Action::Pause => Action::Pause,
    }
}

impl Context for AuthHttpContext {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let reply = proxy_wasm_host::call_reply(status_code, response_size);
        self.request.on_lookup_reply(token_id, reply);
    }
}

impl HttpContext for AuthHttpContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        #[cfg(feature = "crash-test")]
        crate::adapter::crash_test::on_request();
        action(self.request.on_request_headers())
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.request.on_response_headers();
        Action::Continue
    }

    // Envoy calls the body callbacks whether or not the filter overrides them (the SDK
    // exports them all), and hands over each chunk's size: counting it costs no host call.
    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.request.on_request_body(body_size);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.request.on_response_body(body_size);
        Action::Continue
    }

    fn on_log(&mut self) {
        self.request.finish();
    }
}

/// The probe listener's `/ready`: 503 until the store holds a complete sync.
pub struct ReadyHttpContext {
    pub gate: Rc<ReadinessGate<ProxyWasmHost>>,
    pub request: ProxyWasmRequest,
}

impl Context for ReadyHttpContext {}

impl HttpContext for ReadyHttpContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(self.gate.on_request_headers(&self.request))
    }
}

/// Stands in when a plugin that is not an HTTP filter sees HTTP traffic: fail closed.
pub struct Misconfigured {
    pub request: ProxyWasmRequest,
}

impl Context for Misconfigured {}

impl HttpContext for Misconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        action(refuse_misconfigured(&self.request))
    }
}
