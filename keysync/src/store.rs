//! The in-memory copy of the active key set that `serve` answers from, ordered by key
//! hash so the filter can page through it, and tagged with the database revision it
//! reflects. The keys themselves live in a [`KeyTable`]; a full reload compares the
//! database with it ([`KeyTable::reconcile`]) and applies the difference like any other
//! change, so watchers hear about it too.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use uuid::Uuid;

use crate::api_key::KeyHash;
use crate::key_table::KeyTable;

pub use crate::rate_limit::RateLimit;

/// What the gateway needs to know about one active key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEntry {
    pub key_hash: KeyHash,
    pub key_id: Uuid,
    pub org_id: Uuid,
    /// Unix seconds after which the key is refused; 0 when it never expires.
    pub expires_at: i64,
    /// The key's own limit, else its organization's; `None` when neither is set.
    pub rate_limit: Option<RateLimit>,
}

impl KeyEntry {
    /// Expired keys stay in the store (expiry needs no database change to happen) and
    /// are filtered when served.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }
}

/// Every active key as of one database revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: u64,
    pub keys: Vec<KeyEntry>,
}

/// What changed in the database after some revision, up to `revision`: a catch-up's
/// result, and the unit the changelog keeps and watchers receive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub revision: u64,
    /// Keys written since, and still active: insert or replace.
    pub upserts: Vec<KeyEntry>,
    /// Keys revoked or deleted since: drop.
    pub removals: Vec<KeyHash>,
}

impl Changes {
    /// Records carried (upserts plus removals); what the catch-up log line reports and
    /// what the changelog's bound counts.
    pub fn len(&self) -> usize {
        self.upserts.len() + self.removals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same changes with every hash in at most one list, so they mean the same
    /// whatever order a client applies the lists in: a key deleted and re-created with
    /// the same hash ends up present (its upsert stays, its removal goes), and a hash
    /// removed twice is removed once. Spare capacity goes too: batches are kept in the
    /// changelog.
    pub fn normalized(mut self) -> Changes {
        let upserted: HashSet<KeyHash> = self.upserts.iter().map(|e| e.key_hash).collect();
        let mut removed = HashSet::with_capacity(self.removals.len());
        self.removals
            .retain(|hash| !upserted.contains(hash) && removed.insert(*hash));
        self.upserts.shrink_to_fit();
        self.removals.shrink_to_fit();
        self
    }
}

/// One `ListKeys` page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub keys: Vec<KeyEntry>,
    /// True when unexpired keys remain after the last one in `keys`.
    pub more: bool,
    pub revision: u64,
}

/// The key set and the revision it reflects.
#[derive(Debug, Default)]
pub struct KeyStore {
    table: KeyTable,
    revision: u64,
}

impl KeyStore {
    pub fn new() -> Self {
        KeyStore::default()
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

    /// The keys themselves, for a full reload to compare with the database.
    pub fn table(&self) -> &KeyTable {
        &self.table
    }

    /// Replaces everything with a full snapshot.
    pub fn replace(&mut self, snapshot: Snapshot) {
        self.install(KeyTable::from_entries(snapshot.keys), snapshot.revision);
    }

    /// Replaces everything with a table built elsewhere (the first full load).
    pub fn install(&mut self, table: KeyTable, revision: u64) {
        self.table = table;
        self.revision = revision;
    }

    /// Applies an incremental change set. Removals go first: a key deleted and then
    /// re-created with the same hash shows up in both lists, and must end up present.
    pub fn apply(&mut self, changes: &Changes) {
        for hash in &changes.removals {
            self.table.remove(hash);
        }
        for entry in &changes.upserts {
            self.table.insert(*entry);
        }
        self.revision = changes.revision;
    }

    /// The key with this hash, unless it is unknown or expired at `now`.
    pub fn get(&self, hash: &[u8], now: i64) -> Option<KeyEntry> {
        self.table
            .get(hash)
            .filter(|entry| !entry.is_expired(now))
            .copied()
    }

    /// Up to `limit` unexpired keys whose hash sorts strictly after `after_hash` (any
    /// length; empty means from the start), in ascending hash order.
    pub fn page(&self, after_hash: &[u8], limit: usize, now: i64) -> Page {
        let mut unexpired = self
            .table
            .after(after_hash)
            .filter(|entry| !entry.is_expired(now));
        let keys: Vec<KeyEntry> = unexpired.by_ref().take(limit).copied().collect();
        let more = unexpired.next().is_some();
        Page {
            keys,
            more,
            revision: self.revision,
        }
    }
}

/// The store shared between the gRPC handlers (readers) and the refresh loop (writer).
/// Locks are held only for in-memory work, never across an await.
#[derive(Debug, Clone, Default)]
pub struct SharedStore(Arc<RwLock<KeyStore>>);

impl SharedStore {
    pub fn new() -> Self {
        SharedStore::default()
    }

