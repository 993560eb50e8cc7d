//! How a key is known once it has been shown: the SHA-256 of its whole text. keysync
//! stores it (`api_keys.key_hash`) and serves records by it, the wire carries it, and
//! the gateway hashes a request's key to find its record. Log lines show only its first
//! bytes ([`KeyHash::short`]).

use sha2::{Digest, Sha256};
use std::fmt;

/// Bytes of a key hash (the `key_hash` fields of keysync.v1 are this long).
pub const KEY_HASH_LEN: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct KeyHash(pub [u8; KEY_HASH_LEN]);

impl KeyHash {
    /// SHA-256 of the key's text, as it arrived (the whole key, prefix included).
    pub fn of_key(key: &[u8]) -> KeyHash {
        KeyHash(Sha256::digest(key).into())
    }

    /// A hash read from the wire or a row; `None` unless it is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<KeyHash> {
        bytes.try_into().ok().map(KeyHash)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_HASH_LEN] {
        &self.0
    }

    /// The first bytes in hex: enough to correlate log lines, useless to an attacker.
    pub fn short(&self) -> ShortHash {
        ShortHash(*self)
    }
}

impl From<[u8; KEY_HASH_LEN]> for KeyHash {
    fn from(bytes: [u8; KEY_HASH_LEN]) -> KeyHash {
        KeyHash(bytes)
    }
}

/// A key hash as log lines show it: its first four bytes, eight hex digits.
pub struct ShortHash(KeyHash);

impl fmt::Display for ShortHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 .0.iter().take(4) {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_sha256_of_the_whole_key() {
        // Known vector: SHA-256("abc").
        let hash = KeyHash::of_key(b"abc");
        let hex: String = hash.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash.short().to_string(), "ba7816bf");
        assert_ne!(
            KeyHash::of_key(b"sk_live_a"),
            KeyHash::of_key(b"a"),
            "the prefix is part of what is hashed"
        );
    }

    #[test]
    fn from_the_wire_only_at_its_length() {
        assert_eq!(KeyHash::from_slice(&[7; 32]), Some(KeyHash([7; 32])));
        assert_eq!(KeyHash::from_slice(&[7; 31]), None);
        assert_eq!(KeyHash::from_slice(&[7; 33]), None);
        assert_eq!(KeyHash::from_slice(&[]), None);
        assert_eq!(KeyHash::from([1; 32]).as_bytes(), &[1; 32]);
    }
}
