//! How a key is known once it has been shown: by the SHA-256 of its text. The database
//! stores it, the key set is indexed by it, the wire carries it, and a request's key is
//! hashed to find its record; log lines show only its first bytes.

use keysync_proto::v1::KEY_HASH_LEN;
use sha2::{Digest, Sha256};

/// The SHA-256 of a key: how keys are stored, looked up and served.
pub type KeyHash = [u8; KEY_HASH_LEN];

/// SHA-256 of a key's text, as stored in `api_keys.key_hash`.
pub fn hash_key(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// The first hex characters of a hash: enough to correlate log lines, useless to an
/// attacker.
pub fn short_hash(hash: &[u8]) -> String {
    hex::encode(&hash[..hash.len().min(4)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_of_the_key_text() {
        // Known vector: SHA-256("abc").
        assert_eq!(
            hex::encode(hash_key("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn short_hash_is_eight_hex_characters() {
        assert_eq!(short_hash(&[0xab; 32]), "abababab");
        assert_eq!(short_hash(&[0x01]), "01");
    }
}
