//! Rate limits in the database, as operators set them: an organization's row in
//! `rate_limit_configs` (one budget shared by all its keys) and a key's own override in
//! its `rate_limit_rpm`/`rate_limit_burst` columns (counted for that key alone).
//!
//! Every write that changes a limit restamps the keys it affects (the triggers of
//! migrations 0001 and 0003), so keysync pushes the new limits to the gateways like any
//! other key change. A write that would change nothing is skipped, so setting the same
//! limit again does not restamp every key of a large organization.

use sqlx::PgPool;
use uuid::Uuid;

use crate::rate_limit::{InvalidLimit, LimitColumns, RateLimit, MAX_LIMIT_VALUE};

/// SQLSTATE of a foreign-key violation: the organization does not exist.
const FOREIGN_KEY_VIOLATION: &str = "23503";

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("organization {0} not found")]
    OrgNotFound(Uuid),
    #[error("key {0} not found")]
    KeyNotFound(Uuid),
    /// The commands validate first; this guards the library entry points.
    #[error(
        "rate limit values must be at most {MAX_LIMIT_VALUE}, and requests per minute at least 1"
    )]
    OutOfRange,
    #[error("unexpected row: {0}")]
    InvalidRow(#[from] InvalidLimit),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// What to do to a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitChange {
    /// Insert or replace: `requests_per_minute + burst` requests per one-minute window.
    Set {
        requests_per_minute: u32,
        burst: u32,
    },
    /// Remove it (an organization then has no limit; a key falls back to its
    /// organization's).
    Clear,
}

impl LimitChange {
    /// The values as the schema stores them, or `None` for [`LimitChange::Clear`].
    fn columns(self) -> Result<Option<(i32, i32)>, LimitError> {
        match self {
            LimitChange::Clear => Ok(None),
            LimitChange::Set {
                requests_per_minute,
                burst,
            } => {
                let rpm = i32::try_from(requests_per_minute)
                    .ok()
                    .filter(|&rpm| rpm > 0)
                    .ok_or(LimitError::OutOfRange)?;
                let burst = i32::try_from(burst).map_err(|_| LimitError::OutOfRange)?;
                Ok(Some((rpm, burst)))
            }
        }
    }
}

/// An organization's limit after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgLimit {
    pub org_id: Uuid,
    /// `None` when the organization has no limit (`per_key` is always false).
    pub rate_limit: Option<RateLimit>,
    /// False when the limit already was what was asked for; nothing was written.
    pub changed: bool,
}

/// A key's limit after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimit {
    pub key_id: Uuid,
    pub org_id: Uuid,
    /// The limit the key now runs under: its own (`per_key`), else its organization's,
    /// else none.
    pub rate_limit: Option<RateLimit>,
    /// False when the key's own limit already was what was asked for.
    pub changed: bool,
}

/// Sets or clears an organization's limit.
pub async fn set_org_limit(
    pool: &PgPool,
    org_id: Uuid,
    change: LimitChange,
) -> Result<OrgLimit, LimitError> {
    let columns = change.columns()?;
    let changed = match columns {
        Some((rpm, burst)) => {
            sqlx::query(
                "INSERT INTO rate_limit_configs (org_id, requests_per_minute, burst) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (org_id) DO UPDATE \
                 SET requests_per_minute = EXCLUDED.requests_per_minute, \
                     burst = EXCLUDED.burst, \
                     updated_at = now() \
                 WHERE (rate_limit_configs.requests_per_minute, rate_limit_configs.burst) \
                       IS DISTINCT FROM (EXCLUDED.requests_per_minute, EXCLUDED.burst)",
            )
            .bind(org_id)
            .bind(rpm)
            .bind(burst)
            .execute(pool)
            .await
            .map_err(|error| match &error {
                sqlx::Error::Database(db)
                    if db.code().as_deref() == Some(FOREIGN_KEY_VIOLATION) =>
                {
                    LimitError::OrgNotFound(org_id)
                }
                _ => LimitError::Database(error),
            })?
            .rows_affected()
                > 0
        }
        None => {
            let mut transaction = pool.begin().await?;
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)")
                    .bind(org_id)
                    .fetch_one(&mut *transaction)
                    .await?;
            if !exists {
                return Err(LimitError::OrgNotFound(org_id));
            }
            let deleted = sqlx::query("DELETE FROM rate_limit_configs WHERE org_id = $1")
                .bind(org_id)
                .execute(&mut *transaction)
                .await?
                .rows_affected();
            transaction.commit().await?;
            deleted > 0
        }
    };
    let rate_limit = match change {
        LimitChange::Set {
            requests_per_minute,
            burst,
        } => Some(RateLimit {
            requests_per_minute,
            burst,
            per_key: false,
        }),
        LimitChange::Clear => None,
    };
    Ok(OrgLimit {
        org_id,
        rate_limit,
        changed,
    })
}

#[derive(sqlx::FromRow)]
struct KeyLimitRow {
    org_id: Uuid,
    #[sqlx(flatten)]
    limits: LimitColumns,
}

/// Sets or clears a key's own limit, and reports the limit the key then runs under.
/// Any key may be given one, revoked and expired keys included.
pub async fn set_key_limit(
    pool: &PgPool,
    key_id: Uuid,
    change: LimitChange,
) -> Result<KeyLimit, LimitError> {
    let (rpm, burst) = change.columns()?.unzip();
    let mut transaction = pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE api_keys SET rate_limit_rpm = $2, rate_limit_burst = $3 \
         WHERE id = $1 \
           AND (rate_limit_rpm, rate_limit_burst) IS DISTINCT FROM ($2::integer, $3::integer)",
    )
    .bind(key_id)
    .bind(rpm)
    .bind(burst)
    .execute(&mut *transaction)
    .await?
    .rows_affected()
        > 0;
    let row: KeyLimitRow = sqlx::query_as(
        "SELECT k.org_id, \
                k.rate_limit_rpm AS key_rpm, k.rate_limit_burst AS key_burst, \
                r.requests_per_minute AS org_rpm, r.burst AS org_burst \
         FROM api_keys k LEFT JOIN rate_limit_configs r ON r.org_id = k.org_id \
         WHERE k.id = $1",
    )
    .bind(key_id)
    .fetch_optional(&mut *transaction)
    .await?
    .ok_or(LimitError::KeyNotFound(key_id))?;
    transaction.commit().await?;
    Ok(KeyLimit {
        key_id,
        org_id: row.org_id,
        rate_limit: row.limits.resolve()?,
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_map_to_columns_within_the_schema_range() {
        let set = |requests_per_minute, burst| LimitChange::Set {
            requests_per_minute,
            burst,
        };
        assert_eq!(set(100, 20).columns().unwrap(), Some((100, 20)));
        assert_eq!(LimitChange::Clear.columns().unwrap(), None);
        assert_eq!(
            set(MAX_LIMIT_VALUE, MAX_LIMIT_VALUE).columns().unwrap(),
            Some((i32::MAX, i32::MAX))
        );
        for (rpm, burst) in [(0, 0), (MAX_LIMIT_VALUE + 1, 0), (1, MAX_LIMIT_VALUE + 1)] {
            assert!(matches!(
                set(rpm, burst).columns(),
                Err(LimitError::OutOfRange)
            ));
        }
    }
}
