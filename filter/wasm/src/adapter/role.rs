//! Which role a plugin instance plays, chosen from its configuration when Envoy
//! configures it: an auth filter on a worker (with a stand-by sync service, made on its
//! first tick, that syncs only if the singleton's VM died), the singleton sync service,
//! or the readiness gate of the probe listener. Plain code over the core's host seam,
//! so role selection is tested natively; the root context only hands it what Envoy
//! calls.

use keysync_contract::reply::{self as response, Denial};
use keysync_filter_core::{
    Action, AuthRequest, AuthWorker, ConfigError, Host, HttpRequest, PluginConfig, ReadinessGate,
    SyncService, SYNC_TICK, WORKER_TICK,
};
use log::{error, info};
use std::rc::Rc;
use std::time::Duration;

pub enum Role<H: Host> {
    /// An auth worker, with the sync service it stands by with (made on its first
    /// tick, once the singleton had a chance to share its configuration).
    Auth {
        worker: Rc<AuthWorker<H>>,
        standby: Option<Box<SyncService<H>>>,
    },
    Sync(Box<SyncService<H>>),
    /// Answers 503 until the store holds a complete sync; no tick.
    Ready(Rc<ReadinessGate<H>>),
}

/// What a plugin does with one HTTP request, by role.
pub enum RequestFlow<H: Host> {
    Auth(AuthRequest<H>),
    Ready(Rc<ReadinessGate<H>>, H::Request),
    /// Not an HTTP filter's role: [`refuse_misconfigured`].
    Refused(H::Request),
}

impl<H: Host + Clone> Role<H> {
    /// The role the plugin configuration `bytes` asks for, and how often it ticks (zero:
    /// never).
    pub fn configure(host: H, bytes: &[u8]) -> Result<(Role<H>, Duration), ConfigError> {
        Ok(match PluginConfig::parse(bytes)? {
            PluginConfig::Auth(config) => (
                Role::Auth {
                    worker: Rc::new(AuthWorker::new(host, config)),
                    standby: None,
                },
                WORKER_TICK,
            ),
            PluginConfig::Sync(config) => {
                info!(
                    "keysync sync service configured: cluster={}, refresh_interval={}s",
                    config.keysync_cluster,
                    config.refresh_interval.as_secs()
                );
                (
                    Role::Sync(Box::new(SyncService::singleton(host, config, bytes))),
                    SYNC_TICK,
                )
            }
            PluginConfig::Ready => (
                Role::Ready(Rc::new(ReadinessGate::new(host))),
                Duration::ZERO,
            ),
        })
    }

    /// The sync service of this VM: the singleton's, or a worker's stand-by.
    pub fn sync_service(&mut self) -> Option<&mut SyncService<H>> {
        match self {
            Role::Sync(service)
            | Role::Auth {
                standby: Some(service),
                ..
            } => Some(service),
            Role::Auth { standby: None, .. } | Role::Ready(_) => None,
        }
    }

    pub fn on_tick(&mut self) {
        match self {
            Role::Auth { worker, standby } => {
                worker.on_tick();
                if standby.is_none() {
                    *standby =
                        SyncService::standby(worker.host.clone(), &worker.config.keysync_cluster)
                            .map(Box::new);
                }
                if let Some(service) = standby {
                    service.on_tick();
                }
            }
            Role::Sync(service) => service.on_tick(),
            Role::Ready(_) => {}
        }
    }

    /// The flow of a new HTTP request: an auth filter's request flow, the readiness
    /// gate, or a refusal for a plugin that is neither.
    pub fn new_request(&self, request: H::Request) -> RequestFlow<H> {
        match self {
            Role::Auth { worker, .. } => {
                RequestFlow::Auth(AuthRequest::new(Rc::clone(worker), request))
            }
            Role::Ready(gate) => RequestFlow::Ready(Rc::clone(gate), request),
            Role::Sync(_) => RequestFlow::Refused(request),
        }
    }
}

