//! A webhook's signing secret, as Standard Webhooks defines it: `whsec_` and the base64
//! of random bytes. The bytes (not the text) are the HMAC key. It is shown once, at
//! creation; keysync keeps it to sign with, and never logs or lists it.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Serialize, Serializer};

/// What every secret starts with.
pub const SECRET_MARKER: &str = "whsec_";
/// Random bytes in a new secret (Standard Webhooks asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// A signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    text: String,
}

/// Stored text that is not a secret (a row written by hand, say).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored signing secret is not whsec_ and base64")]
pub struct InvalidSecret;

impl SigningSecret {
    pub fn generate() -> Self {
        let bytes: [u8; SECRET_BYTES] = rand::random();
        SigningSecret {
            text: format!("{SECRET_MARKER}{}", STANDARD.encode(bytes)),
        }
    }

    /// A secret as stored.
    pub fn from_stored(text: String) -> Result<Self, InvalidSecret> {
        let secret = SigningSecret { text };
        match secret.key() {
            Some(key) if !key.is_empty() => Ok(secret),
            _ => Err(InvalidSecret),
        }
    }

    /// The text, to store and to show once.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The HMAC key: the decoded bytes after the marker.
    pub fn key(&self) -> Option<Vec<u8>> {
        let encoded = self.text.strip_prefix(SECRET_MARKER)?;
        STANDARD.decode(encoded).ok()
    }
}

// Keep the secret out of `{:?}` output, logs and panics.
impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

/// The secret itself: serialized only into the result that shows it, once.
impl Serialize for SigningSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_secret_is_whsec_and_base64_of_random_bytes() {
        let secret = SigningSecret::generate();
        assert!(secret.text().starts_with("whsec_"), "{}", secret.text());
        assert_eq!(secret.key().unwrap().len(), SECRET_BYTES);
        assert_ne!(secret, SigningSecret::generate());
        assert_eq!(format!("{secret:?}"), "SigningSecret(..)");
        let stored = SigningSecret::from_stored(secret.text().to_owned()).unwrap();
        assert_eq!(stored, secret);
        assert_eq!(
            SigningSecret::from_stored("whsec_not base64!".to_owned()),
            Err(InvalidSecret)
        );
        assert_eq!(
            SigningSecret::from_stored("c2VjcmV0".to_owned()),
            Err(InvalidSecret)
        );
    }
}
