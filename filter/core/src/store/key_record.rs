//! One key's record as the gateway needs it, and its fixed-size binary form in a bucket.

use crate::store::bucket_index::{hash_from_parts, BUCKET_PREFIX_LEN};
use crate::store::key_policy::KeyPolicy;
use crate::store::org_table::OrgTable;
use keysync_contract::id::Id;
use keysync_contract::key_hash::KeyHash;
use keysync_contract::limit::{KeyLimit, Limit};
use keysync_contract::subject::Subject;
use keysync_proto::v1 as proto;
use std::rc::Rc;

/// Bytes of a key hash the store keeps: the first 128 bits of the SHA-256 identify a key
/// (a forger would still have to find a key whose hash starts like a stored one: 2^128
/// tries against one key). The rest is not stored, so a record read back from a bucket
/// has zeros there (see [`same_stored_key`]).
pub const STORED_HASH_LEN: usize = 16;
const SUFFIX_LEN: usize = STORED_HASH_LEN - BUCKET_PREFIX_LEN;
const ID_LEN: usize = 16;
/// Side bytes of a stored rate limit: requests per minute, burst.
const LIMIT_LEN: usize = 8;

/// Bytes of one record inside a bucket: hash suffix, key id, organization reference
/// (`org_table`), expiry (`u32` Unix seconds), flags. What most keys do not have (a rate
/// limit, a policy, an organization the table could not take) is in the bucket's side
/// bytes, flagged here.
pub const RECORD_LEN: usize = SUFFIX_LEN + ID_LEN + 4 + 4 + 1;

const FLAG_PER_KEY: u8 = 1;
/// The key grants scopes: its policy is in the side bytes (`key_bucket`).
const FLAG_SCOPES: u8 = 2;
/// The key may only be used from some networks; same place.
const FLAG_ALLOWLIST: u8 = 4;
/// The key has a rate limit (its own or its organization's): side bytes.
const FLAG_LIMIT: u8 = 8;
/// The organization id is in the side bytes, not a table reference (the table was full).
const FLAG_ORG_INLINE: u8 = 16;
const SIDE_FLAGS: u8 = FLAG_SCOPES | FLAG_ALLOWLIST | FLAG_LIMIT | FLAG_ORG_INLINE;

/// Whether two hashes name the same stored key: a record read back from a bucket keeps
/// only the first [`STORED_HASH_LEN`] bytes of its hash.
pub fn same_stored_key(a: &KeyHash, b: &KeyHash) -> bool {
    a.0.get(..STORED_HASH_LEN) == b.0.get(..STORED_HASH_LEN)
}

/// The part of `hash` a record stores after its bucket's prefix.
pub fn stored_suffix_of(hash: &KeyHash) -> &[u8] {
    hash.0
        .get(BUCKET_PREFIX_LEN..STORED_HASH_LEN)
        .unwrap_or(&[])
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyRecord {
    pub hash: KeyHash,
    pub key_id: Id,
    pub org_id: Id,
    /// Unix seconds after which the key is refused; 0 when it never expires.
    pub expires_at: i64,
    pub rate_limit: Option<KeyLimit>,
    /// Scopes and allowlist; `None` for the keys that have neither (most), which then
    /// cost nothing more to store, find or check. Shared: records are copied a lot.
    pub policy: Option<Rc<KeyPolicy>>,
}

/// A field of a record from keysync that does not have its fixed size.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    Hash,
    KeyId,
    OrgId,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordError::Hash => "key_hash is not 32 bytes",
            RecordError::KeyId => "key_id is not a 16-byte UUID",
            RecordError::OrgId => "org_id is not a 16-byte UUID",
        })
    }
}

