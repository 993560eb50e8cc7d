//! The root context Envoy creates for each plugin instance: reads the configuration,
//! becomes the role it asks for (`role`), and hands Envoy's callbacks to it.

use crate::adapter::http_context::{AuthHttpContext, Misconfigured, ReadyHttpContext};
use crate::adapter::proxy_wasm_host::{self, ProxyWasmHost, ProxyWasmRequest};
use crate::adapter::role::{RequestFlow, Role};
use log::error;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

#[derive(Default)]
pub struct Plugin {
    role: Option<Role<ProxyWasmHost>>,
}

impl Context for Plugin {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if let Some(service) = self.role.as_mut().and_then(Role::sync_service) {
            let reply = proxy_wasm_host::call_reply(status_code, response_size);
            service.on_response(token_id, reply);
        }
    }

    fn on_grpc_stream_message(&mut self, token_id: u32, message_size: usize) {
        if let Some(service) = self.role.as_mut().and_then(Role::sync_service) {
            service.on_stream_message(token_id, proxy_wasm_host::stream_message(message_size));
        }
    }

    fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
        if let Some(service) = self.role.as_mut().and_then(Role::sync_service) {
            service.on_stream_close(token_id, status_code);
        }
    }
}

impl RootContext for Plugin {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        // Envoy drops lines below its level anyway: skip formatting them and the host call.
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let bytes = hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let (role, tick) = match Role::configure(ProxyWasmHost, &bytes) {
            Ok(configured) => configured,
            Err(e) => {
                error!("{e}");
                return false;
            }
        };
        if !tick.is_zero() {
            if let Err(e) = hostcalls::set_tick_period(tick) {
                error!("cannot set the tick period: {e:?}");
                return false;
            }
        }
        self.role = Some(role);
        true
    }

    fn on_tick(&mut self) {
        #[cfg(feature = "crash-test")]
        if matches!(self.role, Some(Role::Sync(_))) {
            crate::adapter::crash_test::on_sync_tick();
        }
        if let Some(role) = &mut self.role {
            role.on_tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let request = ProxyWasmRequest { context_id };
        // The SDK panics on None, so a misconfigured filter gets a context that refuses.
        let Some(role) = &self.role else {
            return Some(Box::new(Misconfigured { request }));
        };
        Some(match role.new_request(request) {
            RequestFlow::Auth(request) => Box::new(AuthHttpContext { request }),
            RequestFlow::Ready(gate, request) => Box::new(ReadyHttpContext { gate, request }),
            RequestFlow::Refused(request) => Box::new(Misconfigured { request }),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
