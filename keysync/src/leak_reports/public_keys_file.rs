//! The public keys reports are signed with, kept in step with their file
//! (`KEYSYNC_LEAK_PUBLIC_KEYS_FILE`) by [`crate::watched_file`], so that a key rotation
//! at GitHub (a new key listed, an old one dropped) needs no restart and causes no 401s.
//!
//! The file is read again every reload period, and at once (at most once every
//! [`RECHECK_AT_MOST_EVERY`]) when a report names a key not in use, which is what a
//! report signed with a newly listed key does. A changed file whose keys parse replaces
//! the keys in use; one that does not (half written, deleted, not GitHub's format)
//! leaves them in use, and says so in one log line until it changes again.

use std::path::PathBuf;
use std::time::Duration;

use super::signature::PublicKeys;
use crate::watched_file::{Described, Naming, WatchedFile};

/// The variable that names the file (declared where the file is read, as the errors
/// and log lines about it name it).
pub const LEAK_PUBLIC_KEYS_FILE: &str = "KEYSYNC_LEAK_PUBLIC_KEYS_FILE";

/// How often a report signed by an unknown key may have the file read again.
pub const RECHECK_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// The public keys in use, and their file.
pub type PublicKeysFile = WatchedFile<PublicKeys>;

impl Described for PublicKeys {
    fn in_use(&self) -> String {
        format!("{} keys", self.len())
    }

    fn reloaded(&self) -> String {
        format!("{} keys ({})", self.len(), self.identifiers().join(", "))
    }
}

/// The keys read from `path` at start, to be read again from it.
pub fn public_keys_file(path: PathBuf, keys: PublicKeys) -> PublicKeysFile {
    WatchedFile::new(
        path,
        Naming {
            subsystem: "leak reports",
            noun: "public keys",
            variable: LEAK_PUBLIC_KEYS_FILE,
        },
        keys,
        Box::new(|contents| {
            let text = std::str::from_utf8(contents).map_err(|_| "not UTF-8".to_owned())?;
            PublicKeys::from_json(text).map_err(|error| error.to_string())
        }),
    )
}

#[cfg(test)]
mod tests {
    use keysync_e2e::leak_signer::{key_list, Signer};

    use super::*;
    use crate::watched_file::{written, Reload};

    #[tokio::test]
    async fn new_keys_replace_the_old_and_a_bad_file_keeps_them() {
        let dir = std::env::temp_dir().join(format!("keysync-leak-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        let (old, new) = (Signer::generate("old"), Signer::generate("new"));
        let start = key_list(&[&old]);
        written(&path, &start);
        let file = public_keys_file(path.clone(), PublicKeys::from_json(&start).unwrap());
        assert_eq!(
            file.reload().await,
            Reload::Unchanged,
            "the keys of the start"
        );

        written(&path, &key_list(&[&old, &new]));
        assert_eq!(file.reload().await, Reload::Reloaded);
        assert_eq!(file.current().identifiers(), ["old", "new"]);

        for bad in ["{\"public_keys\": [", "{\"public_keys\": []}", "\u{0}\u{1}"] {
            written(&path, bad);
            assert_eq!(file.reload().await, Reload::Refused, "{bad}");
            assert_eq!(file.current().identifiers(), ["old", "new"], "{bad}");
        }
        written(&path, &key_list(&[&new]));
        assert_eq!(file.reload().await, Reload::Reloaded);
        assert_eq!(file.current().identifiers(), ["new"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
