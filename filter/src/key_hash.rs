//! The SHA-256 of an API key: how a key is known everywhere past the request edge.

use sha2::{Digest, Sha256};
use std::fmt;

pub const HASH_LEN: usize = 32;

/// Bytes of the hash that pick the bucket; the bucket stores only the rest.
pub const BUCKET_PREFIX_LEN: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct KeyHash(pub [u8; HASH_LEN]);

impl KeyHash {
    pub fn of_key(key: &[u8]) -> Self {
        KeyHash(Sha256::digest(key).into())
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(KeyHash)
    }

    /// The bucket this key lives in: the first two bytes of its hash.
    pub fn bucket(&self) -> u16 {
        u16::from_be_bytes([self.0[0], self.0[1]])
    }

    /// The part of the hash a bucket stores (the bucket index implies the rest).
    pub fn suffix(&self) -> &[u8] {
        let (_, suffix) = self.0.split_at(BUCKET_PREFIX_LEN);
        suffix
    }

    /// Rebuilds a hash from its bucket and stored suffix.
    pub fn from_parts(bucket: u16, suffix: &[u8]) -> Option<Self> {
        let mut hash = [0u8; HASH_LEN];
        let (prefix, rest) = hash.split_at_mut(BUCKET_PREFIX_LEN);
        prefix.copy_from_slice(&bucket.to_be_bytes());
        if rest.len() != suffix.len() {
            return None;
        }
        rest.copy_from_slice(suffix);
        Some(KeyHash(hash))
    }

    /// The lowest and highest hash that fall in `bucket`.
    pub fn bucket_bounds(bucket: u16) -> (Self, Self) {
        let mut low = [0u8; HASH_LEN];
        let mut high = [0xffu8; HASH_LEN];
        for hash in [&mut low, &mut high] {
            if let Some(prefix) = hash.get_mut(..BUCKET_PREFIX_LEN) {
                prefix.copy_from_slice(&bucket.to_be_bytes());
            }
        }
        (KeyHash(low), KeyHash(high))
    }

    /// The first bytes in hex: enough to correlate log lines, useless to an attacker.
    pub fn short(&self) -> ShortHash {
        ShortHash(*self)
    }
}

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
    fn hashes_like_sha256() {
        let hash = KeyHash::of_key(b"abc");
        assert_eq!(
            hash.short().to_string(),
            "ba7816bf",
            "SHA-256(abc) starts with ba7816bf"
        );
        assert_eq!(hash.bucket(), 0xba78);
    }

    #[test]
    fn splits_into_bucket_and_suffix_and_back() {
        let hash = KeyHash::of_key(b"sk_test_example");
        let rebuilt = KeyHash::from_parts(hash.bucket(), hash.suffix()).unwrap();
        assert_eq!(rebuilt, hash);
        assert_eq!(hash.suffix().len(), HASH_LEN - BUCKET_PREFIX_LEN);
        assert!(KeyHash::from_parts(1, &[0u8; 3]).is_none());
    }

    #[test]
    fn bucket_bounds_enclose_the_bucket() {
        let hash = KeyHash::of_key(b"sk_test_bounds");
        let (low, high) = KeyHash::bucket_bounds(hash.bucket());
        assert!(low <= hash && hash <= high);
        assert_eq!(low.bucket(), hash.bucket());
        assert_eq!(high.bucket(), hash.bucket());
        let (next_low, _) = KeyHash::bucket_bounds(hash.bucket() + 1);
        assert!(high < next_low);
    }

    #[test]
    fn rejects_wrong_lengths() {
        assert!(KeyHash::from_slice(&[0u8; 31]).is_none());
        assert!(KeyHash::from_slice(&[0u8; 33]).is_none());
        assert!(KeyHash::from_slice(&[7u8; 32]).is_some());
    }
}
