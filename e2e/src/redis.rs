//! A throwaway Redis server on 127.0.0.1 for one test: no persistence, its own free
//! port, stopped when dropped. It can be stopped and started again on the same port
//! (empty again: nothing is saved) for outage tests.
//!
//! The binary is `REDIS_SERVER_BIN` when set, else `/usr/bin/redis-server` (Debian's
//! `redis-server` package, built with TLS), else `redis-server` from `PATH`. Redis runs
//! fine as root.
//!
//! [`TestRedis::start_tls_only`] starts one that speaks TLS only (`--port 0
//! --tls-port ...`), with a certificate the test made.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::paths::free_port;
use crate::process::Process;
use crate::scratch::ScratchDir;
use crate::server_start::{self, LogLines};
use crate::test_ca::ServerCertificate;

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
    /// The certificate files of a TLS-only server.
    tls: Option<TlsFiles>,
}

/// A TLS-only server's certificate, key and CA files.
#[derive(Debug)]
struct TlsFiles {
    dir: ScratchDir,
}

impl TlsFiles {
    fn write(certificate: &ServerCertificate, ca_pem: &str) -> TlsFiles {
        let dir = ScratchDir::new("redis-tls")
            .unwrap_or_else(|error| panic!("redis: cannot create a temp dir: {error}"));
        for (name, text) in [
            ("server.crt", certificate.certificate_pem.as_str()),
            ("server.key", certificate.key_pem.as_str()),
            ("ca.crt", ca_pem),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, text)
                .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        }
        TlsFiles { dir }
    }

    /// The server's arguments: no plain-text port, TLS on `port`, clients not asked for
    /// certificates.
    fn arguments(&self, port: u16) -> Vec<String> {
        let file = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            file("server.crt"),
            "--tls-key-file".into(),
            file("server.key"),
            "--tls-ca-cert-file".into(),
            file("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    }
}

impl TestRedis {
    /// Starts a fresh, empty server on a free 127.0.0.1 port and waits until it accepts
    /// connections. Panics with the server log when it cannot.
    pub fn start() -> TestRedis {
        TestRedis::start_configured(None)
    }

    /// Same, for a server that speaks TLS only, presenting `certificate` (signed by the
    /// CA whose certificate is `ca_pem`); connect with [`TestRedis::tls_url`].
    pub fn start_tls_only(certificate: &ServerCertificate, ca_pem: &str) -> TestRedis {
        TestRedis::start_configured(Some(TlsFiles::write(certificate, ca_pem)))
    }

    fn start_configured(tls: Option<TlsFiles>) -> TestRedis {
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            if let Some(server) = launch(port, tls.as_ref()) {
                return TestRedis {
                    port,
                    server: Some(server),
                    tls,
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

    /// `rediss://127.0.0.1:PORT/0`, for a server started with
    /// [`TestRedis::start_tls_only`].
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
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
        let tls = self.tls.as_ref();
        self.server = Some(server_start::relaunch("redis", port, START_TIMEOUT, || {
            launch(port, tls)
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

/// Starts `redis-server` on `port` (TLS only with `tls`) and waits until it is ready;
/// `None` if the port is taken. Panics with the server log on any other failure.
fn launch(port: u16, tls: Option<&TlsFiles>) -> Option<Process> {
    let binary = redis_server_bin();
    let mut command = Command::new(&binary);
    command.args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"]);
    match tls {
        Some(tls) => command.args(tls.arguments(port)),
        None => command.arg("--port").arg(port.to_string()),
    };
    command
        // Log to stdout (the Process log), not to a file or syslog.
        .args(["--logfile", "", "--daemonize", "no"])
        .current_dir(std::env::temp_dir());
    let server = Process::spawn(&format!("redis:{port}"), command);
    server_start::wait_until_ready(server, &LOG_LINES, START_TIMEOUT)
}
