//! What an API key is: its format, how a new one is generated, and what of it is stored.
//!
//! A key is `sk_live_` or `sk_test_` followed by 32 base62 characters from a CSPRNG
//! (about 190 bits). Only its SHA-256 and a short display prefix ever reach the database.

use std::fmt;

use rand::distr::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Number of random characters after the `sk_<env>_` marker.
pub const RANDOM_LEN: usize = 32;

/// Characters of the key kept as its display prefix (`sk_live_AbCd`): enough for an
/// operator to tell keys apart, far too few to guess the rest.
pub const PREFIX_LEN: usize = 12;

/// The SHA-256 of a key: how keys are stored, looked up and served.
pub type KeyHash = [u8; 32];

/// Which environment a key is for; part of the key text so a leaked test key is
/// recognisable at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyEnvironment {
    Live,
    Test,
}

impl KeyEnvironment {
    /// The text every key of this environment starts with.
    pub fn marker(self) -> &'static str {
        match self {
            KeyEnvironment::Live => "sk_live_",
            KeyEnvironment::Test => "sk_test_",
        }
    }

    /// The environment of a key or display prefix, from its marker.
    pub fn of_key(text: &str) -> Option<KeyEnvironment> {
        [KeyEnvironment::Live, KeyEnvironment::Test]
            .into_iter()
            .find(|environment| text.starts_with(environment.marker()))
    }
}

/// A freshly generated key. The secret exists only here, to be shown once.
pub struct GeneratedKey {
    secret: String,
}

impl GeneratedKey {
    /// Draws a new key from the thread-local CSPRNG.
    pub fn generate(environment: KeyEnvironment) -> Self {
        let random: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(RANDOM_LEN)
            .map(char::from)
            .collect();
        GeneratedKey {
            secret: format!("{}{random}", environment.marker()),
        }
    }

    /// The full key, for the one time it is printed.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// What the database stores instead of the key.
    pub fn hash(&self) -> KeyHash {
        hash_key(&self.secret)
    }

    /// The display prefix stored next to the hash.
    pub fn prefix(&self) -> &str {
        // The key is ASCII, so byte and character positions agree.
        &self.secret[..PREFIX_LEN]
    }
}

// Keep the secret out of `{:?}` output, logs and panics.
impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("prefix", &self.prefix())
            .finish_non_exhaustive()
    }
}

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
    fn live_key_has_marker_and_32_base62_characters() {
        let key = GeneratedKey::generate(KeyEnvironment::Live);
        let secret = key.secret();
        assert!(secret.starts_with("sk_live_"), "{secret}");
        let random = &secret["sk_live_".len()..];
        assert_eq!(random.len(), RANDOM_LEN);
        assert!(
            random.chars().all(|c| c.is_ascii_alphanumeric()),
            "{random}"
        );
    }

    #[test]
    fn test_key_has_test_marker() {
        let key = GeneratedKey::generate(KeyEnvironment::Test);
        assert!(key.secret().starts_with("sk_test_"));
        assert_eq!(key.secret().len(), "sk_test_".len() + RANDOM_LEN);
    }

    #[test]
    fn prefix_is_first_twelve_characters() {
        let key = GeneratedKey::generate(KeyEnvironment::Live);
        assert_eq!(key.prefix().len(), 12);
        assert_eq!(key.prefix(), &key.secret()[..12]);
        assert!(key.prefix().starts_with("sk_live_"));
    }

    #[test]
    fn hash_is_sha256_of_the_key_text() {
        // Known vector: SHA-256("abc").
        assert_eq!(
            hex::encode(hash_key("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let key = GeneratedKey::generate(KeyEnvironment::Live);
        assert_eq!(key.hash(), hash_key(key.secret()));
    }

    #[test]
    fn keys_differ() {
        let a = GeneratedKey::generate(KeyEnvironment::Live);
        let b = GeneratedKey::generate(KeyEnvironment::Live);
        assert_ne!(a.secret(), b.secret());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = GeneratedKey::generate(KeyEnvironment::Live);
        let debug = format!("{key:?}");
        assert!(!debug.contains(key.secret()), "{debug}");
        assert!(debug.contains(key.prefix()));
    }

    #[test]
    fn environment_is_read_from_the_marker() {
        assert_eq!(
            KeyEnvironment::of_key("sk_live_AbCd"),
            Some(KeyEnvironment::Live)
        );
        assert_eq!(
            KeyEnvironment::of_key("sk_test_"),
            Some(KeyEnvironment::Test)
        );
        assert_eq!(KeyEnvironment::of_key("sk_prod_AbCd"), None);
        assert_eq!(KeyEnvironment::of_key("sk_live"), None);
    }

    #[test]
    fn short_hash_is_eight_hex_characters() {
        assert_eq!(short_hash(&[0xab; 32]), "abababab");
        assert_eq!(short_hash(&[0x01]), "01");
    }
}