impl KeyRecord {
    pub fn from_proto(record: &proto::KeyRecord) -> Result<Self, RecordError> {
        Ok(KeyRecord {
            hash: KeyHash::from_slice(&record.key_hash).ok_or(RecordError::Hash)?,
            key_id: Id::from_slice(&record.key_id).ok_or(RecordError::KeyId)?,
            org_id: Id::from_slice(&record.org_id).ok_or(RecordError::OrgId)?,
            expires_at: record.expires_at,
            rate_limit: record
                .rate_limit
                .as_ref()
                .filter(|limit| limit.requests_per_minute > 0)
                .map(|limit| KeyLimit {
                    limit: Limit {
                        requests_per_minute: limit.requests_per_minute,
                        burst: limit.burst,
                    },
                    per_key: limit.per_key,
                }),
            policy: KeyPolicy::from_proto(record).map(Rc::new),
        })
    }

    /// The policy stored beside the record: one that restricts something.
    pub fn stored_policy(&self) -> Option<&KeyPolicy> {
        self.policy.as_deref().filter(|policy| !policy.is_empty())
    }

    /// Who this key's requests are counted against, and the limit; `None` when
    /// unlimited.
    pub fn limit_subject(&self) -> Option<(Subject, Limit)> {
        let limit = self.rate_limit?;
        Some((limit.subject(self.key_id, self.org_id), limit.limit))
    }

    pub fn is_expired(&self, now_unix_secs: i64) -> bool {
        self.expires_at != 0 && now_unix_secs >= self.expires_at
    }

    /// Appends the bucket form: the fixed record to `record`, what it has beyond that to
    /// `side` (organization id if the table cannot take it, rate limit, policy, in that
    /// order).
    pub fn encode_into(&self, record: &mut Vec<u8>, side: &mut Vec<u8>, orgs: &impl OrgTable) {
        record.extend_from_slice(stored_suffix_of(&self.hash));
        record.extend_from_slice(&self.key_id.0);
        let mut flags = 0;
        let org = orgs.reference(&self.org_id).unwrap_or_else(|| {
            flags |= FLAG_ORG_INLINE;
            side.extend_from_slice(&self.org_id.0);
            0
        });
        record.extend_from_slice(&org.to_le_bytes());
        record.extend_from_slice(&stored_expiry(self.expires_at).to_le_bytes());
        if let Some(KeyLimit { limit, per_key }) = self.rate_limit {
            flags |= FLAG_LIMIT;
            if per_key {
                flags |= FLAG_PER_KEY;
            }
            side.extend_from_slice(&limit.requests_per_minute.to_le_bytes());
            side.extend_from_slice(&limit.burst.to_le_bytes());
        }
        // A flag always means a stored policy (`stored_policy` is what is stored).
        if let Some(policy) = self.stored_policy() {
            if !policy.scopes.is_empty() {
                flags |= FLAG_SCOPES;
            }
            if policy.has_allowlist() {
                flags |= FLAG_ALLOWLIST;
            }
            if flags & (FLAG_SCOPES | FLAG_ALLOWLIST) != 0 {
                policy.encode_into(side);
            }
        }
        record.push(flags);
    }

