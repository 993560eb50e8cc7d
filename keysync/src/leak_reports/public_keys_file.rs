//! The public keys reports are signed with, kept in step with their file
//! (`KEYSYNC_LEAK_PUBLIC_KEYS_FILE`), so that a key rotation at GitHub (a new key listed,
//! an old one dropped) needs no restart and causes no 401s.
//!
//! The file is read again every reload period ([`watch`]), and at once (at most once
//! every [`RECHECK_AT_MOST_EVERY`]) when a report names a key not in use, which is what
//! a report signed with a newly listed key does. A changed file whose keys parse
//! replaces the keys in use; one that does not (half written, deleted, not GitHub's
//! format) leaves them in use, and says so in one log line until it changes again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::signature::PublicKeys;

/// How often a report signed by an unknown key may have the file read again.
pub const RECHECK_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// What one look at the file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The same contents as last time, or other contents with the same keys.
    Unchanged,
    /// New keys, now in use: how many.
    Reloaded(usize),
    /// Unreadable or not a key list: the keys in use stay.
    Refused,
}

#[derive(Debug)]
pub struct PublicKeysFile {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    keys: Arc<PublicKeys>,
    /// SHA-256 of the contents last read, good or bad: unchanged contents are not
    /// parsed (or complained about) again.
    seen: Option<[u8; 32]>,
    /// Whether the contents last seen were refused (and said so).
    refused: bool,
    checked_at: Option<Instant>,
}

impl PublicKeysFile {
    /// The keys read from `path` at start.
    pub fn new(path: PathBuf, keys: PublicKeys) -> PublicKeysFile {
        PublicKeysFile {
            path,
            state: Mutex::new(State {
                keys: Arc::new(keys),
                seen: None,
                refused: false,
                checked_at: None,
            }),
        }
    }

    /// The keys in use.
    pub fn current(&self) -> Arc<PublicKeys> {
        self.lock().keys.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
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

    /// Reads the file and puts its keys in use if they changed and parse.
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
        let parsed = std::str::from_utf8(&contents)
            .map_err(|_| "not UTF-8".to_owned())
            .and_then(|text| PublicKeys::from_json(text).map_err(|error| error.to_string()));
        match parsed {
            Err(reason) => self.refuse(&mut state, true, &reason),
            Ok(keys) => {
                state.refused = false;
                if keys == *state.keys {
                    return Reload::Unchanged;
                }
                let count = keys.len();
                info!(
                    "leak reports: public keys reloaded: {count} keys ({}) from {}",
                    keys.identifiers().join(", "),
                    self.path.display()
                );
                state.keys = Arc::new(keys);
                Reload::Reloaded(count)
            }
        }
    }

    fn refuse(&self, state: &mut State, news: bool, reason: &str) -> Reload {
        if news {
            warn!(
                "leak reports: cannot reload the public keys from \
                 KEYSYNC_LEAK_PUBLIC_KEYS_FILE ({}): {reason}; keeping the {} keys in use",
                self.path.display(),
                state.keys.len()
            );
        }
        state.refused = true;
        Reload::Refused
    }
}

/// Reads `file` again every `period`, until it is no longer used (the endpoint's router
/// is gone).
pub async fn watch(file: Weak<PublicKeysFile>, period: Duration) {
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

#[cfg(test)]
mod tests {
    use keysync_e2e::leak_signer::{key_list, Signer};

    use super::*;

    fn written(path: &std::path::Path, text: &str) {
        let next = path.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, path).unwrap();
    }

    #[tokio::test]
    async fn new_keys_replace_the_old_and_a_bad_file_keeps_them() {
        let dir = std::env::temp_dir().join(format!("keysync-leak-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        let (old, new) = (Signer::generate("old"), Signer::generate("new"));
        let start = key_list(&[&old]);
        written(&path, &start);
        let file = PublicKeysFile::new(path.clone(), PublicKeys::from_json(&start).unwrap());
        assert_eq!(
            file.reload().await,
            Reload::Unchanged,
            "the keys of the start"
        );
        assert_eq!(file.reload().await, Reload::Unchanged);

        written(&path, &key_list(&[&old, &new]));
        assert_eq!(file.reload().await, Reload::Reloaded(2));
        assert_eq!(file.current().identifiers(), ["old", "new"]);

        for bad in ["{\"public_keys\": [", "{\"public_keys\": []}", "\u{0}\u{1}"] {
            written(&path, bad);
            assert_eq!(file.reload().await, Reload::Refused, "{bad}");
            assert_eq!(file.reload().await, Reload::Refused, "{bad}: again");
            assert_eq!(file.current().identifiers(), ["old", "new"], "{bad}");
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(file.reload().await, Reload::Refused, "deleted");
        assert_eq!(file.current().len(), 2);

        written(&path, &key_list(&[&new]));
        assert_eq!(file.reload().await, Reload::Reloaded(1));
        assert_eq!(file.current().identifiers(), ["new"]);
        assert_eq!(
            file.reload_unless_read_within(Duration::from_secs(60))
                .await,
            Reload::Unchanged
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