    pub fn read(&self) -> RwLockReadGuard<'_, KeyStore> {
        // A panic while holding the lock cannot leave the map half-updated in a way
        // that matters more than refusing to serve, so keep going.
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, KeyStore> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(first_byte: u8, expires_at: i64) -> KeyEntry {
        let mut key_hash = [0u8; 32];
        key_hash[0] = first_byte;
        KeyEntry {
            key_hash,
            key_id: Uuid::from_u128(first_byte as u128),
            org_id: Uuid::from_u128(1000),
            expires_at,
            rate_limit: None,
        }
    }

    fn store(entries: Vec<KeyEntry>) -> KeyStore {
        let mut store = KeyStore::new();
        store.replace(Snapshot {
            revision: 7,
            keys: entries,
        });
        store
    }

    fn first_bytes(page: &Page) -> Vec<u8> {
        page.keys.iter().map(|entry| entry.key_hash[0]).collect()
    }

    #[test]
    fn pages_are_in_hash_order_whatever_the_load_order() {
        let store = store(vec![entry(5, 0), entry(1, 0), entry(3, 0)]);
        let page = store.page(&[], 10, 100);
        assert_eq!(first_bytes(&page), vec![1, 3, 5]);
        assert!(!page.more);
        assert_eq!(page.revision, 7);
    }

    #[test]
    fn after_hash_is_exclusive_and_may_be_short() {
        let store = store(vec![entry(1, 0), entry(3, 0), entry(5, 0)]);
        let after = entry(3, 0).key_hash;
        assert_eq!(first_bytes(&store.page(&after, 10, 100)), vec![5]);
        // A 1-byte bound [3] sorts before every 32-byte hash starting with 3.
        assert_eq!(first_bytes(&store.page(&[3], 10, 100)), vec![3, 5]);
        assert_eq!(first_bytes(&store.page(&[4], 10, 100)), vec![5]);
        assert!(store.page(&[0xff; 32], 10, 100).keys.is_empty());
    }

    #[test]
    fn more_says_whether_keys_remain() {
        let store = store(vec![entry(1, 0), entry(2, 0), entry(3, 0)]);
        let first = store.page(&[], 2, 100);
        assert_eq!(first_bytes(&first), vec![1, 2]);
        assert!(first.more);
        let last = first.keys.last().unwrap().key_hash;
        let second = store.page(&last, 2, 100);
        assert_eq!(first_bytes(&second), vec![3]);
        assert!(!second.more);
        // Exactly full page: nothing remains.
        assert!(!store.page(&[], 3, 100).more);
    }

    #[test]
    fn expired_keys_are_skipped_and_do_not_count_as_more() {
        let store = store(vec![
            entry(1, 0),
            entry(2, 50),
            entry(3, 150),
            entry(4, 100),
        ]);
        let page = store.page(&[], 10, 100);
        assert_eq!(first_bytes(&page), vec![1, 3]);
        // Only expired keys after the page: `more` must be false.
        let page = store.page(&[], 2, 100);
        assert_eq!(first_bytes(&page), vec![1, 3]);
        assert!(!page.more);
        assert_eq!(store.len(), 4, "expired keys are kept");
    }

    #[test]
    fn get_ignores_expired_and_unknown_keys() {
        let store = store(vec![entry(1, 0), entry(2, 100)]);
        assert_eq!(store.get(&entry(1, 0).key_hash, 100), Some(entry(1, 0)));
        assert_eq!(store.get(&entry(2, 0).key_hash, 99), Some(entry(2, 100)));
        assert_eq!(store.get(&entry(2, 0).key_hash, 100), None);
        assert_eq!(store.get(&entry(9, 0).key_hash, 100), None);
        assert_eq!(store.get(&[1], 100), None);
    }

    #[test]
    fn apply_removes_then_upserts_and_sets_revision() {
        let mut store = store(vec![entry(1, 0), entry(2, 0)]);
        let mut changed = entry(2, 0);
        changed.rate_limit = Some(RateLimit {
            requests_per_minute: 60,
            burst: 10,
            per_key: false,
        });
        store.apply(&Changes {
            revision: 9,
            upserts: vec![changed, entry(4, 0)],
            removals: vec![entry(1, 0).key_hash, entry(2, 0).key_hash],
        });
        assert_eq!(store.revision(), 9);
        assert_eq!(first_bytes(&store.page(&[], 10, 0)), vec![2, 4]);
        assert_eq!(store.get(&changed.key_hash, 0), Some(changed));
    }

    #[test]
    fn replace_drops_keys_absent_from_the_snapshot() {
        let mut store = store(vec![entry(1, 0), entry(2, 0)]);
        store.replace(Snapshot {
            revision: 12,
            keys: vec![entry(3, 0)],
        });
        assert_eq!(store.len(), 1);
        assert_eq!(store.revision(), 12);
        assert_eq!(first_bytes(&store.page(&[], 10, 0)), vec![3]);
    }

    #[test]
    fn normalized_changes_name_each_hash_once() {
        let changes = Changes {
            revision: 4,
            upserts: vec![entry(1, 0)],
            removals: vec![
                entry(1, 0).key_hash,
                entry(2, 0).key_hash,
                entry(2, 0).key_hash,
            ],
        }
        .normalized();
        assert_eq!(changes.upserts, vec![entry(1, 0)]);
        assert_eq!(changes.removals, vec![entry(2, 0).key_hash]);
    }
}
