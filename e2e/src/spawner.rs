//! The one long-lived thread that forks every [`crate::Process`].
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, not the
//! process. Forking from whichever thread asked would kill a server started by one test
//! and shared through a `static` when that test's thread ends, or one started from a
//! tokio blocking-pool thread when the pool retires that thread. Forking from this thread,
//! which lives as long as the test binary, ties children to the test process instead.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;

/// A command to fork, and where to send the result.
struct Request {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// Spawns `command` from the spawner thread and returns the child.
pub(crate) fn spawn(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let requests = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("e2e-spawner".to_owned())
            .spawn(move || {
                for mut request in incoming {
                    // The asking thread may have given up (panicked); nothing to do then.
                    let _ = request.reply.send(request.command.spawn());
                }
            })
            .expect("e2e harness: cannot start the process spawner thread");
        requests
    });
    let (reply, result) = mpsc::channel();
    requests
        .send(Request { command, reply })
        .map_err(|_| io::Error::other("e2e process spawner thread is gone"))?;
    result
        .recv()
        .map_err(|_| io::Error::other("e2e process spawner thread is gone"))?
}