    /// Reads one record of bucket `bucket` from its fixed bytes and `side`, the bucket's
    /// side bytes from where this record's start. `None` unless `record` is exactly one
    /// record whose organization and limit can be read: a key is never read with less
    /// than it has. A policy that cannot be read refuses everything instead.
    pub fn decode(bucket: u16, record: &[u8], side: &[u8], orgs: &impl OrgTable) -> Option<Self> {
        if record.len() != RECORD_LEN {
            return None;
        }
        let (suffix, rest) = record.split_at(SUFFIX_LEN);
        let (key_id, rest) = rest.split_at(ID_LEN);
        let (org, rest) = rest.split_at(4);
        let (expires_at, flags) = rest.split_at(4);
        let flags = flags.first().copied().unwrap_or(0);
        let mut side = side;
        let org_id = if flags & FLAG_ORG_INLINE != 0 {
            let (id, rest) = side.split_at_checked(ID_LEN)?;
            side = rest;
            Id::from_slice(id)?
        } else {
            orgs.id(u32::from_le_bytes(org.try_into().ok()?))?
        };
        let rate_limit = if flags & FLAG_LIMIT != 0 {
            let (rpm, rest) = side.split_first_chunk::<4>()?;
            let (burst, rest) = rest.split_first_chunk::<4>()?;
            side = rest;
            Some(KeyLimit {
                limit: Limit {
                    requests_per_minute: u32::from_le_bytes(*rpm),
                    burst: u32::from_le_bytes(*burst),
                },
                per_key: flags & FLAG_PER_KEY != 0,
            })
        } else {
            None
        };
        let policy = (flags & (FLAG_SCOPES | FLAG_ALLOWLIST) != 0).then(|| {
            let policy = KeyPolicy::split_stored(side)
                .and_then(|(stored, _)| KeyPolicy::decode(stored, flags & FLAG_ALLOWLIST != 0));
            Rc::new(policy.unwrap_or_else(|| {
                log::warn!(
                    "bucket {bucket:04x}: a key's policy cannot be read; the key is \
                     refused until the bucket is rewritten"
                );
                KeyPolicy::unusable()
            }))
        });
        Some(KeyRecord {
            // Zeros past the stored bytes: see `same_stored_key`.
            hash: hash_from_parts(bucket, suffix)?,
            key_id: Id::from_slice(key_id)?,
            org_id,
            expires_at: i64::from(u32::from_le_bytes(expires_at.try_into().ok()?)),
            rate_limit,
            policy,
        })
    }

    /// Whether a stored record has side bytes.
    pub fn has_side(record: &[u8]) -> bool {
        Self::stored_flags(record) & SIDE_FLAGS != 0
    }

    /// How many side bytes a stored record has, read from the front of `side`; `None`
    /// when they cannot be read (a policy's length past the end).
    pub fn side_len(record: &[u8], side: &[u8]) -> Option<usize> {
        let flags = Self::stored_flags(record);
        let mut len = 0;
        if flags & FLAG_ORG_INLINE != 0 {
            len += ID_LEN;
        }
        if flags & FLAG_LIMIT != 0 {
            len += LIMIT_LEN;
        }
        if flags & (FLAG_SCOPES | FLAG_ALLOWLIST) != 0 {
            let (policy, _) = KeyPolicy::split_stored(side.get(len..)?)?;
            len += 2 + policy.len();
        }
        (len <= side.len()).then_some(len)
    }

