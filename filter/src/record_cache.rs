//! Each worker's copy of the records it served in the current tick, so that a hot key
//! costs no shared-data read (a host call, and a copy of its bucket) on every request.
//!
//! The copy is dropped on every worker tick (250 ms), whatever happened to the store:
//! a key revoked, expired into a refresh, or repaired by a resync stops working at most
//! one tick after the store learned of it, with no bookkeeping that could miss a case.

use crate::key_hash::KeyHash;
use crate::record::KeyRecord;
use std::collections::HashMap;

pub struct RecordCache {
    capacity: usize,
    entries: HashMap<KeyHash, KeyRecord>,
}

impl RecordCache {
    pub fn new(capacity: usize) -> Self {
        RecordCache {
            capacity,
            entries: HashMap::new(),
        }
    }

    pub fn get(&self, hash: &KeyHash) -> Option<KeyRecord> {
        self.entries.get(hash).copied()
    }

    /// Remembers a record read from the store. A full cache starts over: cheaper than
    /// tracking recency, and hot keys come back at once.
    pub fn insert(&mut self, record: KeyRecord) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert(record.hash, record);
    }

    /// On every tick.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Uuid;

    fn record(key: &str) -> KeyRecord {
        KeyRecord {
            hash: KeyHash::of_key(key.as_bytes()),
            key_id: Uuid([1; 16]),
            org_id: Uuid([2; 16]),
            expires_at: 0,
            rate_limit: None,
        }
    }

    #[test]
    fn serves_what_it_was_given_until_cleared() {
        let mut cache = RecordCache::new(10);
        let r = record("sk_live_a");
        cache.insert(r);
        assert_eq!(cache.get(&r.hash), Some(r));
        assert_eq!(cache.get(&record("sk_live_b").hash), None);
        cache.clear();
        assert_eq!(cache.get(&r.hash), None);
    }

    #[test]
    fn stays_within_capacity() {
        let mut cache = RecordCache::new(3);
        for i in 0..10 {
            cache.insert(record(&format!("sk_live_{i}")));
            assert!(cache.len() <= 3);
        }
        let mut off = RecordCache::new(0);
        off.insert(record("sk_live_x"));
        assert!(off.is_empty());
    }
}
