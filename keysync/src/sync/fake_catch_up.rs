//! A catch-up for unit tests that plays the database: over a key set at revision 3,
//! each run adds a key (as revision 4), fails, or never finishes, and the runs are
//! counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::key_set::changes::Changes;
use crate::key_set::key_entry::KeyEntry;
use crate::key_set::{SharedKeySet, Snapshot};
use crate::sync::catch_up::{CatchUp, DEFAULT_MIN_SPACING};

/// What each catch-up run does.
#[derive(Clone)]
pub enum Behaviour {
    /// Finds this key, created since the last load.
    Adds(KeyEntry),
    /// Fails like an unreachable database.
    Fails,
    /// Never finishes (a database that does not answer).
    Hangs,
}

/// A key set holding `keys` at revision 3, its catch-up, and the count of catch-up
/// runs.
pub fn key_set_and_catch_up(
    keys: Vec<KeyEntry>,
    behaviour: Behaviour,
) -> (SharedKeySet, CatchUp, Arc<AtomicUsize>) {
    let key_set = SharedKeySet::new();
    key_set.write().replace(Snapshot { revision: 3, keys });
    let runs = Arc::new(AtomicUsize::new(0));
    let catch_up = CatchUp::spawn(DEFAULT_MIN_SPACING, {
        let key_set = key_set.clone();
        let runs = runs.clone();
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
            if let Behaviour::Adds(entry) = &behaviour {
                key_set.write().apply(&Changes {
                    revision: 4,
                    upserts: vec![entry.clone()],
                    removals: vec![],
                });
            }
            let behaviour = behaviour.clone();
            async move {
                match behaviour {
                    Behaviour::Adds(_) => Ok(()),
                    Behaviour::Fails => Err("database down"),
                    Behaviour::Hangs => std::future::pending().await,
                }
            }
        }
    });
    (key_set, catch_up, runs)
}
