//! The key set: the in-memory model of the active keys that [`crate::sync`] writes and
//! the gRPC services ([`crate::grpc`]) read. Each key is a [`key_entry`] (its rate limit
//! resolved from the [`limit_columns`], its scopes and allowlist a [`key_policy`]), held
//! compactly in a [`key_table`]; a batch of [`changes`] moves the set from one
//! [`position`] in the database's history to a newer one, and is kept in the
//! [`changelog`] that the [`change_feed`] shares with the watch streams.
//!
//! This file is the copy itself, ordered by key hash so the filter can page through it,
//! and tagged with the database revision it reflects. The keys live in a [`KeyTable`]; a
//! full reload compares the database with it ([`KeyTable::reconcile`]) and applies the
//! difference like any other change, so watchers hear about it too.

pub mod change_feed;
pub mod changelog;
pub mod changes;
pub mod key_entry;
pub mod key_policy;
pub mod key_table;
pub mod limit_columns;
pub mod position;

use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::key_set::changes::Changes;
use crate::key_set::key_entry::KeyEntry;
use crate::key_set::key_table::KeyTable;
use crate::key_set::position::Position;

/// Every active key as of one database revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: u64,
    pub keys: Vec<KeyEntry>,
}

/// One `ListKeys` page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<KeyEntry>,
    /// True when unexpired keys remain after the last one in `keys`.
    pub more: bool,
    pub revision: u64,
    pub epoch: u64,
}

/// The key set and the revision it reflects.
#[derive(Debug, Default)]
pub struct KeySet {
    table: KeyTable,
    revision: u64,
    /// The epoch `revision` counts in; 0 until the first load.
    epoch: u64,
}

impl KeySet {
    pub fn new() -> Self {
        KeySet::default()
    }

    /// Number of keys held, expired ones included.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The revision and its epoch, read together.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            revision: self.revision,
        }
    }

    /// Moves to another place in the database's history (after a full reload found the
    /// history changed and applied the difference).
    pub fn reposition(&mut self, position: Position) {
        self.revision = position.revision;
        self.epoch = position.epoch;
    }

    /// The keys themselves, for a full reload to compare with the database.
    pub fn table(&self) -> &KeyTable {
        &self.table
    }

    /// Replaces everything with a full snapshot.
    pub fn replace(&mut self, snapshot: Snapshot) {
        self.table = KeyTable::from_entries(snapshot.keys);
        self.revision = snapshot.revision;
    }

    /// Replaces everything with a table built elsewhere (the first full load).
    pub fn install(&mut self, table: KeyTable, position: Position) {
        self.table = table;
        self.reposition(position);
    }

    /// Applies an incremental change set. Removals go first: a key deleted and then
    /// re-created with the same hash shows up in both lists, and must end up present.
    pub fn apply(&mut self, changes: &Changes) {
        for hash in &changes.removals {
            self.table.remove(hash);
        }
        for entry in &changes.upserts {
            self.table.insert(entry.clone());
        }
        self.revision = changes.revision;
    }

    /// The key with this hash, unless it is unknown or expired at `now`.
    pub fn get(&self, hash: &[u8], now: i64) -> Option<KeyEntry> {
        self.table
            .get(hash)
            .filter(|entry| !entry.is_expired(now))
            .cloned()
    }

    /// Up to `limit` unexpired keys whose hash sorts strictly after `after_hash` (any
    /// length; empty means from the start), in ascending hash order.
    pub fn page(&self, after_hash: &[u8], limit: usize, now: i64) -> Page {
        let mut unexpired = self
            .table
            .after(after_hash)
            .filter(|entry| !entry.is_expired(now));
        let keys: Vec<KeyEntry> = unexpired.by_ref().take(limit).cloned().collect();
        let more = unexpired.next().is_some();
        Page {
            keys,
            more,
            revision: self.revision,
            epoch: self.epoch,
        }
    }
}

/// The key set shared between the gRPC handlers (readers) and the reloader (writer).
/// Locks are held only for in-memory work, never across an await.
#[derive(Debug, Clone, Default)]
pub struct SharedKeySet(Arc<RwLock<KeySet>>);

impl SharedKeySet {
    pub fn new() -> Self {
        SharedKeySet::default()
    }

    pub fn read(&self) -> RwLockReadGuard<'_, KeySet> {
        // A panic while holding the lock cannot leave the map half-updated in a way
        // that matters more than refusing to serve, so keep going.
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, KeySet> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_contract::limit::{KeyLimit, Limit};

    fn entry(first_byte: u8, expires_at: i64) -> KeyEntry {
        KeyEntry {
            expires_at,
            ..KeyEntry::numbered(first_byte)
        }
    }