    fn stored_flags(record: &[u8]) -> u8 {
        if record.len() == RECORD_LEN {
            record.last().copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// The hash suffix a stored record starts with, for searching without decoding.
    pub fn stored_suffix(record: &[u8]) -> &[u8] {
        record.get(..SUFFIX_LEN).unwrap_or(&[])
    }
}

/// An expiry as stored: Unix seconds in a `u32` (until 2106); 0 never expires; a date
/// before 1970 is long past (1), one after 2106 as late as can be.
fn stored_expiry(expires_at: i64) -> u32 {
    match expires_at {
        0 => 0,
        past if past < 0 => 1,
        at => u32::try_from(at).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::bucket_index::BucketIndex;
    use crate::store::org_table::tests::MemoryOrgTable;

    /// `record` as a bucket gives it back: the hash's stored bytes only.
    pub fn as_stored(record: &KeyRecord) -> KeyRecord {
        let mut stored = record.clone();
        if let Some(tail) = stored.hash.0.get_mut(STORED_HASH_LEN..) {
            tail.fill(0);
        }
        stored
    }

    /// Encodes and decodes `record` alone: (fixed bytes, side bytes, decoded).
    fn round_trip(
        record: &KeyRecord,
        orgs: &MemoryOrgTable,
    ) -> (Vec<u8>, Vec<u8>, Option<KeyRecord>) {
        let (mut bytes, mut side) = (Vec::new(), Vec::new());
        record.encode_into(&mut bytes, &mut side, orgs);
        let decoded = KeyRecord::decode(record.hash.bucket(), &bytes, &side, orgs);
        (bytes, side, decoded)
    }

    pub fn sample(key: &str) -> KeyRecord {
        KeyRecord {
            hash: KeyHash::of_key(key.as_bytes()),
            key_id: Id([1; 16]),
            org_id: Id([0xab; 16]),
            expires_at: 1_900_000_000,
            rate_limit: Some(KeyLimit {
                limit: Limit {
                    requests_per_minute: 100,
                    burst: 10,
                },
                per_key: true,
            }),
            policy: None,
        }
    }

    #[test]
    fn encodes_and_decodes() {
        let record = sample("sk_live_a");
        let orgs = MemoryOrgTable::default();
        let (bytes, side, decoded) = round_trip(&record, &orgs);
        assert_eq!(bytes.len(), RECORD_LEN);
        assert_eq!(
            RECORD_LEN, 40,
            "the record issue 24 asks for (at most 64 bytes a key)"
        );
        assert_eq!(side.len(), 8, "the rate limit");
        assert_eq!(decoded, Some(as_stored(&record)));
        assert!(same_stored_key(&decoded.unwrap().hash, &record.hash));
        assert_eq!(orgs.ids.borrow().as_slice(), &[record.org_id], "interned");
    }

    #[test]
    fn a_key_with_no_limit_no_policy_and_an_interned_org_has_no_side_bytes() {
        let record = KeyRecord {
            rate_limit: None,
            expires_at: 0,
            ..sample("sk_live_plain")
        };
        let (bytes, side, decoded) = round_trip(&record, &MemoryOrgTable::default());
        assert!(side.is_empty());
        assert!(!KeyRecord::has_side(&bytes));
        assert_eq!(decoded, Some(as_stored(&record)));
    }

    #[test]
    fn an_organization_the_table_cannot_take_is_stored_inline() {
        let full = MemoryOrgTable {
            cap: 0,
            ..Default::default()
        };
        let record = KeyRecord {
            rate_limit: None,
            ..sample("sk_live_inline")
        };
        let (bytes, side, decoded) = round_trip(&record, &full);
        assert_eq!(side, record.org_id.0.to_vec());
        assert_eq!(KeyRecord::side_len(&bytes, &side), Some(16));
        assert_eq!(decoded, Some(as_stored(&record)));
        // With a limit too: org id, then the limit.
        let limited = sample("sk_live_inline_limited");
        let (bytes, side, decoded) = round_trip(&limited, &full);
        assert_eq!(KeyRecord::side_len(&bytes, &side), Some(24));
        assert_eq!(decoded, Some(as_stored(&limited)));
    }

    #[test]
    fn a_record_whose_side_bytes_or_organization_cannot_be_read_is_not_read() {
        let record = sample("sk_live_cut");
        let orgs = MemoryOrgTable::default();
        let (bytes, side, _) = round_trip(&record, &orgs);
        let bucket = record.hash.bucket();
        assert_eq!(
            KeyRecord::decode(bucket, &bytes, &side[..7], &orgs),
            None,
            "its limit cut short: never read as unlimited"
        );
        assert_eq!(
            KeyRecord::decode(bucket, &bytes, &side, &MemoryOrgTable::default()),
            None,
            "a reference the table does not hold"
        );
    }

    #[test]
    fn expiry_is_stored_in_four_bytes() {
        let orgs = MemoryOrgTable::default();
        for (given, read) in [
            (0, 0),
            (1_900_000_000, 1_900_000_000),
            (i64::from(u32::MAX), i64::from(u32::MAX)),
            (i64::MAX, i64::from(u32::MAX)),
            (-5, 1),
        ] {
            let record = KeyRecord {
                expires_at: given,
                ..sample("sk_live_expiry")
            };
            let decoded = round_trip(&record, &orgs).2.unwrap();
            assert_eq!(decoded.expires_at, read, "{given}");
            assert_eq!(
                decoded.is_expired(1_800_000_000),
                record.is_expired(1_800_000_000)
            );
        }
    }

    #[test]
    fn org_limits_round_trip_as_not_per_key() {
        let record = KeyRecord {
            rate_limit: Some(KeyLimit {
                limit: Limit {
                    requests_per_minute: 60,
                    burst: 0,
                },
                per_key: false,
            }),
            ..sample("sk_live_org")
        };
        let decoded = round_trip(&record, &MemoryOrgTable::default()).2;
        assert_eq!(decoded, Some(as_stored(&record)));
        assert_eq!(record.rate_limit.map(|l| l.limit.budget()), Some(60));
    }

    #[test]
    fn the_limit_subject_follows_the_record() {
        let mut record = sample("sk_live_subject");
        assert_eq!(
            record.limit_subject(),
            Some((
                Subject::Key(record.key_id),
                Limit {
                    requests_per_minute: 100,
                    burst: 10
                }
            )),
            "a key's own limit is counted for the key"
        );
        if let Some(limit) = &mut record.rate_limit {
            limit.per_key = false;
        }
        assert_eq!(
            record.limit_subject().map(|(subject, _)| subject),
            Some(Subject::Org(record.org_id))
        );
        record.rate_limit = None;
        assert_eq!(record.limit_subject(), None);
    }

    #[test]
    fn no_rate_limit_round_trips_as_none() {
        let record = KeyRecord {
            rate_limit: None,
            ..sample("sk_live_b")
        };
        let decoded = round_trip(&record, &MemoryOrgTable::default()).2.unwrap();
        assert_eq!(decoded.rate_limit, None);
    }

    #[test]
    fn decode_rejects_wrong_sizes() {
        let orgs = MemoryOrgTable::default();
        orgs.reference(&Id([0; 16]));
        assert!(KeyRecord::decode(0, &[0u8; RECORD_LEN], &[], &orgs).is_some());
        assert_eq!(
            KeyRecord::decode(0, &[0u8; RECORD_LEN - 1], &[], &orgs),
            None
        );
        assert_eq!(
            KeyRecord::decode(0, &[0u8; RECORD_LEN + 1], &[], &orgs),
            None
        );
        assert_eq!(KeyRecord::decode(0, &[], &[], &orgs), None);
    }

    #[test]
    fn converts_from_proto_and_validates() {
        let good = proto::KeyRecord {
            key_hash: vec![3; 32],
            key_id: vec![4; 16],
            org_id: vec![5; 16],
            expires_at: 0,
            rate_limit: Some(proto::RateLimit {
                requests_per_minute: 0,
                burst: 5,
                per_key: false,
            }),
            ..Default::default()
        };
        let record = KeyRecord::from_proto(&good).unwrap();
        assert_eq!(record.rate_limit, None, "0 rpm means no limit");
        assert!(!record.is_expired(i64::MAX));

        let short_hash = proto::KeyRecord {
            key_hash: vec![3; 31],
            ..good.clone()
        };
        assert_eq!(KeyRecord::from_proto(&short_hash), Err(RecordError::Hash));
        let bad_org = proto::KeyRecord {
            org_id: vec![],
            ..good.clone()
        };
        assert_eq!(KeyRecord::from_proto(&bad_org), Err(RecordError::OrgId));
        let bad_key = proto::KeyRecord {
            key_id: vec![1; 17],
            ..good
        };
        assert_eq!(KeyRecord::from_proto(&bad_key), Err(RecordError::KeyId));
    }

    #[test]
    fn expiry_is_inclusive_of_the_expiry_second() {
        let record = sample("sk_live_c");
        assert!(!record.is_expired(record.expires_at - 1));
        assert!(record.is_expired(record.expires_at));
    }
}
