//! An HTTP server that runs inside the test process: an axum router served on a free
//! 127.0.0.1 port by its own thread and runtime, so plain synchronous tests can start one
//! (the echo backend, the rogue keysync) and stop it by dropping it.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use axum::Router;
use tokio::sync::oneshot;

/// A router served on its own thread until dropped.
pub struct InProcessServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Whether a drop waits for the server's connections to finish.
    join_on_drop: bool,
}

impl InProcessServer {
    /// Serves `router` (HTTP/1.1, and HTTP/2 with prior knowledge) on a fresh port.
    /// `name` says whose server failed to start. A drop stops accepting, lets the
    /// requests in flight finish and waits for the thread.
    pub fn start(name: &str, router: Router) -> InProcessServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|error| panic!("{name}: cannot bind 127.0.0.1:0: {error}"));
        listener.set_nonblocking(true).unwrap_or_else(|error| {
            panic!("{name}: cannot make its listener nonblocking: {error}")
        });
        let addr = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("{name}: its listener has no address: {error}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("{name}: cannot build a tokio runtime: {error}"));
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).unwrap_or_else(|error| {
                panic!("{name}: cannot hand its listener to tokio: {error}")
            })
        };
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        InProcessServer {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
            join_on_drop: true,
        }
    }

    /// A drop stops the server without waiting for its thread: for a server whose
    /// clients may hold a stream open as long as they like.
    pub fn detach_on_drop(mut self) -> InProcessServer {
        self.join_on_drop = false;
        self
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            if self.join_on_drop {
                let _ = thread.join();
            }
        }
    }
}
