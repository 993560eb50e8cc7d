//! Who may report a leak: a report is signed over its raw body with ECDSA P-256 /
//! SHA-256 by one of the configured public keys, named in `Github-Public-Key-Identifier`
//! and signed in `Github-Public-Key-Signature` (base64 of the DER signature), as GitHub's
//! secret-scanning partner program does. The keys are configured in the format GitHub
//! publishes them (`https://api.github.com/meta/public_keys/secret_scanning`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde::Deserialize;

/// The DER of a P-256 `SubjectPublicKeyInfo` up to the key itself (an uncompressed
/// point, 65 bytes): algorithm id-ecPublicKey, curve prime256v1.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const P256_POINT_LEN: usize = 65;

/// Why the configured key list is unusable; names the key, never a secret (there is none:
/// these are public keys).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublicKeysError {
    #[error("not the JSON of GitHub's key list ({{\"public_keys\": [{{\"key_identifier\", \"key\"}}]}}): {0}")]
    Json(String),
    #[error("key {0}: not a PEM \"PUBLIC KEY\" of an ECDSA P-256 key")]
    NotP256(String),
    #[error("the list holds no key")]
    Empty,
}

/// Why a report's signature is not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("no Github-Public-Key-Identifier or Github-Public-Key-Signature header")]
    Missing,
    #[error("signed by a key that is not configured")]
    UnknownKey,
    #[error("the signature is not base64")]
    NotBase64,
    #[error("the signature does not match the body")]
    Mismatch,
}

#[derive(Deserialize)]
struct KeyList {
    public_keys: Vec<ListedKey>,
}

#[derive(Deserialize)]
struct ListedKey {
    key_identifier: String,
    key: String,
}

/// The keys reports may be signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeys {
    /// Identifier and the key's uncompressed point.
    keys: Vec<(String, Vec<u8>)>,
}

impl PublicKeys {
    /// Reads GitHub's key list format. Keys marked `is_current: false` are kept: GitHub
    /// may still sign with a key it is retiring.
    pub fn from_json(text: &str) -> Result<PublicKeys, PublicKeysError> {
        let list: KeyList =
            serde_json::from_str(text).map_err(|error| PublicKeysError::Json(error.to_string()))?;
        let keys = list
            .public_keys
            .into_iter()
            .map(|listed| {
                let point = p256_point(&listed.key)
                    .ok_or_else(|| PublicKeysError::NotP256(listed.key_identifier.clone()))?;
                Ok((listed.key_identifier, point))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(PublicKeysError::Empty);
        }
        Ok(PublicKeys { keys })
    }

    /// How many keys there are (never none).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys' identifiers, in the list's order.
    pub fn identifiers(&self) -> Vec<&str> {
        self.keys.iter().map(|(id, _)| id.as_str()).collect()
    }

    /// Accepts `body` when `signature` (base64 DER) is the signature of the key named
    /// `identifier` over it.
    pub fn verify(
        &self,
        identifier: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let point = self
            .keys
            .iter()
            .find(|(id, _)| id == identifier)
            .map(|(_, point)| point)
            .ok_or(SignatureError::UnknownKey)?;
        let signature = STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureError::NotBase64)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .verify(body, &signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// The uncompressed point of a PEM `PUBLIC KEY` holding a P-256 key.
fn p256_point(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|line| *line != "-----BEGIN PUBLIC KEY-----")
        .skip(1)
        .take_while(|line| *line != "-----END PUBLIC KEY-----")
        .collect();
    let der = STANDARD.decode(body).ok()?;
    let point = der.strip_prefix(&P256_SPKI_PREFIX[..])?;
    (point.len() == P256_POINT_LEN).then(|| point.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_e2e::leak_signer::{key_list, Signer};

    const BODY: &[u8] =
        br#"[{"token":"sk_live_x","type":"keysync_api_key","url":"","source":"content"}]"#;

    #[test]
    fn a_report_signed_by_a_configured_key_is_accepted() {
        let github =
            Signer::generate("90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a");
        let retiring =
            Signer::generate("bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c");
        let keys = PublicKeys::from_json(&key_list(&[&retiring, &github])).unwrap();
        for signer in [&github, &retiring] {
            assert_eq!(
                keys.verify(&signer.identifier, &signer.sign(BODY), BODY),
                Ok(())
            );
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let github = Signer::generate("github");
        let stranger = Signer::generate("github");
        let keys = PublicKeys::from_json(&key_list(&[&github])).unwrap();
        let signature = github.sign(BODY);
        assert_eq!(
            keys.verify("other", &signature, BODY),
            Err(SignatureError::UnknownKey)
        );
        assert_eq!(
            keys.verify("github", "not base64!", BODY),
            Err(SignatureError::NotBase64)
        );
        let mut tampered = BODY.to_vec();
        tampered[20] ^= 1;
        assert_eq!(
            keys.verify("github", &signature, &tampered),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            keys.verify("github", &stranger.sign(BODY), BODY),
            Err(SignatureError::Mismatch),
            "the same identifier, another key"
        );
    }

    #[test]
    fn a_bad_key_list_is_refused_naming_the_key() {
        assert!(matches!(
            PublicKeys::from_json("[]"),
            Err(PublicKeysError::Json(_))
        ));
        assert_eq!(
            PublicKeys::from_json(r#"{"public_keys":[]}"#).unwrap_err(),
            PublicKeysError::Empty
        );
        let rsa_like = r#"{"public_keys":[{"key_identifier":"k1","key":"-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAK\n-----END PUBLIC KEY-----\n"}]}"#;
        assert_eq!(
            PublicKeys::from_json(rsa_like).unwrap_err(),
            PublicKeysError::NotP256("k1".into())
        );
    }
}
