//! One key's record as the gateway needs it, and its fixed-size binary form in a bucket.

use crate::key_hash::{KeyHash, BUCKET_PREFIX_LEN, HASH_LEN};
use keysync_proto::v1 as proto;

const SUFFIX_LEN: usize = HASH_LEN - BUCKET_PREFIX_LEN;
const ID_LEN: usize = 16;

/// Bytes of one record inside a bucket: hash suffix, key id, org id, expiry, rate limit
/// (requests per minute, burst, flags).
pub const RECORD_LEN: usize = SUFFIX_LEN + ID_LEN + ID_LEN + 8 + 4 + 4 + 1;

const FLAG_PER_KEY: u8 = 1;

/// Requests allowed per one-minute window: `requests_per_minute + burst`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RateLimit {
    pub requests_per_minute: u32,
    pub burst: u32,
    /// The key's own limit (counted per key) rather than its org's (shared by the org).
    pub per_key: bool,
}

impl RateLimit {
    pub fn budget(&self) -> u32 {
        self.requests_per_minute.saturating_add(self.burst)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeyRecord {
    pub hash: KeyHash,
    pub key_id: Uuid,
    pub org_id: Uuid,
    /// Unix seconds after which the key is refused; 0 when it never expires.
    pub expires_at: i64,
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    BadHash,
    BadKeyId,
    BadOrgId,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordError::BadHash => "key_hash is not 32 bytes",
            RecordError::BadKeyId => "key_id is not a 16-byte UUID",
            RecordError::BadOrgId => "org_id is not a 16-byte UUID",
        })
    }
}

impl KeyRecord {
    pub fn from_proto(record: &proto::KeyRecord) -> Result<Self, RecordError> {
        Ok(KeyRecord {
            hash: KeyHash::from_slice(&record.key_hash).ok_or(RecordError::BadHash)?,
            key_id: Uuid::from_slice(&record.key_id).ok_or(RecordError::BadKeyId)?,
            org_id: Uuid::from_slice(&record.org_id).ok_or(RecordError::BadOrgId)?,
            expires_at: record.expires_at,
            rate_limit: record
                .rate_limit
                .as_ref()
                .filter(|limit| limit.requests_per_minute > 0)
                .map(|limit| RateLimit {
                    requests_per_minute: limit.requests_per_minute,
                    burst: limit.burst,
                    per_key: limit.per_key,
                }),
        })
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
        let limit = self.rate_limit.unwrap_or(RateLimit {
            requests_per_minute: 0,
            burst: 0,
            per_key: false,
        });
        out.extend_from_slice(&limit.requests_per_minute.to_le_bytes());
        out.extend_from_slice(&limit.burst.to_le_bytes());
        out.push(if limit.per_key { FLAG_PER_KEY } else { 0 });
    }

    /// Reads one record of bucket `bucket`; `None` unless `bytes` is exactly one record.
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
            hash: KeyHash::from_parts(bucket, suffix)?,
            key_id: Uuid::from_slice(key_id)?,
            org_id: Uuid::from_slice(org_id)?,
            expires_at: i64::from_le_bytes(expires_at.try_into().ok()?),
            rate_limit: (requests_per_minute > 0).then_some(RateLimit {
                requests_per_minute,
                burst: u32::from_le_bytes(burst.try_into().ok()?),
                per_key: flags & FLAG_PER_KEY != 0,
            }),
        })
    }

    /// The hash suffix a stored record starts with, for searching without decoding.
    pub fn stored_suffix(bytes: &[u8]) -> &[u8] {
        bytes.get(..SUFFIX_LEN).unwrap_or(&[])
    }
}

/// A UUID kept as 16 bytes; formatted only when a header needs it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Uuid(pub [u8; ID_LEN]);

impl Uuid {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Uuid)
    }

    /// Lower-case hyphenated form, as PostgreSQL and the CLI print it.
    pub fn hyphenated(&self) -> String {
        let mut out = String::with_capacity(36);
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
        out
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn sample(key: &str) -> KeyRecord {
        KeyRecord {
            hash: KeyHash::of_key(key.as_bytes()),
            key_id: Uuid([1; 16]),
            org_id: Uuid([0xab; 16]),
            expires_at: 1_900_000_000,
            rate_limit: Some(RateLimit {
                requests_per_minute: 100,
                burst: 10,
                per_key: true,
            }),
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
            rate_limit: Some(RateLimit {
                requests_per_minute: 60,
                burst: 0,
                per_key: false,
            }),
            ..sample("sk_live_org")
        };
        let mut bytes = Vec::new();
        record.encode_into(&mut bytes);
        assert_eq!(
            KeyRecord::decode(record.hash.bucket(), &bytes),
            Some(record)
        );
        assert_eq!(record.rate_limit.map(|l| l.budget()), Some(60));
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
        };
        let record = KeyRecord::from_proto(&good).unwrap();
        assert_eq!(record.rate_limit, None, "0 rpm means no limit");
        assert!(!record.is_expired(i64::MAX));

        let short_hash = proto::KeyRecord {
            key_hash: vec![3; 31],
            ..good.clone()
        };
        assert_eq!(
            KeyRecord::from_proto(&short_hash),
            Err(RecordError::BadHash)
        );
        let bad_org = proto::KeyRecord {
            org_id: vec![],
            ..good.clone()
        };
        assert_eq!(KeyRecord::from_proto(&bad_org), Err(RecordError::BadOrgId));
        let bad_key = proto::KeyRecord {
            key_id: vec![1; 17],
            ..good
        };
        assert_eq!(KeyRecord::from_proto(&bad_key), Err(RecordError::BadKeyId));
    }

    #[test]
    fn expiry_is_inclusive_of_the_expiry_second() {
        let record = sample("sk_live_c");
        assert!(!record.is_expired(record.expires_at - 1));
        assert!(record.is_expired(record.expires_at));
    }

    #[test]
    fn formats_uuids_like_postgres() {
        let id = Uuid([
            0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44,
            0x00, 0x00,
        ]);
        assert_eq!(id.hyphenated(), "550e8400-e29b-41d4-a716-446655440000");
    }
}
