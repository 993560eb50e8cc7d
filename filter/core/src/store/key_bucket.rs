//! A key bucket of the store: every record whose key hash starts with the same
//! `BUCKET_BITS` bits (`bucket_index`), kept as ONE shared-data entry: a format byte, the
//! record count, fixed-size records sorted by hash, then the side bytes of the records
//! that have any (a rate limit, a policy, an organization id not in `org_table`), in
//! record order.
//!
//! Proxy-wasm shared data never frees an entry, so one entry per key would grow with
//! every key ever seen. A fixed set of buckets, each rewritten as a whole, keeps Envoy's
//! memory proportional to the active keys. The records keep their fixed size, so lookups
//! binary-search them; a key without side bytes reads none.

use crate::store::bucket_index::BUCKET_BITS;
use crate::store::key_record::{stored_suffix_of, KeyRecord, RECORD_LEN};
use crate::store::org_table::OrgTable;
use keysync_contract::key_hash::KeyHash;
use std::cmp::Ordering;

pub const BUCKET_COUNT: u32 = 1 << BUCKET_BITS;

/// First byte of every bucket entry; a reader refuses a layout it does not know (a full
/// sync rewrites such a bucket whole). Version 3: 40-byte records (versions 1 and 2 had
/// 80-byte ones, with the whole hash, the organization id, an `i64` expiry and the limit).
pub const FORMAT_VERSION: u8 = 3;

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
    /// The side bytes of the records that have any, in record order.
    side: &'a [u8],
}

