//! Starting a server process that announces itself in its log (PostgreSQL, Redis): wait
//! for its ready line, tell a taken port apart from any other failure, and retry a port
//! that something holds briefly.

use std::thread;
use std::time::{Duration, Instant};

use crate::process::Process;

/// What a server logs once it accepts connections, and when its port is taken.
pub struct LogLines {
    pub ready: &'static str,
    pub address_in_use: &'static str,
}

/// Waits until `server` logs its ready line. `None` if it exited because its port was
/// taken; panics with its log on any other exit or after `timeout`.
pub fn wait_until_ready(server: Process, lines: &LogLines, timeout: Duration) -> Option<Process> {
    let deadline = Instant::now() + timeout;
    loop {
        let exited = server.exit_status();
        let log = server.log();
        if log.contains(lines.ready) {
            return Some(server);
        }
        if let Some(status) = exited {
            if log.contains(lines.address_in_use) {
                return None;
            }
            panic!(
                "{} exited ({status}) while starting; its log:\n{log}",
                server.name()
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "{} not ready within {timeout:?}; its log:\n{log}",
                server.name()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Calls `launch` (a start on `port` that answers `None` when the port is taken) until
/// it succeeds. For a restart on the same port: it was free while the server was down,
/// but something may hold it briefly.
pub fn relaunch(
    name: &str,
    port: u16,
    timeout: Duration,
    mut launch: impl FnMut() -> Option<Process>,
) -> Process {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(server) = launch() {
            return server;
        }
        if Instant::now() >= deadline {
            panic!("{name}: port {port} stayed in use for {timeout:?}, cannot start again");
        }
        thread::sleep(Duration::from_millis(200));
    }
}
