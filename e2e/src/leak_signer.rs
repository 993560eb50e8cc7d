//! Signs leak reports the way GitHub's secret-scanning partner program does (ECDSA
//! P-256 / SHA-256 over the raw body, base64 DER), with a key pair generated per test,
//! and lists its public key in the format GitHub publishes its keys in.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

/// The DER of a P-256 `SubjectPublicKeyInfo` before the point (written out here rather
/// than shared with keysync, so the two are checked against each other).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

pub struct Signer {
    pub identifier: String,
    pair: EcdsaKeyPair,
}

impl Signer {
    /// A fresh key pair named `identifier`.
    pub fn generate(identifier: &str) -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("generate a P-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("read the generated key");
        Signer {
            identifier: identifier.to_owned(),
            pair,
        }
    }

    /// Base64 of the DER signature of `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        let signature = self
            .pair
            .sign(&SystemRandom::new(), body)
            .expect("sign the body");
        STANDARD.encode(signature.as_ref())
    }

    /// The public key as PEM (`PUBLIC KEY`, SubjectPublicKeyInfo).
    pub fn public_pem(&self) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.pair.public_key().as_ref());
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(&der)
        )
    }
}

/// GitHub's key list (`{"public_keys": [...]}`) holding `signers`' public keys.
pub fn key_list(signers: &[&Signer]) -> String {
    let keys: Vec<serde_json::Value> = signers
        .iter()
        .map(|signer| {
            serde_json::json!({
                "key_identifier": signer.identifier,
                "key": signer.public_pem(),
                "is_current": true,
            })
        })
        .collect();
    serde_json::json!({ "public_keys": keys }).to_string()
}
