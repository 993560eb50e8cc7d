//! A settings file kept in step with the disk: read again every period ([`watch`]),
//! or on demand, and its parsed contents put in use when they changed and parse. A file
//! that does not parse (half written, deleted, wrong format) leaves the contents in use
//! as they are and says so in one log line until it changes again, so an operator's
//! mistake never takes away what works. A Kubernetes Secret or ConfigMap update
//! reaches keysync this way without a restart.
//!
//! Used for the leak-report public keys ([`crate::leak_reports`]) and the gRPC tokens
//! ([`crate::grpc::tokens`]). The log lines name the file's variable and path and
//! describe the contents through [`Described`]; they never show the contents.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

/// How log lines speak of what a file holds, without showing it.
pub trait Described {
    /// What is in use, briefly: `2 keys`.
    fn in_use(&self) -> String;
    /// What a reload put in use: `2 keys (old, new)`.
    fn reloaded(&self) -> String {
        self.in_use()
    }
}

/// What one look at the file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The same contents as last time, or other contents that parse the same.
    Unchanged,
    /// New contents, now in use.
    Reloaded,
    /// Unreadable or not parsed: the contents in use stay.
    Refused,
}

/// Turns a file's bytes into its contents, or says why not (never quoting them).
pub type Parse<T> = Box<dyn Fn(&[u8]) -> Result<T, String> + Send + Sync>;

/// Names a file in log lines: `leak reports: ... the public keys from
/// KEYSYNC_LEAK_PUBLIC_KEYS_FILE (path)`.
#[derive(Debug, Clone, Copy)]
pub struct Naming {
    /// The part of keysync the file serves: `leak reports`.
    pub subsystem: &'static str,
    /// What it holds: `public keys`.
    pub noun: &'static str,
    /// The variable that names it.
    pub variable: &'static str,
}

pub struct WatchedFile<T> {
    path: PathBuf,
    naming: Naming,
    parse: Parse<T>,
    state: Mutex<State<T>>,
}

impl<T> std::fmt::Debug for WatchedFile<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedFile")
            .field("path", &self.path)
            .field("variable", &self.naming.variable)
            .finish_non_exhaustive()
    }
}

struct State<T> {
    current: Arc<T>,
    /// SHA-256 of the contents last read, good or bad: unchanged contents are not
    /// parsed (or complained about) again.
    seen: Option<[u8; 32]>,
    /// Whether the contents last seen were refused (and said so).
    refused: bool,
    checked_at: Option<Instant>,
}

impl<T: Described + PartialEq> WatchedFile<T> {
    /// The file at `path`, whose contents `current` were read at start.
    pub fn new(path: PathBuf, naming: Naming, current: T, parse: Parse<T>) -> Self {
        WatchedFile {
            path,
            naming,
            parse,
            state: Mutex::new(State {
                current: Arc::new(current),
                seen: None,
                refused: false,
                checked_at: None,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The contents in use.
    pub fn current(&self) -> Arc<T> {
        self.lock().current.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the file again, unless it was read less than `at_most_every` ago.
    pub async fn reload_unless_read_within(&self, at_most_every: Duration) -> Reload {
        let recent = self
            .lock()
            .checked_at
            .is_some_and(|at| at.elapsed() < at_most_every);
        if recent {
            Reload::Unchanged
        } else {
            self.reload().await
        }
    }

    /// Reads the file and puts its contents in use if they changed and parse.
    pub async fn reload(&self) -> Reload {
        let read = tokio::fs::read(&self.path).await;
        let mut state = self.lock();
        state.checked_at = Some(Instant::now());
        let contents = match read {
            Ok(contents) => contents,
            Err(error) => {
                // Nothing to compare: a missing file is one problem until it is back.
                let first = !state.refused || state.seen.is_some();
                state.seen = None;
                return self.refuse(&mut state, first, &format!("cannot read it: {error}"));
            }
        };
        let digest: [u8; 32] = Sha256::digest(&contents).into();
        if state.seen == Some(digest) {
            return if state.refused {
                Reload::Refused
            } else {
                Reload::Unchanged
            };
        }
        state.seen = Some(digest);
        match (self.parse)(&contents) {
            Err(reason) => self.refuse(&mut state, true, &reason),
            Ok(parsed) => {
                state.refused = false;
                if parsed == *state.current {
                    return Reload::Unchanged;
                }
                let Naming {
                    subsystem, noun, ..
                } = self.naming;
                info!(
                    "{subsystem}: {noun} reloaded: {} from {}",
                    parsed.reloaded(),
                    self.path.display()
                );
                state.current = Arc::new(parsed);
                Reload::Reloaded
            }
        }
    }

    fn refuse(&self, state: &mut State<T>, news: bool, reason: &str) -> Reload {
        if news {
            let Naming {
                subsystem,
                noun,
                variable,
            } = self.naming;
            warn!(
                "{subsystem}: cannot reload the {noun} from {variable} ({}): {reason}; \
                 keeping the {} in use",
                self.path.display(),
                state.current.in_use()
            );
        }
        state.refused = true;
        Reload::Refused
    }
}

/// Reads `file` again every `period`, until it is no longer used (every `Arc` of it is
/// gone).
pub async fn watch<T: Described + PartialEq>(file: Weak<WatchedFile<T>>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: the file was read at start.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(file) = file.upgrade() else {
            return;
        };
        file.reload().await;
    }
}

/// Writes `text` to `path` as Kubernetes and careful operators do: aside, then renamed
/// into place, so a reader sees the old contents or the new, never half.
#[cfg(test)]
pub fn written(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of text, none empty.
    #[derive(Debug, PartialEq)]
    struct Lines(Vec<String>);

    impl Described for Lines {
        fn in_use(&self) -> String {
            format!("{} lines", self.0.len())
        }
    }

    fn parse(bytes: &[u8]) -> Result<Lines, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.is_empty() || lines.iter().any(String::is_empty) {
            return Err("an empty line".to_owned());
        }
        Ok(Lines(lines))
    }

    #[tokio::test]
    async fn new_contents_replace_the_old_and_a_bad_file_keeps_them() {
        let dir = std::env::temp_dir().join(format!("keysync-watched-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lines");
        written(&path, "a\n");
        let naming = Naming {
            subsystem: "test",
            noun: "lines",
            variable: "TEST_FILE",
        };
        let file = WatchedFile::new(
            path.clone(),
            naming,
            parse(b"a\n").unwrap(),
            Box::new(parse),
        );
        assert_eq!(
            file.reload().await,
            Reload::Unchanged,
            "what was read at start"
        );
        assert_eq!(file.reload().await, Reload::Unchanged);

        written(&path, "a\nb\n");
        assert_eq!(file.reload().await, Reload::Reloaded);
        assert_eq!(file.current().0, ["a", "b"]);

        for bad in ["", "\n", "a\n\nb\n"] {
            written(&path, bad);
            assert_eq!(file.reload().await, Reload::Refused, "{bad:?}");
            assert_eq!(file.reload().await, Reload::Refused, "{bad:?}: again");
            assert_eq!(file.current().0, ["a", "b"], "{bad:?}");
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(file.reload().await, Reload::Refused, "deleted");
        assert_eq!(file.current().0.len(), 2);

        written(&path, "c\n");
        assert_eq!(file.reload().await, Reload::Reloaded);
        assert_eq!(file.current().0, ["c"]);
        assert_eq!(
            file.reload_unless_read_within(Duration::from_secs(60))
                .await,
            Reload::Unchanged
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
