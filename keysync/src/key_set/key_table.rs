//! The key set in memory, laid out to stay small at a million keys and beyond: entries
//! in 65,536 buckets by the first two bytes of their hash, each bucket a vector sorted
//! by hash. Walking the buckets in order walks every key in hash order (what `ListKeys`
//! pages through); a lookup is a short search in a bucket of a few dozen entries.
//!
//! Why not a `BTreeMap<KeyHash, KeyEntry>`: its key repeats the 32-byte hash the entry
//! already holds, and its nodes run between half and fully used, so a key took 122
//! bytes when a million were loaded at once and 180 when they arrived one by one, where
//! the entry itself was 88 (96 since it points to its scopes and allowlist). Here an
//! entry costs its 96 bytes (and its policy on the heap, for the keys that have one)
//! plus the spare room of its bucket, which grows by an eighth at a time and shrinks
//! when half empty. SHA-256 hashes are uniform, so buckets stay even: about 15 entries
//! each at a million keys, 150 at ten million, and an insert or removal moves at most
//! one bucket's entries.
//!
//! A full reload compares the database with the table as rows arrive
//! ([`Reconciliation`]) instead of building a second table, so two copies of the key set
//! never exist at once.

use keysync_contract::key_hash::KeyHash;

use crate::key_set::changes::Changes;
use crate::key_set::key_entry::KeyEntry;

/// Hash bytes that choose the bucket.
const PREFIX_BYTES: usize = 2;
/// Number of buckets: one per value of the first [`PREFIX_BYTES`] bytes.
pub const BUCKETS: usize = 1 << (8 * PREFIX_BYTES);

/// The bucket of the hashes that start with `bytes`, or with `bytes` followed by zeros
/// when it is shorter than the prefix: no hash in an earlier bucket sorts after `bytes`.
fn bucket_of(bytes: &[u8]) -> usize {
    let mut prefix = [0u8; PREFIX_BYTES];
    for (slot, byte) in prefix.iter_mut().zip(bytes) {
        *slot = *byte;
    }
    usize::from(u16::from_be_bytes(prefix))
}

/// Every key, in buckets by hash prefix.
pub struct KeyTable {
    /// [`BUCKETS`] vectors, each sorted by hash with no hash twice.
    buckets: Box<[Vec<KeyEntry>]>,
    len: usize,
    /// Counts the changes made, so a [`Reconciliation`] can tell that the table it was
    /// started on is still the one it is given.
    generation: u64,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("len", &self.len)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable::new()
    }
}

impl KeyTable {
    pub fn new() -> Self {
        KeyTable {
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            len: 0,
            generation: 0,
        }
    }

    /// A table holding `entries` (a later entry replaces an earlier one with its hash).
    pub fn from_entries(entries: impl IntoIterator<Item = KeyEntry>) -> Self {
        let mut table = KeyTable::new();
        for entry in entries {
            table.insert(entry);
        }
        table
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where `hash` is, or would go, in its bucket.
    ///
    /// Hashes are uniform, so the byte after the prefix says about where in its bucket
    /// a hash sits; the search starts there and walks the step or two to the place.
    /// That touches a cache line or two where a binary search would touch four or five
    /// (the walk is correct for any hashes, only slower for skewed ones).
    fn locate(&self, hash: &[u8]) -> (usize, Result<usize, usize>) {
        let bucket = bucket_of(hash);
        let entries = &self.buckets[bucket];
        let guess = hash
            .get(PREFIX_BYTES)
            .map_or(0, |&byte| usize::from(byte) * entries.len() / 256);
        let mut index = guess;
        while index > 0 && entries[index - 1].key_hash.as_bytes()[..] >= *hash {
            index -= 1;
        }
        while index < entries.len() && entries[index].key_hash.as_bytes()[..] < *hash {
            index += 1;
        }
        // Now every entry before `index` sorts before `hash`, none from it on does.
        let found = entries
            .get(index)
            .is_some_and(|entry| entry.key_hash.as_bytes()[..] == *hash);
        (bucket, if found { Ok(index) } else { Err(index) })
    }

    /// The entry with this hash (of any length; only 32-byte ones can match).
    pub fn get(&self, hash: &[u8]) -> Option<&KeyEntry> {
        match self.locate(hash) {
            (bucket, Ok(index)) => self.buckets[bucket].get(index),
            (_, Err(_)) => None,
        }
    }

    /// Inserts `entry`, or replaces the entry with its hash.
    pub fn insert(&mut self, entry: KeyEntry) {
        self.generation += 1;
        let (bucket, index) = self.locate(entry.key_hash.as_bytes());
        let bucket = &mut self.buckets[bucket];
        match index {
            Ok(index) => bucket[index] = entry,
            Err(index) => {
                if bucket.len() == bucket.capacity() {
                    // An eighth more, not the double `Vec::insert` would take: spare
                    // room is paid for in every bucket at once. (At least 4 more
                    // made a million-key load 0.1 s faster and 8 MB bigger.)
                    bucket.reserve_exact(bucket.len() / 8 + 1);
                }
                bucket.insert(index, entry);
                self.len += 1;
            }
        }
    }

    /// Removes the entry with this hash; false when there is none.
    pub fn remove(&mut self, hash: &KeyHash) -> bool {
        self.generation += 1;
        let (bucket, index) = self.locate(hash.as_bytes());
        let Ok(index) = index else {
            return false;
        };
        let bucket = &mut self.buckets[bucket];
        bucket.remove(index);
        if bucket.capacity() > 2 * bucket.len() + 4 {
            bucket.shrink_to(bucket.len() + bucket.len() / 8);
        }
        self.len -= 1;
        true
    }

    /// Every entry whose hash sorts strictly after `after` (any length; empty means
    /// from the start), in ascending hash order.
    pub fn after<'a>(&'a self, after: &[u8]) -> impl Iterator<Item = &'a KeyEntry> + 'a {
        let first_bucket = bucket_of(after);
        let first = &self.buckets[first_bucket];
        let start = first.partition_point(|entry| entry.key_hash.as_bytes()[..] <= *after);
        first[start..]
            .iter()
            .chain(self.buckets[first_bucket + 1..].iter().flatten())
    }

