//! A TCP proxy the test owns, placed between two processes (keysync and PostgreSQL, Envoy
//! and keysync) to break the network between them on command:
//!
//! - [`TcpProxy::pass`]: bytes flow both ways (again);
//! - [`TcpProxy::cut`]: every connection is closed and new ones are reset at once, as
//!   when the peer's host is down;
//! - [`TcpProxy::blackhole`]: connections are accepted and held, and nothing is
//!   forwarded either way, as when packets are dropped on the way: the peer learns of it
//!   only from its own timeouts. A later [`TcpProxy::pass`] delivers what was held, as a
//!   healed network would;
//! - [`TcpProxy::redirect`]: closes every connection and sends new ones to another
//!   upstream (one keysync replaced by another behind the same address).
//!
//! It runs on its own thread and runtime, so synchronous tests can drive it, and stops
//! (closing everything) when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Cut,
    Blackhole,
}

#[derive(Clone, Copy, Debug)]
struct State {
    mode: Mode,
    upstream: SocketAddr,
    /// Bumped by a redirect: connections of an older generation close.
    generation: u64,
}

impl State {
    /// Whether a connection of `generation` must close now.
    fn closes(&self, generation: u64) -> bool {
        self.mode == Mode::Cut || self.generation != generation
    }
}

struct Shared {
    state: watch::Sender<State>,
    accepted: AtomicUsize,
    open: AtomicUsize,
}

pub struct TcpProxy {
    /// Where clients connect (127.0.0.1, a free port).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// A proxy on a free 127.0.0.1 port to `upstream`, passing traffic.
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|error| panic!("tcp proxy: cannot bind 127.0.0.1:0: {error}"));
        listener.set_nonblocking(true).unwrap_or_else(|error| {
            panic!("tcp proxy: cannot make its listener nonblocking: {error}")
        });
        let addr = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("tcp proxy: its listener has no address: {error}"));
        let (state, _) = watch::channel(State {
            mode: Mode::Pass,
            upstream,
            generation: 0,
        });
        let shared = Arc::new(Shared {
            state,
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("tcp proxy: cannot build a tokio runtime: {error}"));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let accepting = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tcp-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).unwrap_or_else(|error| {
                        panic!("tcp proxy: tokio refused its listener: {error}")
                    });
                    tokio::select! {
                        () = accept_loop(listener, accepting) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops every connection task and its sockets.
            })
            .unwrap_or_else(|error| panic!("tcp proxy: cannot start its thread: {error}"));
        TcpProxy {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Forward traffic (again), including what was held while blackholed.
    pub fn pass(&self) {
        self.set_mode(Mode::Pass);
    }

    /// Close every connection; reset new ones until [`TcpProxy::pass`].
    pub fn cut(&self) {
        self.set_mode(Mode::Cut);
    }

    /// Hold every connection, old and new, and forward nothing until
    /// [`TcpProxy::pass`] or [`TcpProxy::cut`].
    pub fn blackhole(&self) {
        self.set_mode(Mode::Blackhole);
    }

    /// Close every connection and send new ones to `upstream`, passing traffic.
    pub fn redirect(&self, upstream: SocketAddr) {
        self.shared.state.send_modify(|state| {
            state.upstream = upstream;
            state.generation += 1;
            state.mode = Mode::Pass;
        });
    }

    pub fn mode(&self) -> Mode {
        self.shared.state.borrow().mode
    }

    pub fn upstream(&self) -> SocketAddr {
        self.shared.state.borrow().upstream
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now (held ones included).
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    fn set_mode(&self, mode: Mode) {
        self.shared.state.send_modify(|state| state.mode = mode);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let state = *shared.state.borrow();
        if state.mode == Mode::Cut {
            // A reset rather than an orderly close: the peer sees what it would see
            // from a host that is gone.
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            shared.open.fetch_add(1, Ordering::SeqCst);
            serve(client, state.generation, shared.state.subscribe()).await;
            shared.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// One client connection: held while blackholed, connected upstream once passing, then
/// pumped both ways until either side closes or the proxy cuts it.
async fn serve(client: TcpStream, generation: u64, mut state: watch::Receiver<State>) {
    if !allowed(&mut state, generation).await {
        return;
    }
    let upstream = state.borrow().upstream;
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, generation, state.clone());
    let down = pump(server_read, client_write, generation, state);
    tokio::join!(up, down);
}

/// Copies `from` to `to` while the proxy passes; holds the bytes while it blackholes;
/// returns when `from` ends or the proxy closes the connection.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    generation: u64,
    mut state: watch::Receiver<State>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if !allowed(&mut state, generation).await {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            () = closed(state.clone(), generation) => return,
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if !allowed(&mut state, generation).await {
            return;
        }
        let written = tokio::select! {
            written = to.write_all(&buffer[..n]) => written,
            () = closed(state.clone(), generation) => return,
        };
        if written.is_err() {
            return;
        }
    }
}

/// Waits while the proxy blackholes; true once it passes, false when the connection
/// must close.
async fn allowed(state: &mut watch::Receiver<State>, generation: u64) -> bool {
    loop {
        {
            let now = state.borrow_and_update();
            if now.closes(generation) {
                return false;
            }
            if now.mode == Mode::Pass {
                return true;
            }
        }
        if state.changed().await.is_err() {
            return false;
        }
    }
}

/// Completes once a connection of `generation` must close.
async fn closed(mut state: watch::Receiver<State>, generation: u64) {
    loop {
        if state.borrow_and_update().closes(generation) {
            return;
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}
