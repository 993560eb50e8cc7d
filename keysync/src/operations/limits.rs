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
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::actor::Actor;
use super::audit::AuditAction;
use super::audited_write::{self, AuditedWrite};
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
    let write = OrgLimitWrite {
        org_id,
        columns: change.columns()?,
    };
    let applied = audited_write::apply(pool, actor, &write).await?;
    let rate_limit = match change {
        LimitChange::Set(limit) => Some(limit),
        LimitChange::Clear => None,
    };
    Ok(OrgLimitOutcome {
        org_id,
        rate_limit,
        changed: applied.changed,
    })
}

/// An organization's row in `rate_limit_configs`, as [`LimitChange::columns`] gives it.
struct OrgLimitWrite {
    org_id: Uuid,
    columns: Option<(i32, i32)>,
}

impl AuditedWrite for OrgLimitWrite {
    type Value = Option<(i32, i32)>;
    type Audited = Option<AuditedLimit>;
    type Answer = ();
    type Error = LimitError;

    fn action(&self) -> AuditAction {
        AuditAction::OrgLimitSet
    }

    fn object_id(&self) -> Uuid {
        self.org_id
    }

    async fn lock(&self, connection: &mut PgConnection) -> Result<Uuid, LimitError> {
        audited_write::lock_org(connection, self.org_id)
            .await?
            .ok_or(LimitError::OrgNotFound(self.org_id))?;
        Ok(self.org_id)
    }

    async fn read(
        &self,
        connection: &mut PgConnection,
        _: Uuid,
    ) -> Result<Option<(i32, i32)>, LimitError> {
        Ok(sqlx::query_as(
            "SELECT requests_per_minute, burst FROM rate_limit_configs WHERE org_id = $1",
        )
        .bind(self.org_id)
        .fetch_optional(connection)
        .await?)
    }

    fn wanted(&self, _: &Option<(i32, i32)>) -> Option<(i32, i32)> {
        self.columns
    }

    async fn write(
        &self,
        connection: &mut PgConnection,
        actor: Actor,
        _: Uuid,
        _: &Option<(i32, i32)>,
        new: &Option<(i32, i32)>,
    ) -> Result<(), LimitError> {
        match *new {
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
                .bind(self.org_id)
                .bind(rpm)
                .bind(burst)
                .bind(actor.token_id())
                .execute(connection)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM rate_limit_configs WHERE org_id = $1")
                    .bind(self.org_id)
                    .execute(connection)
                    .await?;
            }
        }
        Ok(())
    }

    fn audited(&self, value: &Option<(i32, i32)>) -> Option<AuditedLimit> {
        AuditedLimit::of_pair(*value)
    }

    async fn answer(
        &self,
        _: &mut PgConnection,
        _: Uuid,
        _: &Option<(i32, i32)>,
    ) -> Result<(), LimitError> {
        Ok(())
    }
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
    let write = KeyLimitWrite { key_id, rpm, burst };
    let applied = audited_write::apply(pool, actor, &write).await?;
    let row = applied.answer;
    Ok(KeyLimitOutcome {
        key_id,
        org_id: row.org_id,
        rate_limit: row.limits.resolve()?,
        changed: applied.changed,
    })
}

/// A key's `rate_limit_rpm` and `rate_limit_burst` columns.
struct KeyLimitWrite {
    key_id: Uuid,
    rpm: Option<i32>,
    burst: Option<i32>,
}

impl AuditedWrite for KeyLimitWrite {
    type Value = (Option<i32>, Option<i32>);
    type Audited = Option<AuditedLimit>;
    /// The key's columns and its organization's, to resolve the limit it runs under.
    type Answer = KeyLimitRow;
    type Error = LimitError;

    fn action(&self) -> AuditAction {
        AuditAction::KeyLimitSet
    }

    fn object_id(&self) -> Uuid {
        self.key_id
    }

    async fn lock(&self, connection: &mut PgConnection) -> Result<Uuid, LimitError> {
        audited_write::lock_key(connection, self.key_id)
            .await?
            .ok_or(LimitError::KeyNotFound(self.key_id))
    }

    async fn read(
        &self,
        connection: &mut PgConnection,
        _: Uuid,
    ) -> Result<(Option<i32>, Option<i32>), LimitError> {
        Ok(
            sqlx::query_as("SELECT rate_limit_rpm, rate_limit_burst FROM api_keys WHERE id = $1")
                .bind(self.key_id)
                .fetch_one(connection)
                .await?,
        )
    }

    fn wanted(&self, _: &(Option<i32>, Option<i32>)) -> (Option<i32>, Option<i32>) {
        (self.rpm, self.burst)
    }

    async fn write(
        &self,
        connection: &mut PgConnection,
        actor: Actor,
        _: Uuid,
        _: &(Option<i32>, Option<i32>),
        &(rpm, burst): &(Option<i32>, Option<i32>),
    ) -> Result<(), LimitError> {
        sqlx::query(
            "UPDATE api_keys \
             SET rate_limit_rpm = $2, rate_limit_burst = $3, changed_by_token = $4 \
             WHERE id = $1",
        )
        .bind(self.key_id)
        .bind(rpm)
        .bind(burst)
        .bind(actor.token_id())
        .execute(connection)
        .await?;
        Ok(())
    }

    fn audited(&self, &(rpm, burst): &(Option<i32>, Option<i32>)) -> Option<AuditedLimit> {
        AuditedLimit::of_columns(rpm, burst)
    }

    async fn answer(
        &self,
        connection: &mut PgConnection,
        _: Uuid,
        _: &(Option<i32>, Option<i32>),
    ) -> Result<KeyLimitRow, LimitError> {
        sqlx::query_as(
            "SELECT k.org_id, \
                    k.rate_limit_rpm AS key_rpm, k.rate_limit_burst AS key_burst, \
                    r.requests_per_minute AS org_rpm, r.burst AS org_burst \
             FROM api_keys k LEFT JOIN rate_limit_configs r ON r.org_id = k.org_id \
             WHERE k.id = $1",
        )
        .bind(self.key_id)
        .fetch_optional(connection)
        .await?
        .ok_or(LimitError::KeyNotFound(self.key_id))
    }
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
