//! A key's secret: its format, and the one place a new one is drawn.
//!
//! A key is `sk_live_` or `sk_test_`, 32 base62 characters from a CSPRNG (about 190
//! bits), then a 6-character checksum (`keysync_contract::key_format`) that lets the
//! gateway and secret scanners tell a real key from a typo. The secret exists in memory only until it is shown, once; only its
//! SHA-256 ([`keysync_contract::key_hash`]) and a short display prefix ever reach the database.

use std::fmt;

use rand::distr::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize, Serializer};

use keysync_contract::key_format;
use keysync_contract::key_hash::KeyHash;

/// Number of random characters after the `sk_<env>_` marker.
pub const RANDOM_LEN: usize = key_format::RANDOM_LEN;

/// Characters of the key kept as its display prefix (`sk_live_AbCd`): enough for an
/// operator to tell keys apart, far too few to guess the rest.
pub const PREFIX_LEN: usize = 12;

/// Which environment a key is for; part of the key text so a leaked test key is
/// recognisable at a glance.
/// In JSON, `"live"` or `"test"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
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

/// `len` base62 characters from the thread-local CSPRNG: the random part of a key or of
/// an admin token.
pub(crate) fn random_base62(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A freshly drawn key.
pub struct KeySecret {
    secret: String,
}

impl KeySecret {
    /// Draws a new key from the thread-local CSPRNG and appends its checksum.
    pub fn generate(environment: KeyEnvironment) -> Self {
        let body = format!("{}{}", environment.marker(), random_base62(RANDOM_LEN));
        let checksum = key_format::checksum_for(&body);
        KeySecret {
            secret: body + &checksum,
        }
    }

    /// The full key, for the one time it is shown.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// What the database stores instead of the key.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of_key(self.secret.as_bytes())
    }

    /// The display prefix stored next to the hash.
    pub fn prefix(&self) -> &str {
        // The key is ASCII, so byte and character positions agree.
        &self.secret[..PREFIX_LEN]
    }
}

// Keep the secret out of `{:?}` output, logs and panics.
impl fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySecret")
            .field("prefix", &self.prefix())
            .finish_non_exhaustive()
    }
}

/// The secret itself: a key is serialized only into the result that shows it, once.
impl Serialize for KeySecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_key_has_marker_random_part_and_checksum() {
        let key = KeySecret::generate(KeyEnvironment::Live);
        let secret = key.secret();
        assert!(secret.starts_with("sk_live_"), "{secret}");
        let rest = &secret["sk_live_".len()..];
        assert_eq!(rest.len(), RANDOM_LEN + key_format::CHECKSUM_LEN);
        assert!(rest.chars().all(|c| c.is_ascii_alphanumeric()), "{rest}");
        assert_eq!(
            key_format::classify(secret.as_bytes()),
            key_format::KeyForm::Checksummed
        );
    }

    #[test]
    fn test_key_has_test_marker() {
        let key = KeySecret::generate(KeyEnvironment::Test);
        assert!(key.secret().starts_with("sk_test_"));
        assert_eq!(key.secret().len(), key_format::CHECKSUMMED_LEN);
        assert_eq!(
            key_format::classify(key.secret().as_bytes()),
            key_format::KeyForm::Checksummed
        );
    }

    #[test]
    fn issued_keys_match_the_scanner_regex_and_only_it() {
        let regex = regex::Regex::new(key_format::SCANNER_REGEX).unwrap();
        let legacy = regex::Regex::new(key_format::LEGACY_SCANNER_REGEX).unwrap();
        for _ in 0..100 {
            let key = KeySecret::generate(KeyEnvironment::Live);
            let in_text = format!("export API_KEY={}\n", key.secret());
            let found = regex.find(&in_text).map(|found| found.as_str());
            assert_eq!(found, Some(key.secret()), "{key:?}");
            assert!(!legacy.is_match(key.secret()));
        }
        assert!(legacy.is_match("key=sk_test_0123456789abcdefABCDEF0123456789;"));
        assert!(!regex.is_match("sk_test_0123456789abcdefABCDEF0123456789"));
    }

    /// The published gitleaks rules are the regular expressions the code documents.
    #[test]
    fn the_gitleaks_rules_carry_the_scanner_regexes() {
        let rules = include_str!("../../../secret-scanning/gitleaks.toml");
        for regex in [key_format::SCANNER_REGEX, key_format::LEGACY_SCANNER_REGEX] {
            let line = format!("regex = '''{regex}'''");
            assert!(rules.lines().any(|text| text == line), "missing: {line}");
        }
    }

    #[test]
    fn prefix_is_first_twelve_characters() {
        let key = KeySecret::generate(KeyEnvironment::Live);
        assert_eq!(key.prefix().len(), 12);
        assert_eq!(key.prefix(), &key.secret()[..12]);
        assert!(key.prefix().starts_with("sk_live_"));
    }

    #[test]
    fn the_stored_hash_is_the_sha256_of_the_key() {
        let key = KeySecret::generate(KeyEnvironment::Live);
        assert_eq!(key.hash(), KeyHash::of_key(key.secret().as_bytes()));
    }

    #[test]
    fn keys_differ() {
        let a = KeySecret::generate(KeyEnvironment::Live);
        let b = KeySecret::generate(KeyEnvironment::Live);
        assert_ne!(a.secret(), b.secret());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = KeySecret::generate(KeyEnvironment::Live);
        let debug = format!("{key:?}");
        assert!(!debug.contains(key.secret()), "{debug}");
        assert!(debug.contains(key.prefix()));
    }

    #[test]
    fn serializing_shows_the_secret() {
        let key = KeySecret::generate(KeyEnvironment::Test);
        assert_eq!(
            serde_json::to_string(&key).unwrap(),
            format!("\"{}\"", key.secret())
        );
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
}
