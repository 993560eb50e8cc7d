//! Which bucket of the store a key hash lives in: its first [`BUCKET_BITS`] bits. A
//! bucket stores the next bytes of each hash (the suffix, up to `key_record::STORED_HASH_LEN`); the index implies the prefix.

use keysync_contract::key_hash::{KeyHash, KEY_HASH_LEN};

/// The leading bits of the hash that pick its bucket: 16,384 buckets. Enough that a
/// million keys make buckets of ~60 records (~5 KB read per request), few enough that
/// the shared-data table Envoy keeps forever stays small (~2 MB when all exist).
pub const BUCKET_BITS: u32 = 14;

/// Whole bytes of the hash a bucket's index fixes; records store the rest (from the
/// byte where the index ends).
pub const BUCKET_PREFIX_LEN: usize = (BUCKET_BITS / 8) as usize;

/// A key hash's place in the store.
pub trait BucketIndex {
    /// The bucket this key lives in: the first `BUCKET_BITS` bits of its hash.
    fn bucket(&self) -> u16;
}

impl BucketIndex for KeyHash {
    fn bucket(&self) -> u16 {
        u16::from_be_bytes([self.0[0], self.0[1]]) >> (16 - BUCKET_BITS)
    }
}

/// Rebuilds a hash from its bucket and (part of) its suffix; `None` if they disagree.
pub fn hash_from_parts(bucket: u16, suffix: &[u8]) -> Option<KeyHash> {
    let mut hash = [0u8; KEY_HASH_LEN];
    let (prefix, rest) = hash.split_at_mut(BUCKET_PREFIX_LEN);
    let first_bits = u32::from(bucket) << (16 - BUCKET_BITS);
    for (i, byte) in prefix.iter_mut().enumerate() {
        *byte = (first_bits >> (8 * (1 - i))) as u8;
    }
    // A shorter suffix leaves zeros after it (records store only part of the hash).
    rest.get_mut(..suffix.len())?.copy_from_slice(suffix);
    let hash = KeyHash(hash);
    (hash.bucket() == bucket).then_some(hash)
}

/// The lowest and highest hash that fall in `bucket`.
pub fn bucket_bounds(bucket: u16) -> (KeyHash, KeyHash) {
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
        let rebuilt = hash_from_parts(hash.bucket(), &hash.0[BUCKET_PREFIX_LEN..]).unwrap();
        assert_eq!(rebuilt, hash);

        assert!(
            hash_from_parts(1, &[0u8; 32]).is_none(),
            "longer than a hash"
        );
        // A suffix whose leading bits belong to another bucket is refused.
        let mut other = hash;
        other.0[1] ^= 0x80;
        assert!(hash_from_parts(hash.bucket(), &other.0[BUCKET_PREFIX_LEN..]).is_none());
    }

    #[test]
    fn bucket_bounds_enclose_the_bucket() {
        let hash = KeyHash::of_key(b"sk_test_bounds");
        let (low, high) = bucket_bounds(hash.bucket());
        assert!(low <= hash && hash <= high);
        assert_eq!(low.bucket(), hash.bucket());
        assert_eq!(high.bucket(), hash.bucket());
        let (next_low, _) = bucket_bounds(hash.bucket() + 1);
        assert!(high < next_low);
        let last = ((1u32 << BUCKET_BITS) - 1) as u16;
        assert_eq!(bucket_bounds(last).1, KeyHash([0xff; 32]));
        assert_eq!(bucket_bounds(0).0, KeyHash([0; 32]));
    }

    #[test]
    fn rejects_wrong_lengths() {
        assert!(KeyHash::from_slice(&[0u8; 31]).is_none());
        assert!(KeyHash::from_slice(&[0u8; 33]).is_none());
        assert!(KeyHash::from_slice(&[7u8; 32]).is_some());
    }

    #[test]
    fn the_contracts_hash_length_is_the_wires() {
        assert_eq!(KEY_HASH_LEN, keysync_proto::v1::KEY_HASH_LEN);
    }
}
