//! Rate limits, as operators set them: an organization's row in `rate_limit_configs`
//! (one budget shared by all its keys) and a key's own override in its
//! `rate_limit_rpm`/`rate_limit_burst` columns (counted for that key alone).
//!
//! Every write that changes a limit restamps the keys it affects (the triggers of
//! migrations 0001 and 0003), so keysync pushes the new limits to the gateways like any
//! other key change. A write that would change nothing is skipped, so setting the same
//! limit again does not restamp every key of a large organization, and records nothing
//! in the audit trail; a change records the limit before and after ([`AuditedLimit`]).

use keysync_contract::limit::{KeyLimit, Limit};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::actor::Actor;
use super::audit::{self, AuditAction, Change};
use super::limit_json;
use crate::key_set::limit_columns::{InvalidLimit, LimitColumns, MAX_LIMIT_VALUE};

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("organization {0} not found")]
    OrgNotFound(Uuid),
    #[error("key {0} not found")]
    KeyNotFound(Uuid),
    /// Callers validate first (the CLI names the flag); this guards the operations.
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
    Set(Limit),
    /// Remove it (an organization then has no limit; a key falls back to its
    /// organization's).
    Clear,
}

impl LimitChange {
    /// The values as the schema stores them, or `None` for [`LimitChange::Clear`].
    fn columns(self) -> Result<Option<(i32, i32)>, LimitError> {
        match self {
            LimitChange::Clear => Ok(None),
            LimitChange::Set(limit) => {
                let rpm = i32::try_from(limit.requests_per_minute)
                    .ok()
                    .filter(|&rpm| rpm > 0)
                    .ok_or(LimitError::OutOfRange)?;
                let burst = i32::try_from(limit.burst).map_err(|_| LimitError::OutOfRange)?;
                Ok(Some((rpm, burst)))
            }
        }
    }
}

/// A limit as the audit trail records it (`null` for none): an organization's, or a
/// key's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AuditedLimit {
    pub requests_per_minute: i32,
    pub burst: i32,
}

impl AuditedLimit {
    /// From a key's or an organization's columns; a NULL burst is 0.
    fn of_columns(rpm: Option<i32>, burst: Option<i32>) -> Option<AuditedLimit> {
        rpm.map(|requests_per_minute| AuditedLimit {
            requests_per_minute,
            burst: burst.unwrap_or(0),
        })
    }

    /// From what [`LimitChange::columns`] gives.
    fn of_pair(columns: Option<(i32, i32)>) -> Option<AuditedLimit> {
        let (rpm, burst) = columns.unzip();
        AuditedLimit::of_columns(rpm, burst)
    }
}

/// An organization's limit after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrgLimitOutcome {
    pub org_id: Uuid,
    /// `null` when the organization has no limit.
    #[serde(serialize_with = "limit_json::org_limit")]
    #[schema(value_type = Option<limit_json::OrgLimitJson>)]
    pub rate_limit: Option<Limit>,
    /// False when the limit already was what was asked for; nothing was written.
    pub changed: bool,
}

/// A key's limit after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyLimitOutcome {
    pub key_id: Uuid,
    pub org_id: Uuid,
    /// The limit the key now runs under: its own (`per_key`), else its organization's,
    /// else none (`null`).
    #[serde(serialize_with = "limit_json::key_limit")]
    #[schema(value_type = Option<limit_json::KeyLimitJson>)]
    pub rate_limit: Option<KeyLimit>,
    /// False when the key's own limit already was what was asked for.
    pub changed: bool,
}

