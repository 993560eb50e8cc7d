//! A key bucket of the store: every record whose key hash starts with the same
//! `BUCKET_BITS` bits (`bucket_index`), kept as ONE shared-data entry (a format byte,
//! then fixed-size records sorted by hash).
//!
//! Proxy-wasm shared data never frees an entry, so one entry per key would grow with
//! every key ever seen. A fixed set of buckets, each rewritten as a whole, keeps Envoy's
//! memory proportional to the active keys.

use crate::store::bucket_index::{BucketIndex, BUCKET_BITS};
use crate::store::key_policy::KeyPolicy;
use crate::store::key_record::{KeyRecord, RECORD_LEN};
use keysync_contract::key_hash::KeyHash;
use std::cmp::Ordering;
use std::rc::Rc;

pub const BUCKET_COUNT: u32 = 1 << BUCKET_BITS;

/// First byte of every bucket entry; a reader refuses a layout it does not know.
/// Version 1: the records and nothing else, what every bucket without a policy holds.
pub const FORMAT_VERSION: u8 = 1;
/// Version 2, only for buckets that hold a key with a policy (`key_policy`): the record
/// count (`u32`), the records, then the policy of each record flagged with one, in
/// record order, each after its `u16` length. The records keep their fixed size, so
/// lookups still binary-search them; a key without policy reads no policy bytes.
pub const FORMAT_WITH_POLICIES: u8 = 2;

const NAME_PREFIX: &str = "keysync.b.";

/// The shared-data key of a bucket, built on the stack (it is needed on every request).
pub struct BucketName {
    bytes: [u8; NAME_PREFIX.len() + 4],
}

impl BucketName {
    pub fn new(bucket: u16) -> Self {
        let mut bytes = [0u8; NAME_PREFIX.len() + 4];
        let (prefix, digits) = bytes.split_at_mut(NAME_PREFIX.len());
        prefix.copy_from_slice(NAME_PREFIX.as_bytes());
        for (slot, shift) in digits.iter_mut().zip([12u16, 8, 4, 0]) {
            let nibble = ((bucket >> shift) & 0xf) as u8;
            *slot = if nibble < 10 {
                b'0' + nibble
            } else {
                b'a' + nibble - 10
            };
        }
        BucketName { bytes }
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII by construction.
        std::str::from_utf8(&self.bytes).unwrap_or(NAME_PREFIX)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum BucketError {
    UnknownFormat(u8),
    Truncated(usize),
}

impl std::fmt::Display for BucketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BucketError::UnknownFormat(v) => write!(f, "unknown bucket format {v}"),
            BucketError::Truncated(len) => write!(f, "bucket of {len} bytes is not whole records"),
        }
    }
}

/// A read-only view of a bucket's bytes.
#[derive(Clone, Copy)]
pub struct KeyBucket<'a> {
    index: u16,
    records: &'a [u8],
    /// The stored policies (version 2); empty otherwise.
    policies: &'a [u8],
}

impl<'a> KeyBucket<'a> {
    /// An entry that does not exist, or is empty, is an empty bucket.
    pub fn parse(index: u16, bytes: Option<&'a [u8]>) -> Result<Self, BucketError> {
        let (records, policies) = match bytes {
            None | Some([]) => (&[][..], &[][..]),
            Some([FORMAT_VERSION, records @ ..]) => (records, &[][..]),
            Some([FORMAT_WITH_POLICIES, rest @ ..]) => {
                let truncated = BucketError::Truncated(rest.len());
                let (count, rest) = rest.split_first_chunk::<4>().ok_or(truncated)?;
                let len = usize::try_from(u32::from_le_bytes(*count))
                    .ok()
                    .and_then(|count| count.checked_mul(RECORD_LEN))
                    .filter(|&len| len <= rest.len())
                    .ok_or(BucketError::Truncated(rest.len()))?;
                rest.split_at(len)
            }
            Some([version, ..]) => return Err(BucketError::UnknownFormat(*version)),
        };
        if records.len() % RECORD_LEN != 0 {
            return Err(BucketError::Truncated(records.len()));
        }
        Ok(KeyBucket {
            index,
            records,
            policies,
        })
    }

    pub fn len(&self) -> usize {
        self.records.len() / RECORD_LEN
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn raw(&self, i: usize) -> &'a [u8] {
        self.records
            .get(i * RECORD_LEN..(i + 1) * RECORD_LEN)
            .unwrap_or(&[])
    }

