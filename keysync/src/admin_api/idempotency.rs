//! Creates sent with an `Idempotency-Key` header happen once: a retry with the same key
//! (and the same token) gets the first answer again, with `Idempotent-Replayed: true`,
//! and makes nothing; the same key sent with a different request is a 422.
//!
//! The record is claimed in the transaction that makes the change, before making it, so
//! a retry racing the first request waits on the claim (PostgreSQL's unique index) and
//! then replays the committed answer; a failed first attempt rolls its claim back and
//! leaves the retry free to run. The answer may hold a new API key, which keysync never
//! stores in clear: it is sealed with ChaCha20-Poly1305 under a key derived (HKDF-SHA256,
//! with a random salt per record) from the server's secret ([`IdempotencySecret`], never
//! in the database) and the Idempotency-Key, of which only a SHA-256 is stored. A copy
//! of the database and a guessed Idempotency-Key open nothing. An answer this process
//! cannot open (sealed under another secret: a restart or another replica without a
//! secret file) is not replayed, and the retry is refused 409 rather than carried out
//! again. Records older than the configured time to live are replaced on their next use
//! and swept away periodically.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::error::ApiError;
use super::idempotency_secret::IdempotencySecret;
use crate::database::describe_sqlx;

/// The header a replayed answer carries.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Sealing context: a different one gives an unrelated key. v1 sealed under the
/// Idempotency-Key alone; its records no longer open (they expire within the TTL).
const SEAL_INFO: &[u8] = b"keysync admin api idempotent response v2";
const SALT_LEN: usize = 16;

/// What a request is, for telling a true retry from another request that reuses a key:
/// the route, the id in its path, and the parsed body.
pub fn fingerprint(route: &str, path_id: Option<Uuid>, body: &impl Serialize) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(route.as_bytes());
    digest.update([0]);
    if let Some(id) = path_id {
        digest.update(id.as_bytes());
    }
    digest.update([0]);
    // Serializing a request type cannot fail (no maps with non-string keys).
    digest.update(serde_json::to_vec(body).unwrap_or_default());
    digest.finalize().into()
}

/// How a stored record is found: never the key itself.
fn key_hash(idempotency_key: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"keysync idempotency key\0")
        .chain_update(idempotency_key.as_bytes())
        .finalize()
        .into()
}

/// The record's key: the server's secret (fixed length, so the concatenation is
/// unambiguous) and the client's Idempotency-Key, salted per record.
fn sealing_key(
    secret: &IdempotencySecret,
    idempotency_key: &str,
    salt: &[u8],
) -> Result<LessSafeKey, ApiError> {
    let material = [&secret.as_bytes()[..], idempotency_key.as_bytes()].concat();
    let pseudo_random_key = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&material);
    let okm = pseudo_random_key
        .expand(&[SEAL_INFO], &aead::CHACHA20_POLY1305)
        .map_err(|_| ApiError::internal())?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

/// `salt || ciphertext+tag`. Each record has its own salt, so its own key: a fixed nonce
/// is used once per key.
fn seal(
    secret: &IdempotencySecret,
    idempotency_key: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let salt: [u8; SALT_LEN] = rand::random();
    let key = sealing_key(secret, idempotency_key, &salt)?;
    let mut sealed = plaintext.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([0; aead::NONCE_LEN]),
        Aad::empty(),
        &mut sealed,
    )
    .map_err(|_| ApiError::internal())?;
    Ok([&salt[..], &sealed].concat())
}

fn open(secret: &IdempotencySecret, idempotency_key: &str, stored: &[u8]) -> Option<Vec<u8>> {
    let (salt, sealed) = stored.split_at_checked(SALT_LEN)?;
    let key = sealing_key(secret, idempotency_key, salt).ok()?;
    let mut buffer = sealed.to_vec();
    let plaintext = key
        .open_in_place(
            Nonce::assume_unique_for_key([0; aead::NONCE_LEN]),
            Aad::empty(),
            &mut buffer,
        )
        .ok()?;
    Some(plaintext.to_vec())
}

/// A create's idempotency, for one token and one key.
pub struct Idempotency<'a> {
    pub token_id: Uuid,
    pub key: &'a str,
    pub secret: &'a IdempotencySecret,
    pub fingerprint: [u8; 32],
    pub ttl: Duration,
}

