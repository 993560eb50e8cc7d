//! The whole system for one test: PostgreSQL, keysync, an echo backend and Envoy with
//! the filter, each a real server on 127.0.0.1, torn down when the stack is dropped.

use crate::echo;
use crate::gateway::{Gateway, GatewayOptions};
use crate::in_process::InProcessServer;
use crate::keysync::{self, CreatedKey, Keysync};
use crate::postgres::TestPostgres;
use std::net::SocketAddr;
use std::time::Duration;

/// The echo backend, served in-process on its own thread until dropped.
pub struct Backend {
    pub addr: SocketAddr,
    _server: InProcessServer,
}

impl Backend {
    pub fn start() -> Backend {
        Backend::serve(echo::router())
    }

    /// A backend serving `router` (an echo that records, for instance).
    pub fn serve(router: axum::Router) -> Backend {
        let server = InProcessServer::start("echo backend", router);
        Backend {
            addr: server.addr,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `BACKEND_URLS` with this backend as `api-service`, the upstream of the shipped
    /// routes.
    pub fn backend_urls(&self) -> String {
        format!("api-service={}", self.url())
    }
}

pub struct Stack {
    pub gateway: Gateway,
    pub keysync: Keysync,
    pub backend: Backend,
    pub database_url: String,
    pub postgres: TestPostgres,
}

impl Stack {
    /// Starts everything; `configure` may adjust the gateway options (plugin configs).
    pub fn start(configure: impl FnOnce(&mut GatewayOptions)) -> Stack {
        Stack::start_with(&[], configure)
    }

    /// Same, with extra environment for keysync (such as `REDIS_URL`).
    pub fn start_with(
        keysync_env: &[(&str, &str)],
        configure: impl FnOnce(&mut GatewayOptions),
    ) -> Stack {
        let postgres = TestPostgres::start();
        let database_url = postgres.create_database();
        Stack::start_on(postgres, database_url, keysync_env, configure)
    }

    /// Same, on a given server and database: a TLS-only one, with a `database_url` that
    /// names its CA, for instance. Migrates the database first.
    pub fn start_on(
        postgres: TestPostgres,
        database_url: String,
        keysync_env: &[(&str, &str)],
        configure: impl FnOnce(&mut GatewayOptions),
    ) -> Stack {
        keysync::migrate(&database_url);
        let keysync = Keysync::start(&database_url, keysync_env);
        let backend = Backend::start();
        let mut options = GatewayOptions::new(keysync.grpc, backend.backend_urls());
        configure(&mut options);
        let gateway = Gateway::start(options);
        Stack {
            gateway,
            keysync,
            backend,
            database_url,
            postgres,
        }
    }

    /// Another Envoy in front of this stack's keysync and backend.
    pub fn start_another_gateway(&self, configure: impl FnOnce(&mut GatewayOptions)) -> Gateway {
        let mut options = GatewayOptions::new(self.keysync.grpc, self.backend.backend_urls());
        configure(&mut options);
        Gateway::start(options)
    }

    pub fn create_org(&self, name: &str) -> String {
        keysync::create_org(&self.database_url, name)
    }

    pub fn create_key(&self, org_id: &str, extra: &[&str]) -> CreatedKey {
        keysync::create_key(&self.database_url, org_id, "test key", extra)
    }

    /// `keysync orgs set-limit <org_id> <args>`, such as `--rpm 100 --burst 20` or
    /// `--clear`; panics when it fails.
    pub fn set_org_limit(&self, org_id: &str, args: &[&str]) {
        keysync::set_org_limit(&self.database_url, org_id, args);
    }

    /// `keysync keys set-limit <key_id> <args>`; panics when it fails.
    pub fn set_key_limit(&self, key_id: &str, args: &[&str]) {
        keysync::set_key_limit(&self.database_url, key_id, args);
    }

    /// Waits until the gateway has completed a refresh that started after this call.
    pub fn wait_for_next_refresh(&self) {
        let offset = self.gateway.process.log_len();
        // A refresh already in flight may predate the change; the next one cannot.
        self.gateway
            .wait_for_refresh_after(offset, Duration::from_secs(30));
        let offset = self.gateway.process.log_len();
        self.gateway
            .wait_for_refresh_after(offset, Duration::from_secs(30));
    }
}
