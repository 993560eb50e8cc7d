//! API keys in the database, as operators manage them: create (hash and prefix only),
//! list (with the rate limit each runs under), rotate, revoke.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::api_key::{GeneratedKey, KeyEnvironment, KeyHash};
use crate::rate_limit::{InvalidLimit, LimitColumns, RateLimit};

/// SQLSTATE of a foreign-key violation: the organization does not exist.
const FOREIGN_KEY_VIOLATION: &str = "23503";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("organization {0} not found")]
    OrgNotFound(Uuid),
    #[error("key {0} not found")]
    NotFound(Uuid),
    #[error("key {0} is revoked; only an active key can be rotated")]
    Revoked(Uuid),
    #[error("key {0} has expired; only an active key can be rotated (create a new one)")]
    Expired(Uuid),
    #[error("key {id} has prefix '{prefix}', which is neither sk_live_ nor sk_test_")]
    UnknownEnvironment { id: Uuid, prefix: String },
    #[error("unexpected row: {0}")]
    InvalidRow(#[from] InvalidLimit),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What an operator sees of a key; never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyInfo {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub active: bool,
}

/// A key as `keys list` shows it: what an operator sees of it and the rate limit it
/// runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedKey {
    pub info: ApiKeyInfo,
    /// Its own limit (`per_key`), else its organization's, else none.
    pub rate_limit: Option<RateLimit>,
}

#[derive(sqlx::FromRow)]
struct ListedKeyRow {
    #[sqlx(flatten)]
    info: ApiKeyInfo,
    #[sqlx(flatten)]
    limits: LimitColumns,
}

/// Whether a key authenticates, as shown in listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        }
    }
}

impl ApiKeyInfo {
    /// Revocation wins over expiry: it is the operator's explicit act.
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        if !self.active {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }
}

/// A key to insert: its hash and display prefix, not the key.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub key_hash: KeyHash,
    pub key_prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Outcome of a revocation; revoking twice is not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    AlreadyRevoked,
}

/// What happens to the key being replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKeyFate {
    /// Revoked in the same transaction (`--grace 0s`).
    RevokeNow,
    /// Keeps working until then, unless it already expires sooner.
    ExpireBy(DateTime<Utc>),
}

/// The result of a rotation: the new key (shown once) and the old key's end.
#[derive(Debug)]
pub struct Rotation {
    pub key: GeneratedKey,
    pub new_key: ApiKeyInfo,
    pub old_key_id: Uuid,
    /// When the old key stops working: its (possibly kept) expiry, or its revocation.
    pub old_key_stops_at: DateTime<Utc>,
    pub old_key_revoked: bool,
}

#[derive(sqlx::FromRow)]
struct RotatedRow {
    org_id: Uuid,
    name: String,
    key_prefix: String,
    expires_at: Option<DateTime<Utc>>,
    active: bool,
    expired: bool,
    rate_limit_rpm: Option<i32>,
    rate_limit_burst: Option<i32>,
}

const COLUMNS: &str = "id, org_id, name, key_prefix, created_at, expires_at, revoked_at, active";

pub async fn create(pool: &PgPool, key: &NewKey) -> Result<ApiKeyInfo, KeyError> {
    sqlx::query_as::<_, ApiKeyInfo>(&format!(
        "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(key.id)
    .bind(key.org_id)
    .bind(&key.name)
    .bind(key.key_hash.as_slice())
    .bind(&key.key_prefix)
    .bind(key.expires_at)
    .fetch_one(pool)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(FOREIGN_KEY_VIOLATION) => {
            KeyError::OrgNotFound(key.org_id)
        }
        _ => KeyError::Database(error),
    })
}

/// The organization's keys, oldest first; an unknown organization is an error rather
/// than an empty list, so a typo in the id does not look like "no keys".
pub async fn list_for_org(pool: &PgPool, org_id: Uuid) -> Result<Vec<ListedKey>, KeyError> {
    let org_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)")
            .bind(org_id)
            .fetch_one(pool)
            .await?;
    if !org_exists {
        return Err(KeyError::OrgNotFound(org_id));
    }
    sqlx::query_as::<_, ListedKeyRow>(
        "SELECT k.id, k.org_id, k.name, k.key_prefix, k.created_at, k.expires_at, \
                k.revoked_at, k.active, \
                k.rate_limit_rpm AS key_rpm, k.rate_limit_burst AS key_burst, \
                r.requests_per_minute AS org_rpm, r.burst AS org_burst \
         FROM api_keys k LEFT JOIN rate_limit_configs r ON r.org_id = k.org_id \
         WHERE k.org_id = $1 ORDER BY k.created_at, k.id",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| {
        Ok(ListedKey {
            rate_limit: row.limits.resolve()?,
            info: row.info,
        })
    })
    .collect()
}

