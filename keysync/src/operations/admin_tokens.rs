//! Admin tokens: what the HTTP API's callers present (`Authorization: Bearer ksa_...`).
//! `keysync admin-tokens create` draws one and shows it once; like an API key, only its
//! SHA-256 and a short display prefix are stored. A read-only token may read everything
//! and change nothing; a token limited to one organization (`--org-id`) sees and changes
//! only that one (the API answers as if the others did not exist). Revoking keeps the
//! row, so the changes a token made keep naming it; a revoked token authenticates
//! nothing from the next request on.
//!
//! Tokens are managed from the command line only (database credentials): a leaked API
//! token cannot mint itself a successor. So their changes are recorded in the audit trail
//! as the CLI's, by id, name and display prefix, never the token or its hash.

use std::collections::HashSet;
use std::fmt;

use chrono::{DateTime, Utc};
use keysync_contract::key_hash::KeyHash;
use serde::{Serialize, Serializer};
use sqlx::PgPool;
use uuid::Uuid;

use super::actor::Actor;
use super::audit::{self, Absent, AuditAction, Change};
use super::key_secret::random_base62;
use super::keys::Revocation;
use super::name::Name;
use super::sql_state::{violation, Violation};
use super::timestamp::Timestamp;

/// What every admin token starts with: tells it apart from an API key at a glance.
pub const TOKEN_MARKER: &str = "ksa_";
/// Random base62 characters after the marker (about 238 bits).
pub const TOKEN_RANDOM_LEN: usize = 40;
/// Characters kept as the display prefix (`ksa_AbCdEfGh`).
pub const TOKEN_PREFIX_LEN: usize = 12;
/// The longest text worth hashing as a token; longer ones are refused unread.
pub const MAX_PRESENTED_LEN: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error("admin token {0} not found")]
    NotFound(Uuid),
    #[error("organization {0} not found")]
    OrgNotFound(Uuid),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A freshly drawn admin token.
pub struct AdminTokenSecret {
    secret: String,
}

impl AdminTokenSecret {
    pub fn generate() -> Self {
        AdminTokenSecret {
            secret: format!("{TOKEN_MARKER}{}", random_base62(TOKEN_RANDOM_LEN)),
        }
    }

    /// The token, for the one time it is shown.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    pub fn prefix(&self) -> &str {
        // ASCII, so byte and character positions agree.
        &self.secret[..TOKEN_PREFIX_LEN]
    }
}

// Keep the secret out of `{:?}` output, logs and panics.
impl fmt::Debug for AdminTokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTokenSecret")
            .field("prefix", &self.prefix())
            .finish_non_exhaustive()
    }
}

/// The secret itself: serialized only into the result that shows it, once.
impl Serialize for AdminTokenSecret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.secret)
    }
}

/// A new token: the secret, shown this once, and what is stored about it.
#[derive(Debug, Serialize)]
pub struct CreatedAdminToken {
    pub token: AdminTokenSecret,
    pub token_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub read_only: bool,
    /// The one organization the token may see and change; absent: every one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
}

/// Whether a token authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminTokenStatus {
    Active,
    Revoked,
}

impl AdminTokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminTokenStatus::Active => "active",
            AdminTokenStatus::Revoked => "revoked",
        }
    }
}

/// A token as `admin-tokens list` shows it; never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedAdminToken {
    pub token_id: Uuid,
    pub prefix: String,
    pub name: String,
    pub read_only: bool,
    /// The one organization the token may see and change; `null`: every one.
    pub org_id: Option<Uuid>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub status: AdminTokenStatus,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: Uuid,
    token_prefix: String,
    name: String,
    read_only: bool,
    org_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

/// A token as the audit trail records it: never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditedAdminToken {
    pub name: String,
    pub prefix: String,
    pub read_only: bool,
    /// Only for a token limited to one organization (records of the others keep the
    /// shape they always had).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
    pub status: AdminTokenStatus,
}

/// A revoked token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RevokedAdminToken {
    pub token_id: Uuid,
    pub revocation: Revocation,
}

/// Whom a presented token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminCaller {
    pub token_id: Uuid,
    pub read_only: bool,
    /// The one organization the token may see and change; `None`: every one.
    pub org_id: Option<Uuid>,
}

impl AdminCaller {
    /// Whether the token may see and change the organization `org_id` (whether it
    /// exists is the operation's business).
    pub fn reaches_org(&self, org_id: Uuid) -> bool {
        self.org_id.is_none_or(|own| own == org_id)
    }

    /// Whether the token may see and change the key `key_id`: any, for a token of every
    /// organization (whether it exists is the operation's business); else a key of its
    /// organization, which must exist.
    pub async fn reaches_key(&self, pool: &PgPool, key_id: Uuid) -> Result<bool, sqlx::Error> {
        let Some(own) = self.org_id else {
            return Ok(true);
        };
        let org_id: Option<Uuid> = sqlx::query_scalar("SELECT org_id FROM api_keys WHERE id = $1")
            .bind(key_id)
            .fetch_optional(pool)
            .await?;
        Ok(org_id == Some(own))
    }
}

/// SHA-256 of a token's text, as stored in `admin_tokens.token_hash`.
pub fn hash_token(token: &str) -> KeyHash {
    KeyHash::of_key(token.as_bytes())
}

