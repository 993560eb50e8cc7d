//! A child process under test, with its stdout and stderr captured in one log file.
//!
//! Tests wait for what a process says ("listening on", "cache refresh complete") by
//! polling its log, never by sleeping. The child runs in its own process group, gets
//! SIGTERM if the test binary dies (see `spawner.rs`), and is terminated when the
//! [`Process`] is dropped; a drop during a panic prints the tail of the log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use crate::scratch::ScratchDir;
use crate::{os, poll, spawner};

/// How often log files and exit status are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long [`Process::terminate`] waits after SIGTERM before SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(5);
/// How many log lines a drop during a panic prints.
const TAIL_LINES: usize = 60;

/// Signals a test may send to a [`Process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP.
    Hup,
    /// SIGINT (Ctrl-C; PostgreSQL: fast shutdown).
    Int,
    /// SIGQUIT (PostgreSQL: immediate shutdown).
    Quit,
    /// SIGKILL.
    Kill,
    /// SIGTERM.
    Term,
    /// SIGSTOP: the process freezes (it cannot catch this), holding its sockets open
    /// without answering, as a process stuck in a long pause would.
    Stop,
    /// SIGCONT: a stopped process runs on.
    Cont,
}

impl Signal {
    fn raw(self) -> libc::c_int {
        match self {
            Signal::Hup => libc::SIGHUP,
            Signal::Int => libc::SIGINT,
            Signal::Quit => libc::SIGQUIT,
            Signal::Kill => libc::SIGKILL,
            Signal::Term => libc::SIGTERM,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }
}

/// The child and, once reaped, how it ended.
struct ChildState {
    child: Child,
    /// Set once the child has been reaped; from then on its pid may belong to someone
    /// else, so no signal may be sent to it.
    status: Option<ExitStatus>,
}

impl ChildState {
    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
            }
        }
        self.status
    }

    /// Signals the child, or its whole process group, if it has not been reaped.
    fn signal(&mut self, signal: Signal, group: bool) {
        if self.status.is_none() {
            // ESRCH would only mean the group has already gone; nothing to do then.
            let _ = os::send_signal(self.child.id(), signal.raw(), group);
        }
    }

    /// Waits up to `timeout` for the child to end; `None` if it still runs.
    fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll::within(timeout, POLL_INTERVAL, || self.try_status().ok_or(())).ok()
    }
}

/// A running (or finished) child process and its log.
pub struct Process {
    name: String,
    pid: u32,
    state: Mutex<ChildState>,
    log_path: PathBuf,
    /// Holds the log file; removed when the process is dropped.
    _dir: ScratchDir,
}

