//! The SHA-256 of an API key: how a key is known everywhere past the request edge.

use keysync_proto::v1::KEY_HASH_LEN;
use sha2::{Digest, Sha256};
use std::fmt;

/// The leading bits of the hash that pick its bucket: 16,384 buckets. Enough that a
/// million keys make buckets of ~60 records (~5 KB read per request), few enough that
/// the shared-data table Envoy keeps forever stays small (~2 MB when all exist).
pub const BUCKET_BITS: u32 = 14;

/// Whole bytes of the hash a bucket's index fixes; records store the rest (from the
/// byte where the index ends).
pub const BUCKET_PREFIX_LEN: usize = (BUCKET_BITS / 8) as usize;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct KeyHash(pub [u8; KEY_HASH_LEN]);

impl KeyHash {
    pub fn of_key(key: &[u8]) -> Self {
        KeyHash(Sha256::digest(key).into())
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(KeyHash)
    }

    /// The bucket this key lives in: the first `BUCKET_BITS` bits of its hash.
    pub fn bucket(&self) -> u16 {
        u16::from_be_bytes([self.0[0], self.0[1]]) >> (16 - BUCKET_BITS)
    }

    /// The part of the hash a bucket stores (the bucket index implies the rest).
    pub fn suffix(&self) -> &[u8] {
        let (_, suffix) = self.0.split_at(BUCKET_PREFIX_LEN);
        suffix
    }

    /// Rebuilds a hash from its bucket and stored suffix; `None` if they disagree.
    pub fn from_parts(bucket: u16, suffix: &[u8]) -> Option<Self> {
        let mut hash = [0u8; KEY_HASH_LEN];
        let (prefix, rest) = hash.split_at_mut(BUCKET_PREFIX_LEN);
        let first_bits = u32::from(bucket) << (16 - BUCKET_BITS);
        for (i, byte) in prefix.iter_mut().enumerate() {
            *byte = (first_bits >> (8 * (1 - i))) as u8;
        }
        if rest.len() != suffix.len() {
            return None;
        }
        rest.copy_from_slice(suffix);
        let hash = KeyHash(hash);
        (hash.bucket() == bucket).then_some(hash)
    }

    /// The lowest and highest hash that fall in `bucket`.
    pub fn bucket_bounds(bucket: u16) -> (Self, Self) {
        let shift = 16 - BUCKET_BITS;
        let first = u32::from(bucket) << shift;
        let last = first | ((1 << shift) - 1);
        let mut low = [0u8; KEY_HASH_LEN];
        let mut high = [0xffu8; KEY_HASH_LEN];
        for (hash, bits) in [(&mut low, first), (&mut high, last)] {
            if let Some(prefix) = hash.get_mut(..2) {
                prefix.copy_from_slice(&(bits as u16).to_be_bytes());
            }
        }
        (KeyHash(low), KeyHash(high))
    }

    /// The first bytes in hex: enough to correlate log lines, useless to an attacker.
    pub fn short(&self) -> ShortHash {
        ShortHash(*self)
    }
}

/// Hashes a `KeyHash` in maps by taking its first eight bytes: it is already a SHA-256
/// output, so hashing it again (SipHash, the default) would only cost time per request.
#[derive(Clone, Copy, Default)]
pub struct KeyHashBuilder;

impl std::hash::BuildHasher for KeyHashBuilder {
    type Hasher = KeyHashHasher;

    fn build_hasher(&self) -> KeyHashHasher {
        KeyHashHasher(0)
    }
}

pub struct KeyHashHasher(u64);

impl std::hash::Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length, then its bytes: keep the first eight of them.
        for &byte in bytes.iter().take(8) {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
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
        assert_eq!(hash.bucket(), 0xba78 >> (16 - BUCKET_BITS));
    }

    #[test]
    fn splits_into_bucket_and_suffix_and_back() {
        let hash = KeyHash::of_key(b"sk_test_example");
        let rebuilt = KeyHash::from_parts(hash.bucket(), hash.suffix()).unwrap();
        assert_eq!(rebuilt, hash);
        assert_eq!(hash.suffix().len(), KEY_HASH_LEN - BUCKET_PREFIX_LEN);
        assert!(KeyHash::from_parts(1, &[0u8; 3]).is_none());
        // A suffix whose leading bits belong to another bucket is refused.
        let mut other = hash;
        other.0[1] ^= 0x80;
        assert!(KeyHash::from_parts(hash.bucket(), other.suffix()).is_none());
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
        let last = ((1u32 << BUCKET_BITS) - 1) as u16;
        assert_eq!(KeyHash::bucket_bounds(last).1, KeyHash([0xff; 32]));
        assert_eq!(KeyHash::bucket_bounds(0).0, KeyHash([0; 32]));
    }

    #[test]
    fn maps_keyed_by_hash_work_with_the_cheap_hasher() {
        let mut map: std::collections::HashMap<KeyHash, u32, KeyHashBuilder> = Default::default();
        for i in 0..1000u32 {
            map.insert(KeyHash::of_key(&i.to_le_bytes()), i);
        }
        for i in 0..1000u32 {
            assert_eq!(map.get(&KeyHash::of_key(&i.to_le_bytes())), Some(&i));
        }
    }

    #[test]
    fn rejects_wrong_lengths() {
        assert!(KeyHash::from_slice(&[0u8; 31]).is_none());
        assert!(KeyHash::from_slice(&[0u8; 33]).is_none());
        assert!(KeyHash::from_slice(&[7u8; 32]).is_some());
    }
}
