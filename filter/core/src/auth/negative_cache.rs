//! Keys keysync said it does not know, remembered per worker for a short time so that
//! repeating a bad key does not repeat the lookup. Bounded: oldest entries go first.

use keysync_contract::key_hash::KeyHash;
use std::collections::{HashMap, VecDeque};

pub struct NegativeCache {
    capacity: usize,
    ttl_ms: u64,
    /// Expiry of each remembered key.
    expiries: HashMap<KeyHash, u64>,
    /// Insertion order; with one TTL for all, also expiry order.
    order: VecDeque<(KeyHash, u64)>,
}

impl NegativeCache {
    pub fn new(capacity: usize, ttl_ms: u64) -> Self {
        NegativeCache {
            capacity,
            ttl_ms,
            expiries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn contains(&self, hash: &KeyHash, now_ms: u64) -> bool {
        self.expiries
            .get(hash)
            .is_some_and(|&expires| now_ms < expires)
    }

    pub fn insert(&mut self, hash: KeyHash, now_ms: u64) {
        if self.capacity == 0 {
            return;
        }
        while let Some(&(oldest, expires)) = self.order.front() {
            if expires > now_ms && self.order.len() < self.capacity {
                break;
            }
            self.order.pop_front();
            // Only forget the key if this was its latest insertion.
            if self.expiries.get(&oldest) == Some(&expires) {
                self.expiries.remove(&oldest);
            }
        }
        let expires = now_ms.saturating_add(self.ttl_ms);
        self.expiries.insert(hash, expires);
        self.order.push_back((hash, expires));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.expiries.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.expiries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u32) -> KeyHash {
        KeyHash::of_key(&i.to_le_bytes())
    }

    #[test]
    fn remembers_until_the_ttl() {
        let mut cache = NegativeCache::new(10, 1000);
        cache.insert(hash(1), 5000);
        assert!(cache.contains(&hash(1), 5999));
        assert!(!cache.contains(&hash(1), 6000));
        assert!(!cache.contains(&hash(2), 5000));
    }

    #[test]
    fn stays_within_capacity_dropping_the_oldest() {
        let mut cache = NegativeCache::new(3, 60_000);
        for i in 0..10 {
            cache.insert(hash(i), 1000 + u64::from(i));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.contains(&hash(9), 2000));
        assert!(cache.contains(&hash(7), 2000));
        assert!(!cache.contains(&hash(6), 2000));
    }

    #[test]
    fn reinsertion_extends_and_is_not_lost_to_its_old_slot() {
        let mut cache = NegativeCache::new(2, 100);
        cache.insert(hash(1), 0);
        cache.insert(hash(1), 50);
        cache.insert(hash(2), 120); // drops hash(1)'s first slot (expired at 100)
        assert!(
            cache.contains(&hash(1), 120),
            "the later insertion still counts"
        );
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut cache = NegativeCache::new(0, 100);
        cache.insert(hash(1), 0);
        assert!(cache.is_empty());
    }
}