    /// Binary search on the stored hash suffixes; decodes only the match, and reads
    /// policies only when the match has one.
    pub fn find(&self, hash: &KeyHash) -> Option<KeyRecord> {
        let i = self.position(hash).ok()?;
        let mut record = KeyRecord::decode(self.index, self.raw(i))?;
        let (has_policy, allowlist) = KeyRecord::stored_policy_flags(self.raw(i));
        if has_policy {
            let skip = (0..i)
                .filter(|&j| KeyRecord::stored_policy_flags(self.raw(j)).0)
                .count();
            let mut rest = self.policies;
            for _ in 0..skip {
                rest = KeyPolicy::split_stored(rest).map_or(&[][..], |(_, rest)| rest);
            }
            let policy = KeyPolicy::split_stored(rest)
                .and_then(|(stored, _)| KeyPolicy::decode(stored, allowlist));
            record.policy = Some(Rc::new(policy.unwrap_or_else(|| {
                log::warn!(
                    "bucket {:04x}: the policy of key_hash={} cannot be read; the key \
                     is refused until the bucket is rewritten",
                    self.index,
                    hash.short()
                );
                KeyPolicy::unusable()
            })));
        }
        Some(record)
    }

    /// Record `i` with its policy.
    fn find_at(&self, i: usize) -> Option<KeyRecord> {
        let record = KeyRecord::decode(self.index, self.raw(i))?;
        self.find(&record.hash)
    }

    /// `Ok(i)`: record `i` has this hash; `Err(i)`: it would be inserted at `i`.
    fn position(&self, hash: &KeyHash) -> Result<usize, usize> {
        let target = hash.suffix();
        let (mut low, mut high) = (0, self.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match KeyRecord::stored_suffix(self.raw(mid)).cmp(target) {
                Ordering::Less => low = mid + 1,
                Ordering::Greater => high = mid,
                Ordering::Equal => return Ok(mid),
            }
        }
        Err(low)
    }

    /// Every record, with its policy. For writers: it walks the whole bucket.
    pub fn records(&self) -> Vec<KeyRecord> {
        let mut policies = self.policies;
        let mut out = Vec::with_capacity(self.len());
        for raw in self.records.chunks_exact(RECORD_LEN) {
            let Some(mut record) = KeyRecord::decode(self.index, raw) else {
                continue;
            };
            let (has_policy, allowlist) = KeyRecord::stored_policy_flags(raw);
            if has_policy {
                let stored = KeyPolicy::split_stored(policies);
                policies = stored.map_or(&[][..], |(_, rest)| rest);
                let policy = stored.and_then(|(bytes, _)| KeyPolicy::decode(bytes, allowlist));
                // Rewritten as refusing everything: a bucket write must not widen a key.
                record.policy = Some(Rc::new(policy.unwrap_or_else(KeyPolicy::unusable)));
            }
            out.push(record);
        }
        out
    }

    /// The bucket with `record` added, or replacing the record of the same hash.
    pub fn with(&self, record: &KeyRecord) -> Vec<u8> {
        let mut records = self.records();
        match self.position(&record.hash) {
            Ok(i) => {
                if let Some(slot) = records.get_mut(i) {
                    *slot = record.clone();
                }
            }
            Err(i) => records.insert(i.min(records.len()), record.clone()),
        }
        encode(&records)
    }

    /// The bucket without the record of `hash`; `None` when it holds no such record.
    pub fn without(&self, hash: &KeyHash) -> Option<Vec<u8>> {
        let i = self.position(hash).ok()?;
        let mut records = self.records();
        if i < records.len() {
            records.remove(i);
        }
        Some(encode(&records))
    }
}