impl Process {
    /// Starts `command` with stdin from /dev/null and stdout and stderr appended to one
    /// log file in a fresh temp dir. `name` labels the process in every message.
    ///
    /// The child leads its own process group (so [`Process::terminate`] also stops its
    /// children) and gets `PR_SET_PDEATHSIG(SIGTERM)`, so it dies with the test binary.
    /// Panics if the program cannot be started.
    pub fn spawn(name: &str, mut command: Command) -> Process {
        let dir = ScratchDir::new(name).unwrap_or_else(|error| {
            panic!("{name}: cannot create a temp dir for its log: {error}")
        });
        let log_path = dir.path().join(format!("{}.log", file_label(name)));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|error| {
                panic!(
                    "{name}: cannot create log file {}: {error}",
                    log_path.display()
                )
            });
        let log_for_stderr = log.try_clone().unwrap_or_else(|error| {
            panic!("{name}: cannot duplicate the log file handle: {error}")
        });
        command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .process_group(0);
        os::die_with_parent(&mut command);
        let description = format!("{command:?}");
        let child = spawner::spawn(command)
            .unwrap_or_else(|error| panic!("{name}: cannot start {description}: {error}"));
        Process {
            name: name.to_owned(),
            pid: child.id(),
            state: Mutex::new(ChildState {
                child,
                status: None,
            }),
            log_path,
            _dir: dir,
        }
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Path of the log file (removed when the process is dropped).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the process has logged so far (invalid UTF-8 replaced).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }

    /// The current size of the log in bytes: an offset for [`Process::wait_for_log_after`].
    pub fn log_len(&self) -> usize {
        fs::metadata(&self.log_path).map_or(0, |metadata| {
            usize::try_from(metadata.len()).unwrap_or(usize::MAX)
        })
    }

    /// Waits until a log line contains `needle` and returns that line (without its line
    /// break). Panics with the log tail on timeout, or as soon as the process has exited
    /// without logging it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_for_log_after(0, needle, timeout)
    }

    /// Like [`Process::wait_for_log`], but only looks at log text after byte `offset`
    /// (from [`Process::log_len`]), to wait for something that happens after an action.
    pub fn wait_for_log_after(&self, offset: usize, needle: &str, timeout: Duration) -> String {
        let mut scan = LogScan::new(offset);
        poll::within(timeout, POLL_INTERVAL, || {
            // Exit status first: whatever the process wrote before exiting is then
            // already in the file when it is read below.
            let exited = self.lock().try_status();
            if let Some(line) = scan.find(&self.log_path, needle.as_bytes(), exited.is_some()) {
                return Ok(line);
            }
            if let Some(status) = exited {
                panic!(
                    "{}: exited ({}) without logging a line containing {needle:?}; {}",
                    self.name,
                    describe_status(status),
                    self.tail_report(),
                );
            }
            Err(())
        })
        .unwrap_or_else(|()| {
            panic!(
                "{}: no log line containing {needle:?} within {timeout:?}; {}",
                self.name,
                self.tail_report(),
            )
        })
    }

    /// Sends `signal` to the process itself (not its process group).
    pub fn signal(&self, signal: Signal) {
        self.lock().signal(signal, false);
    }

    /// How the process ended, or `None` while it runs. Does not block.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.lock().try_status()
    }

    /// Waits up to `timeout` for the process to exit on its own; `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.state_mut().wait_for_exit(timeout)
    }

    /// Sends SIGTERM to the process group, waits up to 5 s, then sends SIGKILL.
    /// Does nothing if the process has already ended. A stopped process is continued
    /// after the SIGTERM, so that it can act on it.
    pub fn terminate(&mut self) {
        let state = self.state_mut();
        if state.try_status().is_some() {
            return;
        }
        state.signal(Signal::Term, true);
        state.signal(Signal::Cont, true);
        if state.wait_for_exit(TERMINATE_GRACE).is_none() {
            state.signal(Signal::Kill, true);
            reap(state);
        }
    }

    /// Sends SIGKILL to the process group now and reaps the process.
    pub fn kill(&mut self) {
        let state = self.state_mut();
        if state.try_status().is_some() {
            return;
        }
        state.signal(Signal::Kill, true);
        reap(state);
    }

    fn lock(&self) -> MutexGuard<'_, ChildState> {
        // A panic while holding the lock cannot leave the state inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state_mut(&mut self) -> &mut ChildState {
        self.state.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last lines of the log, with a header saying whose they are.
    fn tail_report(&self) -> String {
        format!(
            "last {TAIL_LINES} lines of its log:\n{}",
            self.log_tail(TAIL_LINES)
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.terminate();
        if thread::panicking() {
            eprintln!(
                "----- {} (pid {}, {}): {}\n----- end of {} log -----",
                self.name,
                self.pid,
                self.exit_status()
                    .map_or_else(|| "running".to_owned(), describe_status),
                self.tail_report(),
                self.name,
            );
        }
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("log_path", &self.log_path)
            .finish_non_exhaustive()
    }
}

/// Blocks until the (already killed) child is reaped.
fn reap(state: &mut ChildState) {
    if let Ok(status) = state.child.wait() {
        state.status = Some(status);
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// `name` reduced to characters safe in a file name.
fn file_label(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Incremental search of a growing log file, one complete line at a time.
struct LogScan {
    /// Byte offset of the first line not yet searched.
    position: u64,
}

impl LogScan {
    fn new(offset: usize) -> LogScan {
        LogScan {
            position: u64::try_from(offset).unwrap_or(u64::MAX),
        }
    }

    /// The first line after the last searched one that contains `needle`. A final line
    /// without its line break is only searched when `finished` (the writer is gone), so
    /// a caller never gets half of a line that is still being written.
    fn find(&mut self, path: &Path, needle: &[u8], finished: bool) -> Option<String> {
        let text = read_from(path, self.position).ok()?;
        let mut rest = text.as_slice();
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
            let line = &rest[..end];
            rest = &rest[end + 1..];
            self.position += end as u64 + 1;
            if contains(line, needle) {
                return Some(line_text(line));
            }
        }
        if finished && !rest.is_empty() && contains(rest, needle) {
            self.position += rest.len() as u64;
            return Some(line_text(rest));
        }
        None
    }
}

fn read_from(path: &Path, position: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(position))?;
    let mut text = Vec::new();
    file.read_to_end(&mut text)?;
    Ok(text)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

fn line_text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }

    #[test]
    fn log_scan_matches_complete_lines_only_until_finished() {
        let dir = ScratchDir::new("log-scan-test").expect("temp dir");
        let path = dir.path().join("log");
        fs::write(&path, "one\ntwo needle\nthree needle").expect("write log");
        let mut scan = LogScan::new(0);
        assert_eq!(
            scan.find(&path, b"needle", false).as_deref(),
            Some("two needle")
        );
        assert_eq!(scan.find(&path, b"needle", false), None);
        assert_eq!(
            scan.find(&path, b"needle", true).as_deref(),
            Some("three needle")
        );
    }

    #[test]
    fn log_scan_starts_at_the_offset() {
        let dir = ScratchDir::new("log-scan-test").expect("temp dir");
        let path = dir.path().join("log");
        fs::write(&path, "ready\r\nready again\n").expect("write log");
        assert_eq!(
            LogScan::new(0).find(&path, b"ready", false).as_deref(),
            Some("ready")
        );
        assert_eq!(
            LogScan::new(7).find(&path, b"ready", false).as_deref(),
            Some("ready again")
        );
    }
}
