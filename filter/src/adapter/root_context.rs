//! The root context Envoy creates for each plugin instance: reads the configuration and
//! becomes either the auth filter (one per worker) or the sync service (one per process).

use super::http_context::AuthHttpContext;
use super::proxy_wasm_host::{self, ProxyWasmHost};
use crate::auth_request::AuthRequest;
use crate::auth_worker::{AuthWorker, WORKER_TICK};
use crate::config::PluginConfig;
use crate::host::Host;
use crate::sync_service::{self, SyncService};
use keysync_contract::reply::{self as response, Denial};
use log::{error, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType};
use std::rc::Rc;

#[derive(Default)]
pub struct Plugin {
    role: Option<Role>,
}

enum Role {
    /// An auth worker, with the sync service it stands by with (made on its first
    /// tick, once the singleton had a chance to share its configuration).
    Auth(
        Rc<AuthWorker<ProxyWasmHost>>,
        Option<Box<SyncService<ProxyWasmHost>>>,
    ),
    Sync(Box<SyncService<ProxyWasmHost>>),
}

impl Role {
    /// The sync service of this VM: the singleton's, or a worker's stand-by.
    fn sync_service(&mut self) -> Option<&mut SyncService<ProxyWasmHost>> {
        match self {
            Role::Sync(service) | Role::Auth(_, Some(service)) => Some(service),
            Role::Auth(_, None) => None,
        }
    }
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
        let config = match PluginConfig::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                error!("{e}");
                return false;
            }
        };
        let (role, tick) = match config {
            PluginConfig::Auth(config) => (
                Role::Auth(Rc::new(AuthWorker::new(ProxyWasmHost, config)), None),
                WORKER_TICK,
            ),
            PluginConfig::Sync(config) => {
                info!(
                    "keysync sync service configured: cluster={}, refresh_interval={}s",
                    config.keysync_cluster,
                    config.refresh_interval.as_secs()
                );
                (
                    Role::Sync(Box::new(SyncService::singleton(
                        ProxyWasmHost,
                        config,
                        &bytes,
                    ))),
                    sync_service::TICK,
                )
            }
        };
        if let Err(e) = hostcalls::set_tick_period(tick) {
            error!("cannot set the tick period: {e:?}");
            return false;
        }
        self.role = Some(role);
        true
    }

    fn on_tick(&mut self) {
        match &mut self.role {
            Some(Role::Auth(worker, standby)) => {
                worker.on_tick();
                if standby.is_none() {
                    *standby = SyncService::standby(ProxyWasmHost, &worker.config.keysync_cluster)
                        .map(Box::new);
                }
                if let Some(service) = standby {
                    service.on_tick();
                }
            }
            Some(Role::Sync(service)) => {
                #[cfg(feature = "crash-test")]
                super::crash_test::on_sync_tick();
                service.on_tick()
            }
            None => {}
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK panics on None, so a misconfigured filter gets a context that refuses.
        Some(match &self.role {
            Some(Role::Auth(worker, _)) => Box::new(AuthHttpContext {
                request: AuthRequest::new(Rc::clone(worker), context_id),
            }),
            _ => Box::new(Misconfigured),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Stands in when a plugin that is not an auth filter sees HTTP traffic: fail closed.
struct Misconfigured;

impl Context for Misconfigured {}

impl HttpContext for Misconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        error!("keysync plugin without role \"auth\" used as an HTTP filter; refusing requests");
        let reply = response::reply(Denial::Unavailable, 403);
        let _ = ProxyWasmHost.send_reply(reply.status, reply.headers, reply.body);
        Action::Pause
    }
}
