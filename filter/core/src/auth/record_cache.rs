//! Each worker's copy of the records it served recently, so that a hot key costs no
//! shared-data read (a host call, and a copy of its bucket) on every request.
//!
//! Every write to a bucket, by any writer, moves the store generation
//! (`KeyStore::generation`). On each tick (250 ms) the worker compares it with the
//! generation its copies were made at and drops them all when it moved: a key revoked,
//! changed or repaired stops working at most one tick after the store learned of it.
//! The copies are also dropped whenever the worker's trust in the store changes
//! (`store_trust`): a copy made before the store went stale is older than what made it
//! trusted again (the changes keysync's stream brought back, the refusals keysync gave
//! meanwhile), and a request may see that trust before the next tick does.

use crate::store::key_record::KeyRecord;
use crate::usage::duration_sample::DurationSample;
use keysync_contract::key_hash::KeyHash;
use std::collections::HashMap;
use std::rc::Rc;

pub struct RecordCache {
    capacity: usize,
    /// The store generation the entries were read at.
    generation: Option<u64>,
    entries: HashMap<KeyHash, Rc<CachedRecord>, KeyHashBuilder>,
}

/// A record with its identity headers already formatted: formatting two UUIDs on
/// every request of a hot key would be wasted work.
pub struct CachedRecord {
    pub record: KeyRecord,
    pub org_id: String,
    pub key_id: String,
    /// Which of this key's requests usage metering times.
    pub durations: DurationSample,
}

impl CachedRecord {
    pub fn new(record: KeyRecord) -> Self {
        CachedRecord {
            org_id: record.org_id.hyphenated(),
            key_id: record.key_id.hyphenated(),
            durations: DurationSample::default(),
            record,
        }
    }
}

/// Hashes a `KeyHash` in maps by taking its first eight bytes: it is already a SHA-256
/// output, so hashing it again (SipHash, the default) would only cost time per request.
#[derive(Clone, Copy, Default)]
pub struct KeyHashBuilder;

impl std::hash::BuildHasher for KeyHashBuilder {
    type Hasher = KeyHashHasher;

    fn build_hasher(&self) -> KeyHashHasher {
        KeyHashHasher(0)
    }
}

pub struct KeyHashHasher(u64);

impl std::hash::Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length, then its bytes: keep the first eight of them.
        for &byte in bytes.iter().take(8) {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
}

impl RecordCache {
    pub fn new(capacity: usize) -> Self {
        RecordCache {
            capacity,
            generation: None,
            entries: HashMap::default(),
        }
    }

    pub fn get(&self, hash: &KeyHash) -> Option<Rc<CachedRecord>> {
        self.entries.get(hash).cloned()
    }

    /// Remembers a record read from the store. A full cache starts over: cheaper than
    /// tracking recency, and hot keys come back at once.
    pub fn insert(&mut self, cached: Rc<CachedRecord>) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert(cached.record.hash, cached);
    }

    /// Drops every copy: the worker's trust in the store changed. The generation stays
    /// the last tick's, so copies made from now on are checked at the next tick as usual.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// On every tick, with the store's generation: drops everything if it moved.
    pub fn sync_with(&mut self, generation: u64) {
        if self.generation != Some(generation) {
            self.entries.clear();
            self.generation = Some(generation);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_contract::id::Id;

    fn record(key: &str) -> KeyRecord {
        KeyRecord {
            hash: KeyHash::of_key(key.as_bytes()),
            key_id: Id([1; 16]),
            org_id: Id([2; 16]),
            expires_at: 0,
            rate_limit: None,
            policy: None,
        }
    }

    #[test]
    fn serves_what_it_was_given_until_the_store_moves() {
        let mut cache = RecordCache::new(10);
        cache.sync_with(5);
        let r = record("sk_live_a");
        cache.insert(Rc::new(CachedRecord::new(r.clone())));
        let hit = cache.get(&r.hash).expect("cached");
        assert_eq!(hit.record, r);
        assert_eq!(hit.org_id, r.org_id.hyphenated());
        assert_eq!(hit.key_id, r.key_id.hyphenated());
        assert!(cache.get(&record("sk_live_b").hash).is_none());
        cache.sync_with(5);
        assert!(cache.get(&r.hash).is_some(), "same generation: kept");
        cache.sync_with(6);
        assert!(cache.get(&r.hash).is_none(), "the store moved: dropped");
    }

    #[test]
    fn records_read_before_the_first_tick_do_not_survive_it() {
        let mut cache = RecordCache::new(10);
        let r = record("sk_live_early");
        cache.insert(Rc::new(CachedRecord::new(r.clone())));
        cache.sync_with(0);
        assert!(cache.get(&r.hash).is_none());
    }

    #[test]
    fn maps_keyed_by_hash_work_with_the_cheap_hasher() {
        let mut map: HashMap<KeyHash, u32, KeyHashBuilder> = Default::default();
        for i in 0..1000u32 {
            map.insert(KeyHash::of_key(&i.to_le_bytes()), i);
        }
        for i in 0..1000u32 {
            assert_eq!(map.get(&KeyHash::of_key(&i.to_le_bytes())), Some(&i));
        }
    }

    #[test]
    fn stays_within_capacity() {
        let mut cache = RecordCache::new(3);
        for i in 0..10 {
            cache.insert(Rc::new(CachedRecord::new(record(&format!("sk_live_{i}")))));
            assert!(cache.len() <= 3);
        }
        let mut off = RecordCache::new(0);
        off.insert(Rc::new(CachedRecord::new(record("sk_live_x"))));
        assert!(off.is_empty());
    }
}