/// Sets or clears an organization's limit, and records the change in the audit trail.
/// A set limit's row records the actor; a cleared limit's row is deleted, so only the
/// audit trail (and the log) says who cleared it.
pub async fn set_org_limit(
    pool: &PgPool,
    actor: Actor,
    org_id: Uuid,
    change: LimitChange,
) -> Result<OrgLimitOutcome, LimitError> {
    let columns = change.columns()?;
    let mut transaction = pool.begin().await?;
    // Locks the organization, so that changes to its limit take turns and each records
    // the limit it replaced. NO KEY UPDATE: creating its keys (a foreign key check) need
    // not wait.
    let current: Option<(Option<i32>, Option<i32>)> = sqlx::query_as(
        "SELECT r.requests_per_minute, r.burst \
         FROM organizations o LEFT JOIN rate_limit_configs r ON r.org_id = o.id \
         WHERE o.id = $1 FOR NO KEY UPDATE OF o",
    )
    .bind(org_id)
    .fetch_optional(&mut *transaction)
    .await?;
    let (rpm, burst) = current.ok_or(LimitError::OrgNotFound(org_id))?;
    let old = rpm.zip(burst);
    let changed = old != columns;
    if changed {
        match columns {
            Some((rpm, burst)) => {
                sqlx::query(
                    "INSERT INTO rate_limit_configs \
                         (org_id, requests_per_minute, burst, changed_by_token) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (org_id) DO UPDATE \
                         SET requests_per_minute = EXCLUDED.requests_per_minute, \
                             burst = EXCLUDED.burst, \
                             changed_by_token = EXCLUDED.changed_by_token, \
                             updated_at = now()",
                )
                .bind(org_id)
                .bind(rpm)
                .bind(burst)
                .bind(actor.token_id())
                .execute(&mut *transaction)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM rate_limit_configs WHERE org_id = $1")
                    .bind(org_id)
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        audit::record(
            &mut transaction,
            actor,
            Change {
                action: AuditAction::OrgLimitSet,
                object_id: org_id,
                org_id: Some(org_id),
                old_value: AuditedLimit::of_columns(rpm, burst),
                new_value: AuditedLimit::of_pair(columns),
            },
        )
        .await?;
    }
    transaction.commit().await?;
    let rate_limit = match change {
        LimitChange::Set(limit) => Some(limit),
        LimitChange::Clear => None,
    };
    Ok(OrgLimitOutcome {
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

/// Sets or clears a key's own limit, records the change in the audit trail, and reports
/// the limit the key then runs under. Any key may be given one, revoked and expired keys
/// included.
pub async fn set_key_limit(
    pool: &PgPool,
    actor: Actor,
    key_id: Uuid,
    change: LimitChange,
) -> Result<KeyLimitOutcome, LimitError> {
    let (rpm, burst) = change.columns()?.unzip();
    let mut transaction = pool.begin().await?;
    // Locked, so that changes to the key's limit take turns and each records the limit
    // it replaced.
    let current: Option<(Uuid, Option<i32>, Option<i32>)> = sqlx::query_as(
        "SELECT org_id, rate_limit_rpm, rate_limit_burst FROM api_keys \
         WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(key_id)
    .fetch_optional(&mut *transaction)
    .await?;
    let (org_id, old_rpm, old_burst) = current.ok_or(LimitError::KeyNotFound(key_id))?;
    let changed = (old_rpm, old_burst) != (rpm, burst);
    if changed {
        sqlx::query(
            "UPDATE api_keys \
             SET rate_limit_rpm = $2, rate_limit_burst = $3, changed_by_token = $4 \
             WHERE id = $1",
        )
        .bind(key_id)
        .bind(rpm)
        .bind(burst)
        .bind(actor.token_id())
        .execute(&mut *transaction)
        .await?;
        audit::record(
            &mut transaction,
            actor,
            Change {
                action: AuditAction::KeyLimitSet,
                object_id: key_id,
                org_id: Some(org_id),
                old_value: AuditedLimit::of_columns(old_rpm, old_burst),
                new_value: AuditedLimit::of_columns(rpm, burst),
            },
        )
        .await?;
    }
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
    Ok(KeyLimitOutcome {
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
    fn audited_limits_read_a_null_burst_as_zero_and_no_limit_as_null() {
        let limit = |requests_per_minute, burst| AuditedLimit {
            requests_per_minute,
            burst,
        };
        assert_eq!(AuditedLimit::of_columns(None, None), None);
        assert_eq!(AuditedLimit::of_columns(Some(10), None), Some(limit(10, 0)));
        assert_eq!(AuditedLimit::of_pair(Some((100, 20))), Some(limit(100, 20)));
        assert_eq!(AuditedLimit::of_pair(None), None);
        assert_eq!(
            serde_json::to_value(AuditedLimit::of_pair(Some((100, 20)))).unwrap(),
            serde_json::json!({"requests_per_minute": 100, "burst": 20})
        );
    }

    #[test]
    fn changes_map_to_columns_within_the_schema_range() {
        let set = |requests_per_minute, burst| {
            LimitChange::Set(Limit {
                requests_per_minute,
                burst,
            })
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