    /// Every entry, in ascending hash order.
    pub fn iter(&self) -> impl Iterator<Item = &KeyEntry> + '_ {
        self.buckets.iter().flatten()
    }

    /// Starts comparing this table with a complete key set that will be offered one
    /// entry at a time.
    pub fn reconcile(&self) -> Reconciliation {
        let mut starts = Vec::with_capacity(BUCKETS);
        let mut position = 0;
        for bucket in self.buckets.iter() {
            starts.push(position);
            position += bucket.len();
        }
        Reconciliation {
            generation: self.generation,
            starts,
            seen: vec![0; self.len.div_ceil(64)],
            upserts: Vec::new(),
        }
    }
}

/// The table changed while a [`Reconciliation`] was comparing it with the database:
/// the comparison no longer means anything. Full reloads and catch-ups are serialised,
/// so this is a bug, reported instead of acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the key set changed during a full reload")]
pub struct TableChanged;

/// What turns a table into a complete key set that arrives one entry at a time (a full
/// reload's rows, in any order), without holding that key set: entries new or different
/// are kept as upserts, and the table's entries that were offered are ticked off in a
/// bitmap (one bit a key), so those never offered become the removals.
///
/// Every call takes the table the reconciliation was started on, unchanged.
#[derive(Debug)]
pub struct Reconciliation {
    generation: u64,
    /// The position, in hash order, of each bucket's first entry.
    starts: Vec<usize>,
    /// One bit per table entry, by position: offered.
    seen: Vec<u64>,
    upserts: Vec<KeyEntry>,
}

impl Reconciliation {
    fn check(&self, table: &KeyTable) -> Result<(), TableChanged> {
        if table.generation == self.generation {
            Ok(())
        } else {
            Err(TableChanged)
        }
    }

    /// One entry of the complete key set.
    pub fn offer(&mut self, table: &KeyTable, entry: KeyEntry) -> Result<(), TableChanged> {
        self.check(table)?;
        match table.locate(entry.key_hash.as_bytes()) {
            (bucket, Ok(index)) => {
                let position = self.starts[bucket] + index;
                self.seen[position / 64] |= 1 << (position % 64);
                if table.buckets[bucket][index] != entry {
                    self.upserts.push(entry);
                }
            }
            (_, Err(_)) => self.upserts.push(entry),
        }
        Ok(())
    }