impl<'a> KeyBucket<'a> {
    /// An entry that does not exist, or is empty, is an empty bucket.
    pub fn parse(index: u16, bytes: Option<&'a [u8]>) -> Result<Self, BucketError> {
        let (records, side) = match bytes {
            None | Some([]) => (&[][..], &[][..]),
            Some([FORMAT_VERSION, rest @ ..]) => {
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
        Ok(KeyBucket {
            index,
            records,
            side,
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

    /// The side bytes from where record `i`'s start (those of every record before it
    /// skipped); empty when they cannot be followed that far.
    fn side_of(&self, i: usize) -> &'a [u8] {
        let mut rest = self.side;
        for j in 0..i {
            let raw = self.raw(j);
            if KeyRecord::has_side(raw) {
                let Some(len) = KeyRecord::side_len(raw, rest) else {
                    return &[];
                };
                rest = rest.get(len..).unwrap_or(&[]);
            }
        }
        rest
    }

    /// Record `i`, read with its side bytes.
    fn decode_at(&self, i: usize, orgs: &impl OrgTable) -> Option<KeyRecord> {
        let raw = self.raw(i);
        let side = if KeyRecord::has_side(raw) {
            self.side_of(i)
        } else {
            &[]
        };
        KeyRecord::decode(self.index, raw, side, orgs)
    }

    /// Binary search on the stored hash suffixes; decodes only the match, and reads side
    /// bytes only when the match has some. The record found carries `hash` whole.
    pub fn find(&self, hash: &KeyHash, orgs: &impl OrgTable) -> Option<KeyRecord> {
        let i = self.position(hash).ok()?;
        let record = self.decode_at(i, orgs);
        if record.is_none() {
            log::warn!(
                "bucket {:04x}: the record of key_hash={} cannot be read; the key is \
                 unknown until the bucket is rewritten",
                self.index,
                hash.short()
            );
        }
        Some(KeyRecord {
            hash: *hash,
            ..record?
        })
    }

    /// `Ok(i)`: record `i` has this hash; `Err(i)`: it would be inserted at `i`.
    fn position(&self, hash: &KeyHash) -> Result<usize, usize> {
        let target = stored_suffix_of(hash);
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

    /// Every record that can be read. For writers: it walks the whole bucket. Their
    /// hashes hold only the stored bytes (`key_record::same_stored_key`).
    pub fn records(&self, orgs: &impl OrgTable) -> Vec<KeyRecord> {
        let mut side = self.side;
        let mut out = Vec::with_capacity(self.len());
        for raw in self.records.chunks_exact(RECORD_LEN) {
            let here = side;
            if KeyRecord::has_side(raw) {
                let len = KeyRecord::side_len(raw, side);
                side = len.and_then(|len| side.get(len..)).unwrap_or(&[]);
            }
            // A record that cannot be read is dropped: a bucket write must not widen a key.
            if let Some(record) = KeyRecord::decode(self.index, raw, here, orgs) {
                out.push(record);
            }
        }
        out
    }

    /// The bucket with `record` added, or replacing the record of the same hash.
    pub fn with(&self, record: &KeyRecord, orgs: &impl OrgTable) -> Vec<u8> {
        let mut records = self.records(orgs);
        let wanted = stored_suffix_of(&record.hash);
        match records.binary_search_by(|r| stored_suffix_of(&r.hash).cmp(wanted)) {
            Ok(i) => {
                if let Some(slot) = records.get_mut(i) {
                    *slot = record.clone();
                }
            }
            Err(i) => records.insert(i.min(records.len()), record.clone()),
        }
        encode(&records, orgs)
    }

    /// The bucket without the record of `hash`; `None` when it holds no such record.
    pub fn without(&self, hash: &KeyHash, orgs: &impl OrgTable) -> Option<Vec<u8>> {
        self.position(hash).ok()?;
        let mut records = self.records(orgs);
        records.retain(|r| stored_suffix_of(&r.hash) != stored_suffix_of(hash));
        Some(encode(&records, orgs))
    }
}

/// Encodes records (sorted by hash, no duplicates: the order keysync pages them in).
pub fn encode(records: &[KeyRecord], orgs: &impl OrgTable) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + records.len() * RECORD_LEN);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(
        &u32::try_from(records.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    let mut side = Vec::new();
    for record in records {
        record.encode_into(&mut out, &mut side, orgs);
    }
    out.extend_from_slice(&side);
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
pub fn diff(old: &KeyBucket<'_>, new: &KeyBucket<'_>, orgs: &impl OrgTable) -> Diff {
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
                // Same fixed bytes can still hide changed side bytes.
                let side_changed = KeyRecord::has_side(a) && {
                    let before = old.decode_at(i, orgs);
                    before.is_none() || before != new.decode_at(j, orgs)
                };
                if a != b || side_changed {
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
    use crate::store::bucket_index::BucketIndex;
    use crate::store::key_policy::KeyPolicy;
    use crate::store::key_record::STORED_HASH_LEN;
    use crate::store::org_table::tests::MemoryOrgTable;
    use keysync_contract::id::Id;
    use keysync_contract::limit::{KeyLimit, Limit};
    use std::rc::Rc;

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

    /// `records` as `KeyBucket::records` gives them back: the hashes' stored bytes only.
    fn as_stored(records: &[KeyRecord]) -> Vec<KeyRecord> {
        records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.hash.0[STORED_HASH_LEN..].fill(0);
                r
            })
            .collect()
    }

    #[test]
    fn finds_every_record_and_nothing_else() {
        let orgs = MemoryOrgTable::default();
        let records = same_bucket(50);
        let bytes = encode(&records, &orgs);
        let bucket = KeyBucket::parse(B, Some(&bytes)).unwrap();
        assert_eq!(bucket.len(), 50);
        for r in &records {
            assert_eq!(bucket.find(&r.hash, &orgs), Some(r.clone()));
        }
        let mut absent = records[0].clone();
        absent.hash.0[15] ^= 0xff;
        assert_eq!(bucket.find(&absent.hash, &orgs), None);
        assert_eq!(bucket.records(&orgs), as_stored(&records));
        // Past the stored bytes a hash is not compared: the first 128 bits name the key.
        let mut same_prefix = records[0].hash;
        same_prefix.0[31] ^= 0xff;
        assert!(bucket.find(&same_prefix, &orgs).is_some());
    }

    #[test]
    fn a_bucket_at_capacity_round_trips_in_40_bytes_a_key() {
        // A million keys over 16,384 buckets is ~61 a bucket; a bucket at four times that,
        // every key with a limit, some with a policy, some with an org the table refused.
        let orgs = MemoryOrgTable {
            cap: 3,
            ..Default::default()
        };
        let mut records = same_bucket(256);
        for (i, r) in records.iter_mut().enumerate() {
            r.org_id = Id([(i % 5) as u8; 16]);
            if i % 7 == 0 {
                *r = with_policy(r.clone(), "read");
            }
        }
        let bytes = encode(&records, &orgs);
        let bucket = KeyBucket::parse(B, Some(&bytes)).unwrap();
        assert_eq!(bucket.len(), 256);
        for r in &records {
            assert_eq!(bucket.find(&r.hash, &orgs), Some(r.clone()));
        }
        assert_eq!(bucket.records(&orgs), as_stored(&records));
        assert_eq!(orgs.ids.borrow().len(), 3, "two orgs inline");
        let plain: Vec<KeyRecord> = records
            .iter()
            .map(|r| KeyRecord {
                rate_limit: None,
                policy: None,
                org_id: Id([0; 16]),
                ..r.clone()
            })
            .collect();
        assert_eq!(
            encode(&plain, &orgs).len(),
            1 + 4 + 256 * 40,
            "a key with nothing beyond the record costs 40 bytes"
        );
    }

    #[test]
    fn missing_and_empty_entries_are_empty_buckets() {
        let orgs = MemoryOrgTable::default();
        assert!(KeyBucket::parse(1, None).unwrap().is_empty());
        assert!(KeyBucket::parse(1, Some(&[])).unwrap().is_empty());
        assert!(KeyBucket::parse(1, Some(&encode(&[], &orgs)))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn refuses_unknown_formats_and_partial_records() {
        let orgs = MemoryOrgTable::default();
        assert_eq!(
            KeyBucket::parse(1, Some(&[9, 1, 2])).err(),
            Some(BucketError::UnknownFormat(9))
        );
        assert_eq!(
            KeyBucket::parse(1, Some(&[1, 0, 0])).err(),
            Some(BucketError::UnknownFormat(1)),
            "the 80-byte layout of before"
        );
        let mut plain = same_bucket(2);
        for r in &mut plain {
            r.rate_limit = None;
        }
        let mut bytes = encode(&plain, &orgs);
        bytes.pop();
        assert!(matches!(
            KeyBucket::parse(B, Some(&bytes)),
            Err(BucketError::Truncated(_))
        ));
        let mut lying = encode(&plain, &orgs);
        lying[1..5].copy_from_slice(&100u32.to_le_bytes());
        assert!(
            KeyBucket::parse(B, Some(&lying)).is_err(),
            "a count past the end"
        );
    }

    #[test]
    fn with_inserts_in_order_and_replaces() {
        let orgs = MemoryOrgTable::default();
        let records = same_bucket(10);
        let mut bytes = encode(&[], &orgs);
        for r in records.iter().rev() {
            bytes = KeyBucket::parse(B, Some(&bytes)).unwrap().with(r, &orgs);
        }
        assert_eq!(bytes, encode(&records, &orgs));

        let mut changed = records[3].clone();
        changed.org_id = Id([9; 16]);
        let replaced = KeyBucket::parse(B, Some(&bytes))
            .unwrap()
            .with(&changed, &orgs);
        let bucket = KeyBucket::parse(B, Some(&replaced)).unwrap();
        assert_eq!(bucket.len(), 10);
        assert_eq!(bucket.find(&changed.hash, &orgs), Some(changed));
    }

    #[test]
    fn without_removes_only_that_record() {
        let orgs = MemoryOrgTable::default();
        let records = same_bucket(5);
        let bytes = encode(&records, &orgs);
        let bucket = KeyBucket::parse(B, Some(&bytes)).unwrap();
        let removed = bucket.without(&records[2].hash, &orgs).unwrap();
        let mut expected = records.clone();
        expected.remove(2);
        assert_eq!(removed, encode(&expected, &orgs));
        let mut absent = records[0].hash;
        absent.0[10] ^= 1;
        assert_eq!(bucket.without(&absent, &orgs), None);
    }

    #[test]
    fn diff_counts_updates_and_removals() {
        let orgs = MemoryOrgTable::default();
        let records = same_bucket(6);
        let old = encode(&records[0..4], &orgs);
        let mut changed = records[1].clone();
        changed.expires_at = 5;
        let mut limit_changed = records[2].clone();
        if let Some(limit) = &mut limit_changed.rate_limit {
            limit.limit.burst = 3;
        }
        let new = encode(
            &[
                changed,
                limit_changed,
                records[4].clone(),
                records[5].clone(),
            ],
            &orgs,
        );
        let d = diff(
            &KeyBucket::parse(B, Some(&old)).unwrap(),
            &KeyBucket::parse(B, Some(&new)).unwrap(),
            &orgs,
        );
        // [0] and [3] removed; [1] changed, [2]'s limit (a side byte) changed; [4] and [5]
        // added.
        assert_eq!(
            d,
            Diff {
                updated: 4,
                removed: 2
            }
        );
        let same = diff(
            &KeyBucket::parse(B, Some(&old)).unwrap(),
            &KeyBucket::parse(B, Some(&old)).unwrap(),
            &orgs,
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
        let orgs = MemoryOrgTable::default();
        let plain = same_bucket(6);
        let mut records = plain.clone();
        records[1] = with_policy(records[1].clone(), "a");
        records[4] = with_policy(records[4].clone(), "b");
        let bytes = encode(&records, &orgs);
        let bucket = KeyBucket::parse(B, Some(&bytes)).unwrap();
        assert_eq!(bucket.len(), 6);
        for r in &records {
            assert_eq!(bucket.find(&r.hash, &orgs), Some(r.clone()));
        }
        assert_eq!(bucket.records(&orgs), as_stored(&records));

        let changed = with_policy(records[4].clone(), "c");
        let rewritten = bucket.with(&changed, &orgs);
        let after = KeyBucket::parse(B, Some(&rewritten)).unwrap();
        assert_eq!(after.find(&changed.hash, &orgs), Some(changed));
        assert_eq!(
            after.find(&records[1].hash, &orgs),
            Some(records[1].clone())
        );
        assert_eq!(
            diff(&bucket, &after, &orgs),
            Diff {
                updated: 1,
                removed: 0
            },
            "a policy change alone is an update"
        );
        let without = bucket.without(&records[1].hash, &orgs).unwrap();
        let after = KeyBucket::parse(B, Some(&without)).unwrap();
        assert_eq!(
            after.find(&records[4].hash, &orgs),
            Some(records[4].clone())
        );
    }

    #[test]
    fn a_flagged_record_whose_policy_cannot_be_read_gets_nothing() {
        let orgs = MemoryOrgTable::default();
        let mut records = same_bucket(2);
        records[1] = with_policy(records[1].clone(), "a");
        let mut bytes = encode(&records, &orgs);
        bytes.truncate(bytes.len() - 1);
        let bucket = KeyBucket::parse(B, Some(&bytes)).unwrap();
        let found = bucket.find(&records[1].hash, &orgs).unwrap();
        assert_eq!(found.policy.as_deref(), Some(&KeyPolicy::unusable()));
        assert!(!found.policy.unwrap().admits(Some(b"10.0.0.1:1")));
        assert_eq!(
            bucket.find(&records[0].hash, &orgs),
            Some(records[0].clone())
        );
    }
}
