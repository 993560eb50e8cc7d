//! One key's record as the gateway needs it, and its fixed-size binary form in a bucket.

use crate::store::bucket_index::{hash_from_parts, BucketIndex, BUCKET_PREFIX_LEN};
use crate::store::key_policy::KeyPolicy;
use keysync_contract::id::Id;
use keysync_contract::key_hash::{KeyHash, KEY_HASH_LEN};
use keysync_contract::limit::{KeyLimit, Limit};
use keysync_contract::subject::Subject;
use keysync_proto::v1 as proto;
use std::rc::Rc;

const SUFFIX_LEN: usize = KEY_HASH_LEN - BUCKET_PREFIX_LEN;
const ID_LEN: usize = 16;

/// Bytes of one record inside a bucket: hash suffix, key id, org id, expiry, rate limit
/// (requests per minute, burst, flags).
pub const RECORD_LEN: usize = SUFFIX_LEN + ID_LEN + ID_LEN + 8 + 4 + 4 + 1;

const FLAG_PER_KEY: u8 = 1;
/// The key grants scopes: its policy is stored after the bucket's records (`key_bucket`).
const FLAG_SCOPES: u8 = 2;
/// The key may only be used from some networks; same place.
const FLAG_ALLOWLIST: u8 = 4;

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

    /// Appends the bucket form: everything but the bucket prefix of the hash.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.hash.suffix());
        out.extend_from_slice(&self.key_id.0);
        out.extend_from_slice(&self.org_id.0);
        out.extend_from_slice(&self.expires_at.to_le_bytes());
        // No limit is stored as 0 requests per minute, which a real limit never has.
        let (limit, per_key) = match self.rate_limit {
            Some(KeyLimit { limit, per_key }) => (limit, per_key),
            None => (
                Limit {
                    requests_per_minute: 0,
                    burst: 0,
                },
                false,
            ),
        };
        out.extend_from_slice(&limit.requests_per_minute.to_le_bytes());
        out.extend_from_slice(&limit.burst.to_le_bytes());
        let mut flags = if per_key { FLAG_PER_KEY } else { 0 };
        // A flag always means a stored policy (`stored_policy` is what `key_bucket` stores).
        if let Some(policy) = self.stored_policy() {
            if !policy.scopes.is_empty() {
                flags |= FLAG_SCOPES;
            }
            if policy.has_allowlist() {
                flags |= FLAG_ALLOWLIST;
            }
        }
        out.push(flags);
    }

    /// Reads one record of bucket `bucket`, without its policy (see
    /// [`KeyRecord::stored_policy_flags`]); `None` unless `bytes` is exactly one record.
    pub fn decode(bucket: u16, bytes: &[u8]) -> Option<Self> {
        if bytes.len() != RECORD_LEN {
            return None;
        }
        let (suffix, rest) = bytes.split_at(SUFFIX_LEN);
        let (key_id, rest) = rest.split_at(ID_LEN);
        let (org_id, rest) = rest.split_at(ID_LEN);
        let (expires_at, rest) = rest.split_at(8);
        let (rpm, rest) = rest.split_at(4);
        let (burst, flags) = rest.split_at(4);
        let requests_per_minute = u32::from_le_bytes(rpm.try_into().ok()?);
        let flags = flags.first().copied().unwrap_or(0);
        Some(KeyRecord {
            hash: hash_from_parts(bucket, suffix)?,
            key_id: Id::from_slice(key_id)?,
            org_id: Id::from_slice(org_id)?,
            expires_at: i64::from_le_bytes(expires_at.try_into().ok()?),
            rate_limit: (requests_per_minute > 0).then_some(KeyLimit {
                limit: Limit {
                    requests_per_minute,
                    burst: u32::from_le_bytes(burst.try_into().ok()?),
                },
                per_key: flags & FLAG_PER_KEY != 0,
            }),
            policy: None,
        })
    }

    /// Whether a stored record has a policy stored beside it, and whether that policy has
    /// an allowlist: `(has_policy, allowlist)`.
    pub fn stored_policy_flags(bytes: &[u8]) -> (bool, bool) {
        let flags = if bytes.len() == RECORD_LEN {
            bytes.last().copied().unwrap_or(0)
        } else {
            0
        };
        (
            flags & (FLAG_SCOPES | FLAG_ALLOWLIST) != 0,
            flags & FLAG_ALLOWLIST != 0,
        )
    }

    /// The hash suffix a stored record starts with, for searching without decoding.
    pub fn stored_suffix(bytes: &[u8]) -> &[u8] {
        bytes.get(..SUFFIX_LEN).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut bytes = Vec::new();
        record.encode_into(&mut bytes);
        assert_eq!(bytes.len(), RECORD_LEN);
        assert_eq!(
            KeyRecord::decode(record.hash.bucket(), &bytes),
            Some(record)
        );
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
        let mut bytes = Vec::new();
        record.encode_into(&mut bytes);
        assert_eq!(
            KeyRecord::decode(record.hash.bucket(), &bytes),
            Some(record.clone())
        );
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
        let mut bytes = Vec::new();
        record.encode_into(&mut bytes);
        let decoded = KeyRecord::decode(record.hash.bucket(), &bytes).unwrap();
        assert_eq!(decoded.rate_limit, None);
    }

    #[test]
    fn decode_rejects_wrong_sizes() {
        assert_eq!(KeyRecord::decode(0, &[0u8; RECORD_LEN - 1]), None);
        assert_eq!(KeyRecord::decode(0, &[0u8; RECORD_LEN + 1]), None);
        assert_eq!(KeyRecord::decode(0, &[]), None);
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