impl Idempotency<'_> {
    /// Claims the record inside `transaction`; `Some(answer)` when an earlier request
    /// with this key already answered (the caller returns it and rolls back).
    pub async fn claim(
        &self,
        transaction: &mut PgConnection,
    ) -> Result<Option<Response>, ApiError> {
        let claimed: Option<bool> = sqlx::query_scalar(
            "INSERT INTO api_idempotency (token_id, key_hash, request_hash, status, response) \
             VALUES ($1, $2, $3, 0, ''::bytea) \
             ON CONFLICT (token_id, key_hash) DO UPDATE \
                 SET request_hash = EXCLUDED.request_hash, status = 0, \
                     response = ''::bytea, created_at = now() \
                 WHERE api_idempotency.created_at < now() - make_interval(secs => $4) \
             RETURNING true",
        )
        .bind(self.token_id)
        .bind(key_hash(self.key).as_slice())
        .bind(self.fingerprint.as_slice())
        .bind(self.ttl.as_secs_f64())
        .fetch_optional(&mut *transaction)
        .await?;
        if claimed.is_some() {
            return Ok(None);
        }
        let (request_hash, status, response): (Vec<u8>, i16, Vec<u8>) = sqlx::query_as(
            "SELECT request_hash, status, response FROM api_idempotency \
             WHERE token_id = $1 AND key_hash = $2",
        )
        .bind(self.token_id)
        .bind(key_hash(self.key).as_slice())
        .fetch_one(&mut *transaction)
        .await?;
        if request_hash != self.fingerprint {
            return Err(ApiError::invalid_value(
                "this Idempotency-Key was used for a different request; \
                 use a new key for a new request",
            )
            .with_code("idempotency_key_reused"));
        }
        let status = u16::try_from(status)
            .ok()
            .and_then(|status| StatusCode::from_u16(status).ok())
            .ok_or_else(ApiError::internal)?;
        let body = open(self.secret, self.key, &response).ok_or_else(|| {
            warn!(
                "admin api: a retry's stored answer (admin token {}) was sealed under \
                 another secret; refused 409",
                self.token_id
            );
            ApiError::idempotent_answer_unavailable()
        })?;
        Ok(Some(replayed(status, body)))
    }

    /// Stores the answer `body` (with `status`) in the claimed record, sealed.
    pub async fn store(
        &self,
        transaction: &mut PgConnection,
        status: StatusCode,
        body: &[u8],
    ) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE api_idempotency SET status = $3, response = $4 \
             WHERE token_id = $1 AND key_hash = $2",
        )
        .bind(self.token_id)
        .bind(key_hash(self.key).as_slice())
        .bind(i16::try_from(status.as_u16()).unwrap_or(0))
        .bind(seal(self.secret, self.key, body)?)
        .execute(&mut *transaction)
        .await?;
        Ok(())
    }
}

fn replayed(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = super::json_response(status, body);
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

/// Deletes records older than `ttl` every `period` until `stop`.
pub async fn sweep(pool: PgPool, ttl: Duration, period: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let swept = sqlx::query(
            "DELETE FROM api_idempotency WHERE created_at < now() - make_interval(secs => $1)",
        )
        .bind(ttl.as_secs_f64())
        .execute(&pool)
        .await;
        match swept {
            Ok(done) if done.rows_affected() > 0 => {
                info!(
                    "admin api: idempotency records expired: removed={}",
                    done.rows_affected()
                );
            }
            Ok(_) => {}
            Err(error) => warn!(
                "database error: admin api: idempotency sweep: {}",
                describe_sqlx(&error)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_answer_opens_only_with_its_secret_and_key() {
        let secret = IdempotencySecret::generate();
        let key = "5d1c1f0e-5a4e-4b43-8d1e-7c9f0a1b2c3d";
        let sealed = seal(&secret, key, b"{\"key\":\"sk_live_secret\"}").unwrap();
        assert!(!sealed.windows(6).any(|window| window == b"secret"));
        assert_eq!(
            open(&secret, key, &sealed).unwrap(),
            b"{\"key\":\"sk_live_secret\"}"
        );
        assert_eq!(open(&secret, "another key of some length", &sealed), None);
        assert_eq!(open(&secret, key, &sealed[..10]), None);
        assert_eq!(
            open(&IdempotencySecret::generate(), key, &sealed),
            None,
            "another process's secret"
        );
        assert_ne!(
            seal(&secret, key, b"x").unwrap(),
            seal(&secret, key, b"x").unwrap(),
            "salted"
        );
    }

    /// What a copy of the database and the Idempotency-Key alone give: the key derived
    /// as v1 did, or as now without the secret. Neither opens the answer.
    #[test]
    fn the_idempotency_key_alone_does_not_open_an_answer() {
        let secret = IdempotencySecret::generate();
        let key = "signup-for-customer-000042";
        let sealed = seal(&secret, key, b"{\"key\":\"sk_live_secret\"}").unwrap();
        let (salt, ciphertext) = sealed.split_at(SALT_LEN);
        for (material, info) in [
            (
                key.as_bytes().to_vec(),
                &b"keysync admin api idempotent response v1"[..],
            ),
            (key.as_bytes().to_vec(), SEAL_INFO),
            ([&[0u8; 32][..], key.as_bytes()].concat(), SEAL_INFO),
        ] {
            let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&material);
            let info = [info];
            let okm = prk.expand(&info, &aead::CHACHA20_POLY1305).unwrap();
            let mut buffer = ciphertext.to_vec();
            let opened = LessSafeKey::new(UnboundKey::from(okm)).open_in_place(
                Nonce::assume_unique_for_key([0; aead::NONCE_LEN]),
                Aad::empty(),
                &mut buffer,
            );
            assert!(opened.is_err());
        }
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let id = Uuid::new_v4();
        let a = fingerprint("rotate", Some(id), &serde_json::json!({"grace": "1h"}));
        assert_eq!(
            a,
            fingerprint("rotate", Some(id), &serde_json::json!({"grace": "1h"}))
        );
        assert_ne!(
            a,
            fingerprint("rotate", Some(id), &serde_json::json!({"grace": "2h"}))
        );
        assert_ne!(
            a,
            fingerprint("rotate", None, &serde_json::json!({"grace": "1h"}))
        );
        assert_ne!(key_hash("a"), key_hash("b"));
    }
}