/// Encodes records (sorted by hash, no duplicates: the order keysync pages them in).
/// Version 1 unless one of them has a policy.
pub fn encode(records: &[KeyRecord]) -> Vec<u8> {
    let policies: Vec<&KeyPolicy> = records
        .iter()
        .filter_map(KeyRecord::stored_policy)
        .collect();
    let mut out = Vec::with_capacity(1 + records.len() * RECORD_LEN);
    if policies.is_empty() {
        out.push(FORMAT_VERSION);
    } else {
        out.push(FORMAT_WITH_POLICIES);
        out.extend_from_slice(
            &u32::try_from(records.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
    }
    for record in records {
        record.encode_into(&mut out);
    }
    for policy in policies {
        policy.encode_into(&mut out);
    }
    out
}

/// What rewriting a bucket changes: records added or altered, and records dropped.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Diff {
    pub updated: u64,
    pub removed: u64,
}

impl std::ops::AddAssign for Diff {
    fn add_assign(&mut self, other: Diff) {
        self.updated += other.updated;
        self.removed += other.removed;
    }
}

/// Merge-walks two sorted buckets.
pub fn diff(old: &KeyBucket<'_>, new: &KeyBucket<'_>) -> Diff {
    let mut result = Diff::default();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let (a, b) = (old.raw(i), new.raw(j));
        let order = match (i < old.len(), j < new.len()) {
            (true, true) => KeyRecord::stored_suffix(a).cmp(KeyRecord::stored_suffix(b)),
            (true, false) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                result.removed += 1;
                i += 1;
            }
            Ordering::Greater => {
                result.updated += 1;
                j += 1;
            }
            Ordering::Equal => {
                // Same fixed bytes can still hide a changed policy.
                let policy_changed = KeyRecord::stored_policy_flags(a).0 && {
                    let before = old.find_at(i);
                    before.is_none() || before != new.find_at(j)
                };
                if a != b || policy_changed {
                    result.updated += 1;
                }
                i += 1;
                j += 1;
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_contract::id::Id;
    use keysync_contract::limit::{KeyLimit, Limit};

    fn record(key: &str, org: u8) -> KeyRecord {
        KeyRecord {
            hash: KeyHash::of_key(key.as_bytes()),
            key_id: Id([7; 16]),
            org_id: Id([org; 16]),
            expires_at: 0,
            rate_limit: Some(KeyLimit {
                limit: Limit {
                    requests_per_minute: 60,
                    burst: 0,
                },
                per_key: false,
            }),
            policy: None,
        }
    }

    /// The bucket `same_bucket` fills.
    const B: u16 = 0x1234 >> (16 - BUCKET_BITS);

    /// Records that share bucket `B`: same first two hash bytes, distinct suffixes.
    fn same_bucket(n: usize) -> Vec<KeyRecord> {
        let mut records: Vec<KeyRecord> = (0..n)
            .map(|i| {
                let mut r = record(&format!("k{i}"), 1);
                r.hash.0[0] = 0x12;
                r.hash.0[1] = 0x34;
                assert_eq!(r.hash.bucket(), B);
                r
            })
            .collect();
        records.sort_by_key(|r| r.hash);
        records
    }

    #[test]
    fn names_buckets_in_hex() {
        assert_eq!(BucketName::new(0).as_str(), "keysync.b.0000");
        assert_eq!(BucketName::new(0xbeef).as_str(), "keysync.b.beef");
        assert_eq!(BucketName::new(0x3fff).as_str(), "keysync.b.3fff");
    }

    #[test]
    fn finds_every_record_and_nothing_else() {
        let records = same_bucket(50);
        let bytes = encode(&records);
        let bucket = KeyBucket::parse(B, Some(&bytes)).unwrap();
        assert_eq!(bucket.len(), 50);
        for r in &records {
            assert_eq!(bucket.find(&r.hash), Some(r.clone()));
        }
        let mut absent = records[0].clone();
        absent.hash.0[31] ^= 0xff;
        assert_eq!(bucket.find(&absent.hash), None);
        assert_eq!(bucket.records(), records);
    }

    #[test]
    fn missing_and_empty_entries_are_empty_buckets() {
        assert!(KeyBucket::parse(1, None).unwrap().is_empty());
        assert!(KeyBucket::parse(1, Some(&[])).unwrap().is_empty());
        assert!(KeyBucket::parse(1, Some(&[FORMAT_VERSION]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn refuses_unknown_formats_and_partial_records() {
        assert_eq!(
            KeyBucket::parse(1, Some(&[9, 1, 2])).err(),
            Some(BucketError::UnknownFormat(9))
        );
        let mut bytes = encode(&same_bucket(2));
        bytes.pop();
        assert!(matches!(
            KeyBucket::parse(B, Some(&bytes)),
            Err(BucketError::Truncated(_))
        ));
    }

    #[test]
    fn with_inserts_in_order_and_replaces() {
        let records = same_bucket(10);
        let mut bytes = encode(&[]);
        for r in records.iter().rev() {
            bytes = KeyBucket::parse(B, Some(&bytes)).unwrap().with(r);
        }
        assert_eq!(bytes, encode(&records));

        let mut changed = records[3].clone();
        changed.org_id = Id([9; 16]);
        let replaced = KeyBucket::parse(B, Some(&bytes)).unwrap().with(&changed);
        let bucket = KeyBucket::parse(B, Some(&replaced)).unwrap();
        assert_eq!(bucket.len(), 10);
        assert_eq!(bucket.find(&changed.hash), Some(changed));
    }

    #[test]
    fn without_removes_only_that_record() {
        let records = same_bucket(5);
        let bytes = encode(&records);
        let bucket = KeyBucket::parse(B, Some(&bytes)).unwrap();
        let removed = bucket.without(&records[2].hash).unwrap();
        let mut expected = records.clone();
        expected.remove(2);
        assert_eq!(removed, encode(&expected));
        let mut absent = records[0].hash;
        absent.0[20] ^= 1;
        assert_eq!(bucket.without(&absent), None);
    }

    #[test]
    fn diff_counts_updates_and_removals() {
        let records = same_bucket(6);
        let old = encode(&records[0..4]);
        let mut changed = records[1].clone();
        changed.expires_at = 5;
        let new = encode(&[
            changed,
            records[2].clone(),
            records[4].clone(),
            records[5].clone(),
        ]);
        let d = diff(
            &KeyBucket::parse(B, Some(&old)).unwrap(),
            &KeyBucket::parse(B, Some(&new)).unwrap(),
        );
        // records[0].clone() and [3] removed; [1] changed; [4] and [5] added; [2] unchanged.
        assert_eq!(
            d,
            Diff {
                updated: 3,
                removed: 2
            }
        );
        let same = diff(
            &KeyBucket::parse(B, Some(&old)).unwrap(),
            &KeyBucket::parse(B, Some(&old)).unwrap(),
        );
        assert_eq!(same, Diff::default());
    }

    fn with_policy(mut r: KeyRecord, scope: &str) -> KeyRecord {
        r.policy = Some(Rc::new(KeyPolicy {
            scopes: vec![scope.to_string()],
            networks: None,
        }));
        r
    }

    #[test]
    fn policies_are_stored_after_the_records_and_found_by_order() {
        let plain = same_bucket(6);
        let mut records = plain.clone();
        records[1] = with_policy(records[1].clone(), "a");
        records[4] = with_policy(records[4].clone(), "b");
        let bytes = encode(&records);
        assert_eq!(bytes[0], FORMAT_WITH_POLICIES);
        assert_eq!(encode(&plain)[0], FORMAT_VERSION, "no policy, old layout");
        let bucket = KeyBucket::parse(B, Some(&bytes)).unwrap();
        assert_eq!(bucket.len(), 6);
        for r in &records {
            assert_eq!(bucket.find(&r.hash), Some(r.clone()));
        }
        assert_eq!(bucket.records(), records);

        let changed = with_policy(records[4].clone(), "c");
        let rewritten = bucket.with(&changed);
        let after = KeyBucket::parse(B, Some(&rewritten)).unwrap();
        assert_eq!(after.find(&changed.hash), Some(changed));
        assert_eq!(after.find(&records[1].hash), Some(records[1].clone()));
        assert_eq!(
            diff(&bucket, &after),
            Diff {
                updated: 1,
                removed: 0
            },
            "a policy change alone is an update"
        );
        let without = bucket.without(&records[1].hash).unwrap();
        let after = KeyBucket::parse(B, Some(&without)).unwrap();
        assert_eq!(after.find(&records[4].hash), Some(records[4].clone()));
    }

    #[test]
    fn a_flagged_record_whose_policy_cannot_be_read_gets_nothing() {
        let mut records = same_bucket(2);
        records[0] = with_policy(records[0].clone(), "a");
        let mut bytes = encode(&records);
        bytes.truncate(bytes.len() - 1);
        let bucket = KeyBucket::parse(B, Some(&bytes)).unwrap();
        let found = bucket.find(&records[0].hash).unwrap();
        assert_eq!(found.policy.as_deref(), Some(&KeyPolicy::unusable()));
        assert!(!found.policy.unwrap().admits(Some(b"10.0.0.1:1")));
        assert_eq!(bucket.find(&records[1].hash), Some(records[1].clone()));
        // A flag in the layout without policies: the same.
        let mut old = vec![FORMAT_VERSION];
        records[0].encode_into(&mut old);
        let bucket = KeyBucket::parse(B, Some(&old)).unwrap();
        assert_eq!(
            bucket.find(&records[0].hash).unwrap().policy.as_deref(),
            Some(&KeyPolicy::unusable())
        );
        let mut lying = encode(&records);
        lying[1..5].copy_from_slice(&100u32.to_le_bytes());
        assert!(
            KeyBucket::parse(B, Some(&lying)).is_err(),
            "a count past the end"
        );
    }
}