/// Replaces key `old_id` in one transaction: locks it (it must exist, be active and
/// unexpired), inserts a new key for the same organization, name, environment and own
/// rate limit (if any) with `rotated_from` pointing at it, and revokes the old key or
/// moves its expiry to the end of the grace period. Both writes share one revision, so
/// keysync sees them together.
pub async fn rotate(
    pool: &PgPool,
    old_id: Uuid,
    new_id: Uuid,
    new_expires_at: Option<DateTime<Utc>>,
    fate: OldKeyFate,
) -> Result<Rotation, KeyError> {
    let mut transaction = pool.begin().await?;
    let old: RotatedRow = sqlx::query_as(
        "SELECT org_id, name, key_prefix, expires_at, active, \
                COALESCE(expires_at <= now(), false) AS expired, \
                rate_limit_rpm, rate_limit_burst \
         FROM api_keys WHERE id = $1 FOR UPDATE",
    )
    .bind(old_id)
    .fetch_optional(&mut *transaction)
    .await?
    .ok_or(KeyError::NotFound(old_id))?;
    if !old.active {
        return Err(KeyError::Revoked(old_id));
    }
    if old.expired {
        return Err(KeyError::Expired(old_id));
    }
    let environment =
        KeyEnvironment::of_key(&old.key_prefix).ok_or_else(|| KeyError::UnknownEnvironment {
            id: old_id,
            prefix: old.key_prefix.clone(),
        })?;

    let key = GeneratedKey::generate(environment);
    let new_key = sqlx::query_as::<_, ApiKeyInfo>(&format!(
        "INSERT INTO api_keys \
             (id, org_id, name, key_hash, key_prefix, expires_at, rotated_from, \
              rate_limit_rpm, rate_limit_burst) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    ))
    .bind(new_id)
    .bind(old.org_id)
    .bind(&old.name)
    .bind(key.hash().as_slice())
    .bind(key.prefix())
    .bind(new_expires_at)
    .bind(old_id)
    .bind(old.rate_limit_rpm)
    .bind(old.rate_limit_burst)
    .fetch_one(&mut *transaction)
    .await?;

    let (old_key_stops_at, old_key_revoked) = match fate {
        OldKeyFate::RevokeNow => {
            let revoked_at: DateTime<Utc> = sqlx::query_scalar(
                "UPDATE api_keys SET active = false, revoked_at = now() \
                 WHERE id = $1 RETURNING revoked_at",
            )
            .bind(old_id)
            .fetch_one(&mut *transaction)
            .await?;
            (revoked_at, true)
        }
        OldKeyFate::ExpireBy(at) => match old.expires_at {
            Some(sooner) if sooner <= at => (sooner, false),
            _ => {
                sqlx::query("UPDATE api_keys SET expires_at = $2 WHERE id = $1")
                    .bind(old_id)
                    .bind(at)
                    .execute(&mut *transaction)
                    .await?;
                (at, false)
            }
        },
    };
    transaction.commit().await?;
    Ok(Rotation {
        key,
        new_key,
        old_key_id: old_id,
        old_key_stops_at,
        old_key_revoked,
    })
}

/// Marks the key inactive; keysync drops it from every store at the next catch-up.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<Revocation, KeyError> {
    let revoked: Option<Uuid> = sqlx::query_scalar(
        "UPDATE api_keys SET active = false, revoked_at = now() \
         WHERE id = $1 AND active RETURNING id",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    if revoked.is_some() {
        return Ok(Revocation::Revoked);
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await?;
    if exists {
        Ok(Revocation::AlreadyRevoked)
    } else {
        Err(KeyError::NotFound(id))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn info(active: bool, expires_at: Option<DateTime<Utc>>) -> ApiKeyInfo {
        ApiKeyInfo {
            id: Uuid::nil(),
            org_id: Uuid::nil(),
            name: "k".to_owned(),
            key_prefix: "sk_live_AbCd".to_owned(),
            created_at: Utc::now(),
            expires_at,
            revoked_at: None,
            active,
        }
    }

    #[test]
    fn status_reflects_revocation_then_expiry() {
        let now = Utc::now();
        let past = Some(now - TimeDelta::seconds(1));
        let future = Some(now + TimeDelta::seconds(60));
        assert_eq!(info(true, None).status(now), KeyStatus::Active);
        assert_eq!(info(true, future).status(now), KeyStatus::Active);
        assert_eq!(info(true, past).status(now), KeyStatus::Expired);
        assert_eq!(info(true, Some(now)).status(now), KeyStatus::Expired);
        assert_eq!(info(false, past).status(now), KeyStatus::Revoked);
        assert_eq!(info(false, None).status(now).as_str(), "revoked");
    }
}
