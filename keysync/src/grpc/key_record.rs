//! A key entry on the wire: the `keysync.v1.KeyRecord` that `ListKeys`, `LookupKey` and
//! the `WatchKeys` stream all carry.

use keysync_contract::key_policy::{MAX_NETWORKS, MAX_SCOPES, MAX_SCOPE_LEN};
use keysync_proto::v1::{
    KeyRecord, Network as WireNetwork, RateLimit as WireRateLimit, KEY_HASH_LEN,
};

use crate::key_set::key_entry::KeyEntry;

/// The most bytes one encoded `KeyRecord` can take, whatever the key: the hash and the
/// two ids, the expiry (a 10-byte varint at most), the rate limit (two 5-byte varints
/// and a flag), and the largest policy the contract's bounds allow: 32 scopes of 64
/// bytes and 16 IPv6 networks. Each field adds its tag and length bytes. A key is
/// refused at creation (by those bounds) rather than ever stored larger.
pub const MAX_RECORD_BYTES: usize = (2 + KEY_HASH_LEN)
    + 2 * (2 + 16)
    + (1 + 10)
    + (2 + (1 + 5) * 2 + 2)
    + MAX_SCOPES * (2 + MAX_SCOPE_LEN)
    + MAX_NETWORKS * (2 + (2 + 16) + (1 + 2));

/// The most record bytes (upserts and removals) keysync puts in one `ListKeys` page or
/// `WatchKeys` message: under the 16 MiB the filter reads in one message, with room
/// for the message's other fields. Small records never come near it (a page of 10,000
/// keys without policy is about 1 MB); keys with large policies make pages shorter.
pub const MAX_MESSAGE_RECORD_BYTES: usize = 15 << 20;

/// The wire form of a key entry. Its scopes go sorted and without repeats, as the key
/// policy holds them; a key without a policy has neither field.
pub fn to_record(entry: &KeyEntry) -> KeyRecord {
    let (scopes, allowed_networks) = match &entry.policy {
        None => (Vec::new(), Vec::new()),
        Some(policy) => (
            policy.scopes().to_vec(),
            policy
                .networks()
                .iter()
                .map(|network| WireNetwork {
                    address: network.address_bytes(),
                    prefix_len: u32::from(network.prefix_len),
                })
                .collect(),
        ),
    };
    KeyRecord {
        key_hash: entry.key_hash.as_bytes().to_vec(),
        key_id: entry.key_id.as_bytes().to_vec(),
        org_id: entry.org_id.as_bytes().to_vec(),
        expires_at: entry.expires_at,
        rate_limit: entry.rate_limit.map(|key_limit| WireRateLimit {
            requests_per_minute: key_limit.limit.requests_per_minute,
            burst: key_limit.limit.burst,
            per_key: key_limit.per_key,
        }),
        scopes,
        allowed_networks,
    }
}

#[cfg(test)]
mod tests {
    use keysync_contract::key_policy::Network;
    use keysync_contract::limit::{KeyLimit, Limit};
    use prost::Message;
    use uuid::Uuid;

    use keysync_contract::key_hash::KeyHash;

    use super::*;
    use crate::key_set::key_policy::PolicyColumns;

    #[test]
    fn ids_travel_as_16_bytes_and_the_limit_with_its_scope() {
        let entry = KeyEntry {
            key_hash: KeyHash([7; 32]),
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
            policy: None,
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
        assert!(record.scopes.is_empty() && record.allowed_networks.is_empty());
        let unlimited = to_record(&KeyEntry {
            rate_limit: None,
            ..entry
        });
        assert_eq!(unlimited.rate_limit, None);
    }

    fn with_policy(scopes: &[&str], networks: &[&str]) -> KeyEntry {
        let columns = PolicyColumns {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            allowed_networks: networks.iter().map(|s| (*s).to_owned()).collect(),
        };
        KeyEntry {
            policy: columns.resolve(Uuid::nil()),
            ..KeyEntry::numbered(1)
        }
    }

    #[test]
    fn scopes_travel_sorted_and_networks_as_bytes_and_prefix() {
        let record = to_record(&with_policy(
            &["orders:write", "orders:read", "orders:read"],
            &["2001:db8::/32", "203.0.113.0/24"],
        ));
        assert_eq!(record.scopes, ["orders:read", "orders:write"]);
        let networks: Vec<(Vec<u8>, u32)> = record
            .allowed_networks
            .iter()
            .map(|n| (n.address.clone(), n.prefix_len))
            .collect();
        let mut v6 = vec![0x20, 0x01, 0x0d, 0xb8];
        v6.resize(16, 0);
        assert_eq!(networks, [(vec![203, 0, 113, 0], 24), (v6, 32)]);
        for network in &record.allowed_networks {
            assert!(Network::from_parts(&network.address, network.prefix_len).is_some());
        }
    }

    /// The largest policy the bounds allow (32 scopes of 64 characters, 16 IPv6
    /// networks) keeps a record under [`MAX_RECORD_BYTES`] (2.5 KiB): a fixed bound, far
    /// under the 16 MiB the filter reads in one message. Pages and watch messages hold
    /// many records, so they are cut by bytes as well (see `grpc` and `watch_server`).
    #[test]
    fn the_largest_policy_has_a_fixed_small_record() {
        let scopes: Vec<String> = (0..MAX_SCOPES)
            .map(|i| format!("{i:02}{}", "s".repeat(MAX_SCOPE_LEN - 2)))
            .collect();
        let networks: Vec<String> = (0..MAX_NETWORKS)
            .map(|i| format!("2001:db8:{i:x}::/48"))
            .collect();
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let networks: Vec<&str> = networks.iter().map(String::as_str).collect();
        let entry = KeyEntry {
            expires_at: i64::MAX,
            rate_limit: Some(KeyLimit {
                limit: Limit {
                    requests_per_minute: u32::MAX,
                    burst: u32::MAX,
                },
                per_key: true,
            }),
            ..with_policy(&scopes, &networks)
        };
        let record = to_record(&entry);
        assert_eq!(record.scopes.len(), MAX_SCOPES);
        assert_eq!(record.allowed_networks.len(), MAX_NETWORKS);
        let size = record.encoded_len();
        assert!(size <= MAX_RECORD_BYTES, "{size} bytes");
        assert!(
            size > MAX_RECORD_BYTES - 64,
            "the bound is tight: {size} bytes"
        );
        const {
            assert!(MAX_RECORD_BYTES < 3 << 10);
            assert!(MAX_MESSAGE_RECORD_BYTES + (1 << 20) <= 16 << 20);
            // The default watch chunk of 5,000 such records fits one message.
            assert!(5_000 * MAX_RECORD_BYTES <= MAX_MESSAGE_RECORD_BYTES);
        }
    }
}