    /// The changes from the table to the key set offered, at `revision`, each list in
    /// hash order.
    pub fn finish(mut self, table: &KeyTable, revision: u64) -> Result<Changes, TableChanged> {
        self.check(table)?;
        self.upserts.sort_unstable_by_key(|entry| entry.key_hash);
        let removals = table
            .iter()
            .enumerate()
            .filter(|(position, _)| self.seen[position / 64] & (1 << (position % 64)) == 0)
            .map(|(_, entry)| entry.key_hash)
            .collect();
        Ok(Changes {
            revision,
            upserts: self.upserts,
            removals,
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    /// An entry whose hash starts with `prefix` (then zeros) and whose key id is `id`.
    fn entry(prefix: &[u8], id: u128) -> KeyEntry {
        let mut key_hash = [0u8; 32];
        key_hash[..prefix.len()].copy_from_slice(prefix);
        KeyEntry {
            key_hash: KeyHash(key_hash),
            key_id: Uuid::from_u128(id),
            org_id: Uuid::from_u128(7),
            expires_at: 0,
            rate_limit: None,
            policy: None,
        }
    }

    fn prefixes<'a>(entries: impl Iterator<Item = &'a KeyEntry>) -> Vec<[u8; 3]> {
        entries
            .map(|entry| {
                [
                    entry.key_hash.0[0],
                    entry.key_hash.0[1],
                    entry.key_hash.0[2],
                ]
            })
            .collect()
    }

    #[test]
    fn keeps_hash_order_across_buckets_and_replaces_by_hash() {
        let mut table = KeyTable::new();
        for prefix in [
            [9, 0, 1],
            [0, 0, 0],
            [0xff, 0xff, 0xff],
            [9, 0, 0],
            [0, 1, 0],
        ] {
            table.insert(entry(&prefix, 1));
        }
        table.insert(entry(&[9, 0, 1], 2));
        assert_eq!(table.len(), 5);
        assert_eq!(
            prefixes(table.iter()),
            vec![
                [0, 0, 0],
                [0, 1, 0],
                [9, 0, 0],
                [9, 0, 1],
                [0xff, 0xff, 0xff]
            ]
        );
        assert_eq!(
            table
                .get(entry(&[9, 0, 1], 0).key_hash.as_bytes())
                .unwrap()
                .key_id,
            Uuid::from_u128(2)
        );
        assert_eq!(table.get(entry(&[9, 0, 2], 0).key_hash.as_bytes()), None);
        assert_eq!(table.get(&[9]), None, "a short hash matches nothing");
        assert_eq!(table.get(&[]), None);
    }

    #[test]
    fn after_starts_strictly_after_a_bound_of_any_length() {
        let table = KeyTable::from_entries(
            [[1, 0, 0], [1, 0, 5], [1, 2, 0], [3, 0, 0]].map(|p| entry(&p, 1)),
        );
        let after = |bound: &[u8]| prefixes(table.after(bound));
        assert_eq!(after(&[]).len(), 4);
        assert_eq!(
            after(&[1]),
            vec![[1, 0, 0], [1, 0, 5], [1, 2, 0], [3, 0, 0]]
        );
        assert_eq!(
            after(&[1, 0]),
            vec![[1, 0, 0], [1, 0, 5], [1, 2, 0], [3, 0, 0]]
        );
        assert_eq!(
            after(entry(&[1, 0, 0], 0).key_hash.as_bytes()),
            vec![[1, 0, 5], [1, 2, 0], [3, 0, 0]]
        );
        assert_eq!(after(&[1, 0, 5]), vec![[1, 0, 5], [1, 2, 0], [3, 0, 0]]);
        assert_eq!(after(&[1, 0, 6]), vec![[1, 2, 0], [3, 0, 0]]);
        assert_eq!(after(&[1, 1]), vec![[1, 2, 0], [3, 0, 0]]);
        assert_eq!(after(&[2]), vec![[3, 0, 0]]);
        assert!(after(&[
            3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0
        ])
        .is_empty());
        assert!(after(&[0xff; 32]).is_empty());
    }

    #[test]
    fn removing_keeps_the_rest_and_gives_room_back() {
        let mut table = KeyTable::from_entries((0..=255u8).map(|third| entry(&[4, 4, third], 1)));
        assert_eq!(table.len(), 256);
        for third in 0..250u8 {
            assert!(table.remove(&entry(&[4, 4, third], 0).key_hash));
        }
        assert!(!table.remove(&entry(&[4, 4, 0], 0).key_hash));
        assert_eq!(table.len(), 6);
        assert_eq!(prefixes(table.iter()).len(), 6);
        let bucket = &table.buckets[bucket_of(&[4, 4])];
        assert!(
            bucket.capacity() <= 2 * bucket.len() + 4,
            "{}",
            bucket.capacity()
        );
        assert!(table
            .buckets
            .iter()
            .all(|bucket| bucket.windows(2).all(|w| w[0].key_hash < w[1].key_hash)));
    }

    #[test]
    fn buckets_grow_by_an_eighth() {
        let mut table = KeyTable::new();
        for third in 0..=200u8 {
            table.insert(entry(&[7, 7, third], 1));
        }
        let bucket = &table.buckets[bucket_of(&[7, 7])];
        assert_eq!(bucket.len(), 201);
        assert!(bucket.capacity() <= 201 + 201 / 8, "{}", bucket.capacity());
    }

    #[test]
    fn skewed_hashes_are_found_wherever_the_search_starts() {
        // One bucket, the byte after the prefix all 0x00 or all 0xff: every search
        // starts at one end and walks.
        let low: Vec<KeyEntry> = (0..100u8).map(|i| entry(&[5, 5, 0, i], 1)).collect();
        let high: Vec<KeyEntry> = (0..100u8).map(|i| entry(&[5, 5, 0xff, i], 1)).collect();
        let table = KeyTable::from_entries(high.iter().chain(&low).rev().cloned());
        assert_eq!(table.len(), 200);
        for entry in low.iter().chain(&high) {
            assert_eq!(table.get(entry.key_hash.as_bytes()), Some(entry));
        }
        for absent in [
            [5, 5, 0, 200],
            [5, 5, 0x80, 0],
            [5, 5, 0xff, 200],
            [5, 5, 0, 0],
        ] {
            let mut hash = [0u8; 32];
            hash[..4].copy_from_slice(&absent);
            hash[31] = 1;
            assert_eq!(table.get(&hash), None, "{absent:?}");
        }
        let all: Vec<&KeyEntry> = table.iter().collect();
        assert!(all.windows(2).all(|w| w[0].key_hash < w[1].key_hash));
    }

    #[test]
    fn reconciliation_lists_new_changed_and_missing_keys() {
        let table = KeyTable::from_entries([
            entry(&[1], 1),
            entry(&[2], 1),
            entry(&[2, 0, 1], 1),
            entry(&[3], 1),
            entry(&[5], 1),
        ]);
        let mut reconciliation = table.reconcile();
        // The complete set, in any order: 2 and 3 unchanged, 2.0.1 changed, 4 and 6
        // new; 1 and 5 gone.
        for offered in [
            entry(&[6], 1),
            entry(&[3], 1),
            entry(&[2, 0, 1], 9),
            entry(&[2], 1),
            entry(&[4], 1),
        ] {
            reconciliation.offer(&table, offered).unwrap();
        }
        let changes = reconciliation.finish(&table, 11).unwrap();
        assert_eq!(changes.revision, 11);
        assert_eq!(
            prefixes(changes.upserts.iter()),
            vec![[2, 0, 1], [4, 0, 0], [6, 0, 0]]
        );
        assert_eq!(changes.upserts[0].key_id, Uuid::from_u128(9));
        assert_eq!(
            changes.removals,
            vec![entry(&[1], 0).key_hash, entry(&[5], 0).key_hash]
        );
    }

    #[test]
    fn reconciling_the_same_set_changes_nothing_and_an_empty_one_removes_all() {
        let entries: Vec<KeyEntry> = (0..200u8).map(|byte| entry(&[byte, byte], 1)).collect();
        let table = KeyTable::from_entries(entries.clone());
        let mut same = table.reconcile();
        for offered in entries.iter().rev() {
            same.offer(&table, offered.clone()).unwrap();
        }
        assert!(same.finish(&table, 3).unwrap().is_empty());
        let gone = table.reconcile().finish(&table, 4).unwrap();
        assert_eq!(gone.removals.len(), 200);
        assert!(gone.upserts.is_empty());

        let empty = KeyTable::new();
        let mut fresh = empty.reconcile();
        fresh.offer(&empty, entries[0].clone()).unwrap();
        assert_eq!(
            fresh.finish(&empty, 5).unwrap().upserts,
            vec![entries[0].clone()]
        );
    }

    #[test]
    fn reconciliation_refuses_a_table_that_changed() {
        let mut table = KeyTable::from_entries([entry(&[1], 1)]);
        let mut reconciliation = table.reconcile();
        reconciliation.offer(&table, entry(&[1], 1)).unwrap();
        table.insert(entry(&[0], 1));
        assert_eq!(
            reconciliation.offer(&table, entry(&[2], 1)),
            Err(TableChanged)
        );
        assert_eq!(reconciliation.finish(&table, 2).unwrap_err(), TableChanged);
    }
}