/// What a plugin that is not an HTTP filter (a sync service, or a plugin whose
/// configuration was refused) does with HTTP traffic: fail closed, 503.
pub fn refuse_misconfigured<R: HttpRequest>(request: &R) -> Action {
    error!(
        "keysync plugin without role \"auth\" or \"ready\" used as an HTTP filter; refusing requests"
    );
    let reply = response::reply(Denial::Unavailable, 403);
    let _ = request.send_reply(reply.status, reply.headers, reply.body);
    Action::Pause
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_filter_core::fake::{logged_line, FakeHost};

    const NOW_MS: u64 = 1_700_000_000_000;

    fn configure(host: &FakeHost, config: &str) -> Result<(Role<FakeHost>, Duration), String> {
        Role::configure(host.clone(), config.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_configuration_makes_an_auth_filter_on_the_worker_tick() {
        let host = FakeHost::at(NOW_MS);
        let (mut role, tick) = configure(&host, "").unwrap();
        assert!(matches!(role, Role::Auth { standby: None, .. }));
        assert_eq!(tick, Duration::from_millis(250));
        assert!(
            role.sync_service().is_none(),
            "no stand-by before the first tick"
        );
        // Its requests go through the request flow: no key, the contract's 401.
        host.new_request(&[(":path", "/orders")]);
        let RequestFlow::Auth(mut request) = role.new_request(host.request(7)) else {
            panic!("an auth filter");
        };
        assert_eq!(request.on_request_headers(), Action::Pause);
        assert_eq!(host.reply().map(|reply| reply.status), Some(401));
    }

    #[test]
    fn role_sync_makes_the_singleton_which_shares_its_configuration() {
        let host = FakeHost::at(NOW_MS);
        let config = r#"{"role":"sync","page_size":50}"#;
        let (mut role, tick) = configure(&host, config).unwrap();
        assert!(matches!(role, Role::Sync(_)));
        assert_eq!(tick, SYNC_TICK);
        assert!(role.sync_service().is_some());
        assert_eq!(
            host.shared.value("keysync.sync_config"),
            Some(config.as_bytes().to_vec()),
            "left for the workers' stand-bys"
        );
        assert!(logged_line("keysync sync service configured: cluster=keysync").is_some());
    }

    #[test]
    fn a_sync_service_seeing_http_traffic_refuses_it_with_503() {
        let host = FakeHost::at(NOW_MS);
        let (role, _) = configure(&host, r#"{"role":"sync"}"#).unwrap();
        host.new_request(&[("authorization", "Bearer sk_live_0123456789abcdef")]);
        let request = host.request(9);
        assert!(matches!(
            role.new_request(request.clone()),
            RequestFlow::Refused(_)
        ));
        assert_eq!(refuse_misconfigured(&request), Action::Pause);
        let reply = host.reply().expect("refused");
        assert_eq!(reply.status, 503);
        assert!(reply.body.contains("auth_unavailable"), "{}", reply.body);
        assert_eq!(host.resumed.get(), 0);
        assert!(logged_line("without role \"auth\" or \"ready\" used as an HTTP filter").is_some());
    }

    #[test]
    fn role_ready_makes_the_readiness_gate_which_never_ticks() {
        let host = FakeHost::at(NOW_MS);
        let (mut role, tick) = configure(&host, r#"{"role":"ready"}"#).unwrap();
        assert!(matches!(role, Role::Ready(_)));
        assert_eq!(tick, Duration::ZERO);
        assert!(role.sync_service().is_none());
        role.on_tick();
        host.new_request(&[(":path", "/ready")]);
        let RequestFlow::Ready(gate, request) = role.new_request(host.request(3)) else {
            panic!("the readiness gate");
        };
        assert_eq!(gate.on_request_headers(&request), Action::Pause);
        assert_eq!(host.reply().map(|reply| reply.status), Some(503));
    }

    #[test]
    fn a_bad_configuration_is_refused_with_its_reason() {
        let host = FakeHost::at(NOW_MS);
        for (config, reason) in [
            (r#"{"role":"proxy"}"#, "role must be"),
            ("{not json", "invalid keysync plugin configuration"),
            (r#"{"role":"sync","public_paths":[]}"#, "only applies"),
        ] {
            let Err(error) = configure(&host, config) else {
                panic!("{config} accepted");
            };
            assert!(error.contains(reason), "{config}: {error}");
        }
        assert!(host.metrics.borrow().is_empty(), "nothing was set up");
    }

    #[test]
    fn an_auth_worker_stands_by_from_its_first_tick() {
        let host = FakeHost::at(NOW_MS);
        let (singleton, _) = configure(&host, r#"{"role":"sync","page_size":50}"#).unwrap();
        let (mut worker, _) = configure(&host, "{}").unwrap();
        worker.on_tick();
        assert!(
            worker.sync_service().is_some(),
            "a stand-by from the first tick"
        );
        // It stands by: the singleton's lease is fresh, so it never calls keysync.
        let mut singleton = singleton;
        for _ in 0..8 {
            host.advance(Duration::from_millis(250));
            singleton.on_tick();
            let calls = host.calls.borrow().len();
            worker.on_tick();
            assert_eq!(host.calls.borrow().len(), calls);
        }
    }
}
