//! A key entry on the wire: the `keysync.v1.KeyRecord` that `ListKeys`, `LookupKey` and
//! the `WatchKeys` stream all carry.

use keysync_proto::v1::{KeyRecord, RateLimit as WireRateLimit};

use crate::serve::key_entry::KeyEntry;

/// The wire form of a key entry.
pub fn to_record(entry: &KeyEntry) -> KeyRecord {
    KeyRecord {
        key_hash: entry.key_hash.to_vec(),
        key_id: entry.key_id.as_bytes().to_vec(),
        org_id: entry.org_id.as_bytes().to_vec(),
        expires_at: entry.expires_at,
        rate_limit: entry.rate_limit.map(|key_limit| WireRateLimit {
            requests_per_minute: key_limit.limit.requests_per_minute,
            burst: key_limit.limit.burst,
            per_key: key_limit.per_key,
        }),
    }
}

#[cfg(test)]
mod tests {
    use keysync_contract::limit::{KeyLimit, Limit};
    use uuid::Uuid;

    use super::*;

    #[test]
    fn ids_travel_as_16_bytes_and_the_limit_with_its_scope() {
        let entry = KeyEntry {
            key_hash: [7; 32],
            key_id: Uuid::from_u128(101),
            org_id: Uuid::from_u128(7),
            expires_at: 1_700_000_000,
            rate_limit: Some(KeyLimit {
                limit: Limit {
                    requests_per_minute: 120,
                    burst: 20,
                },
                per_key: true,
            }),
        };
        let record = to_record(&entry);
        assert_eq!(record.key_hash, vec![7; 32]);
        assert_eq!(record.key_id, Uuid::from_u128(101).as_bytes().to_vec());
        assert_eq!(record.org_id.len(), 16);
        assert_eq!(record.expires_at, 1_700_000_000);
        let limit = record.rate_limit.unwrap();
        assert_eq!(
            (limit.requests_per_minute, limit.burst, limit.per_key),
            (120, 20, true)
        );
        let unlimited = to_record(&KeyEntry {
            rate_limit: None,
            ..entry
        });
        assert_eq!(unlimited.rate_limit, None);
    }
}
