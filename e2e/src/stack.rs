//! The whole system for one test: PostgreSQL, keysync, an echo backend and Envoy with
//! the filter, each a real server on 127.0.0.1, torn down when the stack is dropped.

use crate::echo;
use crate::gateway::{Gateway, GatewayOptions};
use crate::keysync::{self, CreatedKey, Keysync};
use crate::postgres::TestPostgres;
use std::net::SocketAddr;
use std::time::Duration;

/// The echo backend, served in-process on its own thread.
pub struct Backend {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    pub fn start() -> Backend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind echo backend");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("echo backend address");
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("echo backend runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let _ = echo::serve_until(listener, async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        Backend {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
        keysync::migrate(&database_url);
        let keysync = Keysync::start(&database_url, keysync_env);
        let backend = Backend::start();
        let mut options =
            GatewayOptions::new(keysync.grpc, format!("api-service={}", backend.url()));
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
        let mut options = GatewayOptions::new(
            self.keysync.grpc,
            format!("api-service={}", self.backend.url()),
        );
        configure(&mut options);
        Gateway::start(options)
    }

    pub fn create_org(&self, name: &str) -> String {
        keysync::create_org(&self.database_url, name)
    }

    pub fn create_key(&self, org_id: &str, extra: &[&str]) -> CreatedKey {
        keysync::create_key(&self.database_url, org_id, "test key", extra)
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