/// Draws a token, stores its hash, and records it in the audit trail (in its
/// organization's, for a token limited to one).
pub async fn create(
    pool: &PgPool,
    name: &Name,
    read_only: bool,
    org_id: Option<Uuid>,
) -> Result<CreatedAdminToken, AdminTokenError> {
    let token = AdminTokenSecret::generate();
    let id = Uuid::new_v4();
    let mut transaction = pool.begin().await?;
    sqlx::query(
        "INSERT INTO admin_tokens (id, name, token_hash, token_prefix, read_only, org_id) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(name.as_str())
    .bind(hash_token(token.secret()).as_bytes().as_slice())
    .bind(token.prefix())
    .bind(read_only)
    .bind(org_id)
    .execute(&mut *transaction)
    .await
    .map_err(|error| match (violation(&error), org_id) {
        (Some(Violation::ForeignKey), Some(org_id)) => AdminTokenError::OrgNotFound(org_id),
        _ => AdminTokenError::Database(error),
    })?;
    audit::record(
        &mut transaction,
        Actor::Cli,
        Change {
            action: AuditAction::AdminTokenCreated,
            object_id: id,
            org_id,
            old_value: Absent,
            new_value: AuditedAdminToken {
                name: name.as_str().to_owned(),
                prefix: token.prefix().to_owned(),
                read_only,
                org_id,
                status: AdminTokenStatus::Active,
            },
        },
    )
    .await?;
    transaction.commit().await?;
    Ok(CreatedAdminToken {
        token_id: id,
        name: name.as_str().to_owned(),
        prefix: token.prefix().to_owned(),
        read_only,
        org_id,
        token,
    })
}

/// Every token, revoked ones included, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<ListedAdminToken>, AdminTokenError> {
    let rows: Vec<TokenRow> = sqlx::query_as(
        "SELECT id, token_prefix, name, read_only, org_id, created_at, revoked_at \
         FROM admin_tokens ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| ListedAdminToken {
            token_id: row.id,
            prefix: row.token_prefix,
            name: row.name,
            read_only: row.read_only,
            org_id: row.org_id,
            created_at: Timestamp(row.created_at),
            status: if row.revoked_at.is_some() {
                AdminTokenStatus::Revoked
            } else {
                AdminTokenStatus::Active
            },
            revoked_at: row.revoked_at.map(Timestamp),
        })
        .collect())
}

/// Revokes a token; it authenticates nothing from the next request on. Revoking twice is
/// not an error, and only the first revocation is recorded in the audit trail.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<RevokedAdminToken, AdminTokenError> {
    let mut transaction = pool.begin().await?;
    let target: Option<(String, String, bool, Option<Uuid>, bool)> = sqlx::query_as(
        "SELECT name, token_prefix, read_only, org_id, revoked_at IS NOT NULL \
         FROM admin_tokens WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *transaction)
    .await?;
    let (name, prefix, read_only, org_id, was_revoked) =
        target.ok_or(AdminTokenError::NotFound(id))?;
    let revocation = if was_revoked {
        Revocation::AlreadyRevoked
    } else {
        sqlx::query("UPDATE admin_tokens SET revoked_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        let before = AuditedAdminToken {
            name,
            prefix,
            read_only,
            org_id,
            status: AdminTokenStatus::Active,
        };
        let after = AuditedAdminToken {
            status: AdminTokenStatus::Revoked,
            ..before.clone()
        };
        audit::record(
            &mut transaction,
            Actor::Cli,
            Change {
                action: AuditAction::AdminTokenRevoked,
                object_id: id,
                org_id,
                old_value: before,
                new_value: after,
            },
        )
        .await?;
        Revocation::Revoked
    };
    transaction.commit().await?;
    Ok(RevokedAdminToken {
        token_id: id,
        revocation,
    })
}

/// Whether `presented` has a token's form (its marker, not too long): text without it
/// is never looked up.
pub fn could_be_a_token(presented: &str) -> bool {
    presented.starts_with(TOKEN_MARKER) && presented.len() <= MAX_PRESENTED_LEN
}

/// The active token whose text was presented, if any: looked up by its hash. Text that
/// cannot be a token ([`could_be_a_token`]) is refused without a query.
pub async fn authenticate(
    pool: &PgPool,
    presented: &str,
) -> Result<Option<AdminCaller>, sqlx::Error> {
    if !could_be_a_token(presented) {
        return Ok(None);
    }
    let row: Option<(Uuid, bool, Option<Uuid>)> = sqlx::query_as(
        "SELECT id, read_only, org_id FROM admin_tokens \
         WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash_token(presented).as_bytes().as_slice())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(token_id, read_only, org_id)| AdminCaller {
        token_id,
        read_only,
        org_id,
    }))
}

/// The hashes of every active token. Tokens are few (one per backend or dashboard),
/// so they are read whole.
pub async fn active_hashes(pool: &PgPool) -> Result<HashSet<KeyHash>, sqlx::Error> {
    let hashes: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM admin_tokens WHERE revoked_at IS NULL")
            .fetch_all(pool)
            .await?;
    Ok(hashes
        .into_iter()
        .filter_map(|hash| KeyHash::from_slice(&hash))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_has_its_marker_and_40_base62_characters() {
        let token = AdminTokenSecret::generate();
        let random = token.secret().strip_prefix(TOKEN_MARKER).unwrap();
        assert_eq!(random.len(), TOKEN_RANDOM_LEN);
        assert!(random.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(token.prefix(), &token.secret()[..12]);
        assert_ne!(token.secret(), AdminTokenSecret::generate().secret());
    }

    #[test]
    fn debug_output_hides_the_token() {
        let token = AdminTokenSecret::generate();
        let debug = format!("{token:?}");
        assert!(!debug.contains(token.secret()), "{debug}");
        assert_eq!(
            serde_json::to_value(&token).unwrap(),
            serde_json::json!(token.secret())
        );
    }
}