    fn key_set(entries: Vec<KeyEntry>) -> KeySet {
        let mut key_set = KeySet::new();
        key_set.replace(Snapshot {
            revision: 7,
            keys: entries,
        });
        key_set
    }

    fn first_bytes(page: &Page) -> Vec<u8> {
        page.keys.iter().map(|entry| entry.key_hash.0[0]).collect()
    }

    #[test]
    fn pages_are_in_hash_order_whatever_the_load_order() {
        let key_set = key_set(vec![entry(5, 0), entry(1, 0), entry(3, 0)]);
        let page = key_set.page(&[], 10, 100);
        assert_eq!(first_bytes(&page), vec![1, 3, 5]);
        assert!(!page.more);
        assert_eq!(page.revision, 7);
    }

    #[test]
    fn after_hash_is_exclusive_and_may_be_short() {
        let key_set = key_set(vec![entry(1, 0), entry(3, 0), entry(5, 0)]);
        let after = entry(3, 0).key_hash;
        assert_eq!(
            first_bytes(&key_set.page(after.as_bytes(), 10, 100)),
            vec![5]
        );
        // A 1-byte bound [3] sorts before every 32-byte hash starting with 3.
        assert_eq!(first_bytes(&key_set.page(&[3], 10, 100)), vec![3, 5]);
        assert_eq!(first_bytes(&key_set.page(&[4], 10, 100)), vec![5]);
        assert!(key_set.page(&[0xff; 32], 10, 100).keys.is_empty());
    }

    #[test]
    fn more_says_whether_keys_remain() {
        let key_set = key_set(vec![entry(1, 0), entry(2, 0), entry(3, 0)]);
        let first = key_set.page(&[], 2, 100);
        assert_eq!(first_bytes(&first), vec![1, 2]);
        assert!(first.more);
        let last = first.keys.last().unwrap().key_hash;
        let second = key_set.page(last.as_bytes(), 2, 100);
        assert_eq!(first_bytes(&second), vec![3]);
        assert!(!second.more);
        // Exactly full page: nothing remains.
        assert!(!key_set.page(&[], 3, 100).more);
    }

    #[test]
    fn expired_keys_are_skipped_and_do_not_count_as_more() {
        let key_set = key_set(vec![
            entry(1, 0),
            entry(2, 50),
            entry(3, 150),
            entry(4, 100),
        ]);
        let page = key_set.page(&[], 10, 100);
        assert_eq!(first_bytes(&page), vec![1, 3]);
        // Only expired keys after the page: `more` must be false.
        let page = key_set.page(&[], 2, 100);
        assert_eq!(first_bytes(&page), vec![1, 3]);
        assert!(!page.more);
        assert_eq!(key_set.len(), 4, "expired keys are kept");
    }

    #[test]
    fn get_ignores_expired_and_unknown_keys() {
        let key_set = key_set(vec![entry(1, 0), entry(2, 100)]);
        assert_eq!(
            key_set.get(entry(1, 0).key_hash.as_bytes(), 100),
            Some(entry(1, 0))
        );
        assert_eq!(
            key_set.get(entry(2, 0).key_hash.as_bytes(), 99),
            Some(entry(2, 100))
        );
        assert_eq!(key_set.get(entry(2, 0).key_hash.as_bytes(), 100), None);
        assert_eq!(key_set.get(entry(9, 0).key_hash.as_bytes(), 100), None);
        assert_eq!(key_set.get(&[1], 100), None);
    }

    #[test]
    fn apply_removes_then_upserts_and_sets_revision() {
        let mut key_set = key_set(vec![entry(1, 0), entry(2, 0)]);
        let mut changed = entry(2, 0);
        changed.rate_limit = Some(KeyLimit {
            limit: Limit {
                requests_per_minute: 60,
                burst: 10,
            },
            per_key: false,
        });
        key_set.apply(&Changes {
            revision: 9,
            upserts: vec![changed.clone(), entry(4, 0)],
            removals: vec![entry(1, 0).key_hash, entry(2, 0).key_hash],
        });
        assert_eq!(key_set.revision(), 9);
        assert_eq!(first_bytes(&key_set.page(&[], 10, 0)), vec![2, 4]);
        assert_eq!(key_set.get(changed.key_hash.as_bytes(), 0), Some(changed));
    }

    #[test]
    fn replace_drops_keys_absent_from_the_snapshot() {
        let mut key_set = key_set(vec![entry(1, 0), entry(2, 0)]);
        key_set.replace(Snapshot {
            revision: 12,
            keys: vec![entry(3, 0)],
        });
        assert_eq!(key_set.len(), 1);
        assert_eq!(key_set.revision(), 12);
        assert_eq!(first_bytes(&key_set.page(&[], 10, 0)), vec![3]);
    }
}
