//! A throwaway Redis server on 127.0.0.1 for one test: no persistence, its own free
//! port, stopped when dropped. It can be stopped and started again on the same port
//! (empty again: nothing is saved) for outage tests.
//!
//! The binary is `REDIS_SERVER_BIN` when set, else `/usr/bin/redis-server` (Debian's
//! `redis-server` package), else `redis-server` from `PATH`. Redis runs fine as root.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::paths::free_port;
use crate::process::Process;
use crate::server_start::{self, LogLines};

/// How long a server may take to accept connections (a noisy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fresh ports [`TestRedis::start`] tries when its port gets taken.
const PORT_ATTEMPTS: usize = 10;
const LOG_LINES: LogLines = LogLines {
    ready: "Ready to accept connections",
    address_in_use: "Address already in use",
};

/// A running (or stopped) Redis server on 127.0.0.1.
#[derive(Debug)]
pub struct TestRedis {
    port: u16,
    /// `None` between [`TestRedis::stop`] and [`TestRedis::start_again`].
    server: Option<Process>,
}

impl TestRedis {
    /// Starts a fresh, empty server on a free 127.0.0.1 port and waits until it accepts
    /// connections. Panics with the server log when it cannot.
    pub fn start() -> TestRedis {
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            if let Some(server) = launch(port) {
                return TestRedis {
                    port,
                    server: Some(server),
                };
            }
        }
        panic!("redis: {PORT_ATTEMPTS} free ports in a row were taken before the server bound them")
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Whether the server is running (between [`TestRedis::stop`] and
    /// [`TestRedis::start_again`] it is not).
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// The server's log so far (empty while it is stopped).
    pub fn log(&self) -> String {
        self.server.as_ref().map(Process::log).unwrap_or_default()
    }

    /// Stops the server (SIGTERM; connected clients see the connection close). Its data
    /// is gone: nothing is saved. Does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.terminate();
        }
    }

    /// Starts a new, empty server on the same port and waits until it accepts
    /// connections. Does nothing if it is running.
    pub fn start_again(&mut self) {
        if self.server.is_some() {
            return;
        }
        let port = self.port;
        self.server = Some(server_start::relaunch("redis", port, START_TIMEOUT, || {
            launch(port)
        }));
    }
}

// Dropping `server` terminates the process (see `Process`'s Drop).

/// `REDIS_SERVER_BIN`, else `/usr/bin/redis-server`, else `redis-server` on `PATH`.
fn redis_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("REDIS_SERVER_BIN").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            panic!("REDIS_SERVER_BIN={} does not exist", path.display());
        }
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/bin"))
        .chain(on_path)
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "redis-server not found in /usr/bin or on PATH (or set REDIS_SERVER_BIN): \
                 apt-get install redis-server"
            )
        })
}

/// Starts `redis-server` on `port` and waits until it is ready; `None` if the port is
/// taken. Panics with the server log on any other failure.
fn launch(port: u16) -> Option<Process> {
    let binary = redis_server_bin();
    let mut command = Command::new(&binary);
    command
        .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
        .arg("--port")
        .arg(port.to_string())
        // Log to stdout (the Process log), not to a file or syslog.
        .args(["--logfile", "", "--daemonize", "no"])
        .current_dir(std::env::temp_dir());
    let server = Process::spawn(&format!("redis:{port}"), command);
    server_start::wait_until_ready(server, &LOG_LINES, START_TIMEOUT)
}
