//! Starting a server process that announces itself in its log (PostgreSQL, Redis): wait
//! for its ready line, tell a taken port apart from any other failure, and retry a port
//! that something holds briefly.

use std::time::Duration;

use crate::poll;
use crate::process::Process;

/// How often a starting server's log is read.
const LOG_INTERVAL: Duration = Duration::from_millis(20);
/// How long to wait before trying a taken port again.
const RELAUNCH_INTERVAL: Duration = Duration::from_millis(200);

/// What a server logs once it accepts connections, and when its port is taken.
pub struct LogLines {
    pub ready: &'static str,
    pub address_in_use: &'static str,
}

/// How a start ended.
enum Started {
    Ready,
    PortTaken,
}

/// Waits until `server` logs its ready line. `None` if it exited because its port was
/// taken; panics with its log on any other exit or after `timeout`.
pub fn wait_until_ready(server: Process, lines: &LogLines, timeout: Duration) -> Option<Process> {
    let started = poll::within(timeout, LOG_INTERVAL, || {
        let exited = server.exit_status();
        let log = server.log();
        if log.contains(lines.ready) {
            return Ok(Started::Ready);
        }
        if let Some(status) = exited {
            if log.contains(lines.address_in_use) {
                return Ok(Started::PortTaken);
            }
            panic!(
                "{} exited ({status}) while starting; its log:\n{log}",
                server.name()
            );
        }
        Err(log)
    });
    match started {
        Ok(Started::Ready) => Some(server),
        Ok(Started::PortTaken) => None,
        Err(log) => panic!(
            "{} not ready within {timeout:?}; its log:\n{log}",
            server.name()
        ),
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
    poll::within(timeout, RELAUNCH_INTERVAL, || launch().ok_or(())).unwrap_or_else(|()| {
        panic!("{name}: port {port} stayed in use for {timeout:?}, cannot start again")
    })
}
