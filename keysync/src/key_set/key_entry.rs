//! What the gateway needs to know about one active key: its hash (how a request finds
//! it), its organization and id (the identity headers), its expiry, the rate limit it
//! runs under, and its scopes and allowlist if it has any. The unit the key set holds,
//! changes carry and the wire serves.

use std::sync::Arc;

use keysync_contract::key_hash::KeyHash;
use keysync_contract::limit::KeyLimit;
use uuid::Uuid;

use crate::key_set::key_policy::KeyPolicy;

/// One active key. Cheap to clone: the policy, when there is one, is shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    pub key_hash: KeyHash,
    pub key_id: Uuid,
    pub org_id: Uuid,
    /// Unix seconds after which the key is refused; 0 when it never expires.
    pub expires_at: i64,
    /// The key's own limit, else its organization's; `None` when neither is set.
    pub rate_limit: Option<KeyLimit>,
    /// Its scopes and allowlist; `None` (one null pointer, nothing on the heap) for the
    /// many keys that have neither.
    pub policy: Option<Arc<KeyPolicy>>,
}

impl KeyEntry {
    /// Expired keys stay in the key set (expiry needs no database change to happen) and
    /// are filtered when served.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }
}

#[cfg(test)]
impl KeyEntry {
    /// A key for tests: its hash is `first_byte` followed by zeros (so entries sort by
    /// it), its id is `first_byte`, its organization 7; it never expires and has no
    /// limit and no policy.
    pub(crate) fn numbered(first_byte: u8) -> KeyEntry {
        let mut key_hash = [0; 32];
        key_hash[0] = first_byte;
        KeyEntry {
            key_hash: KeyHash(key_hash),
            key_id: Uuid::from_u128(first_byte.into()),
            org_id: Uuid::from_u128(7),
            expires_at: 0,
            rate_limit: None,
            policy: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_expires_at_its_second_and_zero_means_never() {
        let expiring_at = |expires_at| KeyEntry {
            expires_at,
            ..KeyEntry::numbered(1)
        };
        assert!(!expiring_at(100).is_expired(99));
        assert!(expiring_at(100).is_expired(100));
        assert!(!expiring_at(0).is_expired(i64::MAX));
    }

    /// The size the key table's memory figures are measured with: 88 bytes of fields
    /// before key policies, plus the policy pointer (8; the key's scopes and allowlist,
    /// when it has any, live on the heap).
    #[test]
    fn an_entry_takes_96_bytes() {
        assert_eq!(std::mem::size_of::<KeyEntry>(), 96);
    }
}
