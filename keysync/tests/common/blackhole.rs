//! A TCP proxy in front of PostgreSQL that a test can turn into a blackhole: while cut,
//! no byte moves in either direction and new connections hang, but nothing is closed
//! (like a network that drops packets); restored, everything held moves on.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Blackhole {
    pub addr: SocketAddr,
    cut: Arc<watch::Sender<bool>>,
}

impl Blackhole {
    /// Forwards a free 127.0.0.1 port to `target`.
    pub async fn start(target: SocketAddr) -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(watch::channel(false).0);
        let accepting = cut.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let cut = accepting.clone();
                tokio::spawn(async move {
                    let mut open = cut.subscribe();
                    if open.wait_for(|cut| !*cut).await.is_err() {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::spawn(pipe(client_read, server_write, cut.subscribe()));
                    tokio::spawn(pipe(server_read, client_write, cut.subscribe()));
                });
            }
        });
        Blackhole { addr, cut }
    }

    /// The URL of `url`'s database through the proxy.
    pub fn url(&self, url: &str) -> String {
        let database = url.rsplit('/').next().unwrap();
        format!("postgres://keysync@{}/{database}", self.addr)
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

/// Copies `from` to `to`, holding still while cut.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        if cut.wait_for(|cut| !*cut).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        // Read just before the cut: held until it is restored.
        if cut.wait_for(|cut| !*cut).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
