//! Monthly quotas, as operators set them: a row of `quotas` (migration 0010) for an
//! organization (with its reset day) or for one key (which follows its organization's
//! reset day, 1 when the organization has no quota), and how listings show a quota's
//! use this period ([`QuotaUse`]).
//!
//! Each change runs in one transaction that locks the organization (or the key, then
//! its organization), writes the row, takes a new `quota_revision` (so gateways fetch
//! the list of quotas again), records the values before and after in the audit trail,
//! and, when a quota is set or a reset day moves, starts this period's `quota_usage`
//! row from the hourly rollup: requests served before the quota existed count against
//! it, and its alerts are armed again (80% and 100% of the new quota are announced at
//! the next flush that finds them reached). A write that would change nothing is skipped and records nothing.

use chrono::{DateTime, Utc};
use keysync_contract::subject::SubjectKind;
use serde::Serialize;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::QueryAs;
use sqlx::{FromRow, PgConnection, PgPool, Postgres, SqlSafeStr};
use uuid::Uuid;

use super::actor::Actor;
use super::audit::AuditAction;
use super::audited_write::{self, AuditedWrite};
use super::timestamp::Timestamp;
use crate::quota::period::{Period, RESET_DAYS};
use crate::quota::MAX_MONTHLY;
use crate::usage::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("organization {0} not found")]
    OrgNotFound(Uuid),
    #[error("key {0} not found")]
    KeyNotFound(Uuid),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A quota value outside what the schema stores; callers name the flag or field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidQuota {
    #[error("expected a whole number from 1 to {MAX_MONTHLY}")]
    Monthly,
    #[error("expected a day of the month from 1 to 28")]
    ResetDay,
}

/// Requests a month, checked: 1 to [`MAX_MONTHLY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Monthly(i64);

impl Monthly {
    pub fn new(value: i64) -> Result<Monthly, InvalidQuota> {
        (1..=MAX_MONTHLY)
            .contains(&value)
            .then_some(Monthly(value))
            .ok_or(InvalidQuota::Monthly)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// The day of the month an organization's quota period starts (UTC midnight), checked:
/// 1 to 28, so that every month has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetDay(u8);

impl ResetDay {
    /// The day of an organization without a quota, and the default.
    pub const FIRST: ResetDay = ResetDay(1);

    pub fn new(value: i64) -> Result<ResetDay, InvalidQuota> {
        u8::try_from(value)
            .ok()
            .filter(|day| RESET_DAYS.contains(day))
            .map(ResetDay)
            .ok_or(InvalidQuota::ResetDay)
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// A stored day; the schema's CHECK keeps it in range, and a day out of it would be
    /// taken as the nearest valid one by [`Period::containing`] anyway.
    fn of_column(day: i16) -> ResetDay {
        let day = u8::try_from(day.clamp(1, 28)).unwrap_or(1);
        ResetDay(day)
    }

    fn column(self) -> i16 {
        i16::from(self.0)
    }
}

/// What to do to an organization's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgQuotaChange {
    /// Insert or replace; without a reset day, the current one is kept (1 for a new
    /// quota).
    Set {
        monthly: Monthly,
        reset_day: Option<ResetDay>,
    },
    Clear,
}

/// What to do to a key's own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyQuotaChange {
    Set(Monthly),
    Clear,
}

/// A quota and its use in the period that contains the time it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QuotaUse {
    /// Requests allowed per period.
    #[schema(minimum = 1, maximum = 1000000000000000_i64)]
    pub monthly: i64,
    /// Requests served (forwarded) this period, as keysync last counted them.
    pub used: i64,
    /// The day of the month (UTC midnight) the period starts; a key's is its
    /// organization's.
    #[schema(minimum = 1, maximum = 28)]
    pub reset_day: u8,
    #[schema(value_type = String, format = DateTime)]
    pub period_start: Timestamp,
    /// When the period ends and the count starts over.
    #[schema(value_type = String, format = DateTime)]
    pub resets_at: Timestamp,
}

impl QuotaUse {
    fn new(monthly: i64, used: i64, reset_day: ResetDay, now: DateTime<Utc>) -> QuotaUse {
        let period = Period::containing(reset_day.get(), now);
        QuotaUse {
            monthly,
            used,
            reset_day: reset_day.get(),
            period_start: Timestamp(period.start),
            resets_at: Timestamp(period.end),
        }
    }
}

/// An organization's quota after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrgQuotaOutcome {
    pub org_id: Uuid,
    /// `null` when the organization has no quota.
    pub quota: Option<QuotaUse>,
    /// False when the quota already was what was asked for; nothing was written.
    pub changed: bool,
}

/// A key's own quota after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyQuotaOutcome {
    pub key_id: Uuid,
    pub org_id: Uuid,
    /// `null` when the key has no quota of its own.
    pub quota: Option<QuotaUse>,
    /// False when the key's quota already was what was asked for.
    pub changed: bool,
}

/// An organization's quota as the audit trail records it (`null` for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct AuditedOrgQuota {
    monthly: i64,
    reset_day: u8,
}

/// A key's own quota as the audit trail records it (`null` for none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct AuditedKeyQuota {
    monthly: i64,
}

/// Sets or clears an organization's quota and records the change. A new reset day also
/// moves the periods of its keys' quotas, so their usage rows are started too.
pub async fn set_org_quota(
    pool: &PgPool,
    actor: Actor,
    org_id: Uuid,
    change: OrgQuotaChange,
    now: DateTime<Utc>,
) -> Result<OrgQuotaOutcome, QuotaError> {
    let write = OrgQuotaWrite {
        org_id,
        change,
        now,
    };
    let applied = audited_write::apply(pool, actor, &write).await?;
    Ok(OrgQuotaOutcome {
        org_id,
        quota: applied.answer,
        changed: applied.changed,
    })
}

/// An organization's row of `quotas`. The organization's lock is also the one its keys'
/// quota changes share, so they see the reset day that is committed.
struct OrgQuotaWrite {
    org_id: Uuid,
    change: OrgQuotaChange,
    now: DateTime<Utc>,
}

impl OrgQuotaWrite {
    /// The day the organization's keys follow: its own, else the first.
    fn day_of(quota: Option<AuditedOrgQuota>) -> ResetDay {
        ResetDay(quota.map_or(ResetDay::FIRST.get(), |quota| quota.reset_day))
    }
}

impl AuditedWrite for OrgQuotaWrite {
    type Value = Option<AuditedOrgQuota>;
    type Audited = Option<AuditedOrgQuota>;
    /// The quota and its use this period.
    type Answer = Option<QuotaUse>;
    type Error = QuotaError;

    fn action(&self) -> AuditAction {
        AuditAction::OrgQuotaSet
    }

    fn object_id(&self) -> Uuid {
        self.org_id
    }

    async fn lock(&self, connection: &mut PgConnection) -> Result<Uuid, QuotaError> {
        audited_write::lock_org(connection, self.org_id)
            .await?
            .ok_or(QuotaError::OrgNotFound(self.org_id))?;
        Ok(self.org_id)
    }

    async fn read(
        &self,
        connection: &mut PgConnection,
        _: Uuid,
    ) -> Result<Option<AuditedOrgQuota>, QuotaError> {
        let current: Option<(i64, i16)> = sqlx::query_as(
            "SELECT monthly_limit, reset_day FROM quotas \
             WHERE subject_kind = $1 AND subject_id = $2",
        )
        .bind(i16::from(SubjectKind::Org.code()))
        .bind(self.org_id)
        .fetch_optional(connection)
        .await?;
        Ok(current.map(|(monthly, day)| AuditedOrgQuota {
            monthly,
            reset_day: ResetDay::of_column(day).get(),
        }))
    }

    fn wanted(&self, current: &Option<AuditedOrgQuota>) -> Option<AuditedOrgQuota> {
        match self.change {
            OrgQuotaChange::Set { monthly, reset_day } => Some(AuditedOrgQuota {
                monthly: monthly.get(),
                reset_day: reset_day
                    .or(current.map(|quota| ResetDay(quota.reset_day)))
                    .unwrap_or(ResetDay::FIRST)
                    .get(),
            }),
            OrgQuotaChange::Clear => None,
        }
    }

    async fn write(
        &self,
        connection: &mut PgConnection,
        _: Actor,
        org_id: Uuid,
        old: &Option<AuditedOrgQuota>,
        new: &Option<AuditedOrgQuota>,
    ) -> Result<(), QuotaError> {
        let (old_day, new_day) = (Self::day_of(*old), Self::day_of(*new));
        let period = Period::containing(new_day.get(), self.now);
        match new {
            Some(quota) => {
                sqlx::query(
                    "INSERT INTO quotas (subject_kind, subject_id, org_id, monthly_limit, \
                         reset_day) \
                     VALUES ($1, $2, $2, $3, $4) \
                     ON CONFLICT (subject_kind, subject_id) DO UPDATE \
                         SET monthly_limit = EXCLUDED.monthly_limit, \
                             reset_day = EXCLUDED.reset_day, updated_at = now()",
                )
                .bind(i16::from(SubjectKind::Org.code()))
                .bind(org_id)
                .bind(quota.monthly)
                .bind(new_day.column())
                .execute(&mut *connection)
                .await?;
                start_usage(connection, SubjectKind::Org, org_id, None, period).await?;
            }
            None => {
                sqlx::query("DELETE FROM quotas WHERE subject_kind = $1 AND subject_id = $2")
                    .bind(i16::from(SubjectKind::Org.code()))
                    .bind(org_id)
                    .execute(&mut *connection)
                    .await?;
            }
        }
        if old_day != new_day {
            start_usage(connection, SubjectKind::Key, org_id, None, period).await?;
        }
        next_revision(connection).await?;
        Ok(())
    }

    fn audited(&self, value: &Option<AuditedOrgQuota>) -> Option<AuditedOrgQuota> {
        *value
    }

    async fn answer(
        &self,
        connection: &mut PgConnection,
        org_id: Uuid,
        value: &Option<AuditedOrgQuota>,
    ) -> Result<Option<QuotaUse>, QuotaError> {
        let Some(quota) = value else {
            return Ok(None);
        };
        let day = Self::day_of(*value);
        let period = Period::containing(day.get(), self.now);
        let used = used(connection, SubjectKind::Org, org_id, period).await?;
        Ok(Some(QuotaUse::new(quota.monthly, used, day, self.now)))
    }
}

/// Sets or clears a key's own quota and records the change. Any key may be given one,
/// revoked and expired keys included (like limits).
pub async fn set_key_quota(
    pool: &PgPool,
    actor: Actor,
    key_id: Uuid,
    change: KeyQuotaChange,
    now: DateTime<Utc>,
) -> Result<KeyQuotaOutcome, QuotaError> {
    let write = KeyQuotaWrite {
        key_id,
        change,
        now,
    };
    let applied = audited_write::apply(pool, actor, &write).await?;
    Ok(KeyQuotaOutcome {
        key_id,
        org_id: applied.org_id,
        quota: applied.answer,
        changed: applied.changed,
    })
}

/// A key's row of `quotas`.
struct KeyQuotaWrite {
    key_id: Uuid,
    change: KeyQuotaChange,
    now: DateTime<Utc>,
}

/// A key's own quota, and the reset day it follows (its organization's, unchanged by
/// the key's change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyQuota {
    monthly: Option<i64>,
    reset_day: ResetDay,
}

impl AuditedWrite for KeyQuotaWrite {
    type Value = KeyQuota;
    type Audited = Option<AuditedKeyQuota>;
    /// The quota and its use this period.
    type Answer = Option<QuotaUse>;
    type Error = QuotaError;

    fn action(&self) -> AuditAction {
        AuditAction::KeyQuotaSet
    }

    fn object_id(&self) -> Uuid {
        self.key_id
    }

    async fn lock(&self, connection: &mut PgConnection) -> Result<Uuid, QuotaError> {
        let org_id = audited_write::lock_key(&mut *connection, self.key_id)
            .await?
            .ok_or(QuotaError::KeyNotFound(self.key_id))?;
        // Shares the organization's lock with its quota changes: a reset day that moves
        // while this runs would start the usage row of the wrong period.
        sqlx::query("SELECT 1 FROM organizations WHERE id = $1 FOR SHARE")
            .bind(org_id)
            .execute(connection)
            .await?;
        Ok(org_id)
    }

    async fn read(
        &self,
        connection: &mut PgConnection,
        org_id: Uuid,
    ) -> Result<KeyQuota, QuotaError> {
        let org_day: Option<i16> = sqlx::query_scalar(
            "SELECT reset_day FROM quotas WHERE subject_kind = $1 AND subject_id = $2",
        )
        .bind(i16::from(SubjectKind::Org.code()))
        .bind(org_id)
        .fetch_optional(&mut *connection)
        .await?
        .flatten();
        let monthly: Option<i64> = sqlx::query_scalar(
            "SELECT monthly_limit FROM quotas WHERE subject_kind = $1 AND subject_id = $2",
        )
        .bind(i16::from(SubjectKind::Key.code()))
        .bind(self.key_id)
        .fetch_optional(connection)
        .await?;
        Ok(KeyQuota {
            monthly,
            reset_day: org_day.map_or(ResetDay::FIRST, ResetDay::of_column),
        })
    }

    fn wanted(&self, current: &KeyQuota) -> KeyQuota {
        let monthly = match self.change {
            KeyQuotaChange::Set(monthly) => Some(monthly.get()),
            KeyQuotaChange::Clear => None,
        };
        KeyQuota {
            monthly,
            ..*current
        }
    }

    async fn write(
        &self,
        connection: &mut PgConnection,
        _: Actor,
        org_id: Uuid,
        _: &KeyQuota,
        new: &KeyQuota,
    ) -> Result<(), QuotaError> {
        match new.monthly {
            Some(monthly) => {
                sqlx::query(
                    "INSERT INTO quotas (subject_kind, subject_id, org_id, monthly_limit) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (subject_kind, subject_id) DO UPDATE \
                         SET monthly_limit = EXCLUDED.monthly_limit, updated_at = now()",
                )
                .bind(i16::from(SubjectKind::Key.code()))
                .bind(self.key_id)
                .bind(org_id)
                .bind(monthly)
                .execute(&mut *connection)
                .await?;
                let period = Period::containing(new.reset_day.get(), self.now);
                start_usage(
                    connection,
                    SubjectKind::Key,
                    org_id,
                    Some(self.key_id),
                    period,
                )
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM quotas WHERE subject_kind = $1 AND subject_id = $2")
                    .bind(i16::from(SubjectKind::Key.code()))
                    .bind(self.key_id)
                    .execute(&mut *connection)
                    .await?;
            }
        }
        next_revision(connection).await?;
        Ok(())
    }

    fn audited(&self, value: &KeyQuota) -> Option<AuditedKeyQuota> {
        value.monthly.map(|monthly| AuditedKeyQuota { monthly })
    }

    async fn answer(
        &self,
        connection: &mut PgConnection,
        _: Uuid,
        value: &KeyQuota,
    ) -> Result<Option<QuotaUse>, QuotaError> {
        let Some(monthly) = value.monthly else {
            return Ok(None);
        };
        let period = Period::containing(value.reset_day.get(), self.now);
        let used = used(connection, SubjectKind::Key, self.key_id, period).await?;
        Ok(Some(QuotaUse::new(
            monthly,
            used,
            value.reset_day,
            self.now,
        )))
    }
}

/// Tells the gateways that the list of quotas changed.
async fn next_revision(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT nextval('quota_revision')")
        .execute(connection)
        .await?;
    Ok(())
}

/// Starts `period`'s usage rows of the organization's quotas of `kind` (only `key`'s,
/// when given) from the hourly rollup, so requests served before a quota was set, or
/// before its period moved, count against it. Only forwarded requests (outcomes other
/// and 2xx to 5xx) use a quota. A row the usage flushes already keep is only ever
/// raised, never lowered.
async fn start_usage(
    connection: &mut PgConnection,
    kind: SubjectKind,
    org_id: Uuid,
    key_id: Option<Uuid>,
    period: Period,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO quota_usage (subject_kind, subject_id, period_start, used) \
         SELECT q.subject_kind, q.subject_id, $4, coalesce(sum(u.requests), 0)::bigint \
         FROM quotas q \
         LEFT JOIN usage_hourly u ON u.org_id = q.org_id \
             AND (q.subject_kind = $8 OR u.key_id = q.subject_id) \
             AND u.hour >= $4 AND u.hour < $5 AND u.outcome BETWEEN $6 AND $7 \
         WHERE q.org_id = $1 AND q.subject_kind = $2 \
             AND ($3::uuid IS NULL OR q.subject_id = $3) \
         GROUP BY q.subject_kind, q.subject_id \
         ON CONFLICT (subject_kind, subject_id, period_start) DO UPDATE \
             SET used = GREATEST(quota_usage.used, EXCLUDED.used), alerted = 0",
    )
    .bind(org_id)
    .bind(i16::from(kind.code()))
    .bind(key_id)
    .bind(period.start)
    .bind(period.end)
    .bind(i16::from(Outcome::Other.code()))
    .bind(i16::from(Outcome::Status5xx.code()))
    .bind(i16::from(SubjectKind::Org.code()))
    .execute(connection)
    .await?;
    Ok(())
}

/// A subject's use in `period` (0 before anything was counted).
async fn used(
    connection: &mut PgConnection,
    kind: SubjectKind,
    subject_id: Uuid,
    period: Period,
) -> Result<i64, sqlx::Error> {
    let used: Option<i64> = sqlx::query_scalar(
        "SELECT used FROM quota_usage \
         WHERE subject_kind = $1 AND subject_id = $2 AND period_start = $3",
    )
    .bind(i16::from(kind.code()))
    .bind(subject_id)
    .bind(period.start)
    .fetch_optional(connection)
    .await?;
    Ok(used.unwrap_or(0))
}

/// The start of the period containing `now` for each reset day, 1 to 28, in that order:
/// bound as a `timestamptz[]`, a listing finds a row's period start as `$n[reset_day]`
/// (PostgreSQL arrays count from 1), so one statement lists every row's use and the
/// period arithmetic stays in [`Period`].
pub(crate) fn period_starts(now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    RESET_DAYS
        .map(|day| Period::containing(day, now).start)
        .collect()
}

/// A listing with quotas, `sql`, with the parameters it starts with: `$1` the
/// [`period_starts`] as of `now`, `$2` and `$3` the subject kind codes of an
/// organization and of a key (the contract's). Its own parameters start at `$4`.
pub(crate) fn listing<O>(
    sql: impl SqlSafeStr,
    now: DateTime<Utc>,
) -> QueryAs<'static, Postgres, O, PgArguments>
where
    O: for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_as(sql)
        .bind(period_starts(now))
        .bind(i16::from(SubjectKind::Org.code()))
        .bind(i16::from(SubjectKind::Key.code()))
}

/// The quota columns a listing selects: `quota_monthly` (NULL: no quota),
/// `quota_reset_day` (the day that applies) and `quota_used` (NULL: nothing counted this
/// period).
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub(crate) struct QuotaColumns {
    quota_monthly: Option<i64>,
    quota_reset_day: Option<i16>,
    quota_used: Option<i64>,
}

impl QuotaColumns {
    /// The quota and its use in the period containing `now`, or `None`.
    pub(crate) fn resolve(self, now: DateTime<Utc>) -> Option<QuotaUse> {
        self.quota_monthly.map(|monthly| {
            let day = self
                .quota_reset_day
                .map_or(ResetDay::FIRST, ResetDay::of_column);
            QuotaUse::new(monthly, self.quota_used.unwrap_or(0), day, now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn values_are_checked_against_the_schema_s_ranges() {
        assert_eq!(Monthly::new(1).unwrap().get(), 1);
        assert_eq!(Monthly::new(MAX_MONTHLY).unwrap().get(), MAX_MONTHLY);
        for value in [0, -1, MAX_MONTHLY + 1, i64::MIN, i64::MAX] {
            assert_eq!(Monthly::new(value), Err(InvalidQuota::Monthly), "{value}");
        }
        assert_eq!(ResetDay::new(1).unwrap().get(), 1);
        assert_eq!(ResetDay::new(28).unwrap().get(), 28);
        for value in [0, 29, 31, -1, 256 + 1] {
            assert_eq!(ResetDay::new(value), Err(InvalidQuota::ResetDay), "{value}");
        }
    }

    #[test]
    fn period_starts_are_indexed_by_reset_day() {
        let now = at("2026-12-10T08:00:00Z");
        let starts = period_starts(now);
        assert_eq!(starts.len(), 28);
        assert_eq!(starts[0], at("2026-12-01T00:00:00Z"), "day 1");
        assert_eq!(starts[9], at("2026-12-10T00:00:00Z"), "day 10: today");
        assert_eq!(starts[10], at("2026-11-11T00:00:00Z"), "day 11: last month");
        assert_eq!(starts[27], at("2026-11-28T00:00:00Z"), "day 28");
    }

    #[test]
    fn listed_columns_resolve_to_the_current_period() {
        let now = at("2026-12-10T08:00:00Z");
        assert_eq!(QuotaColumns::default().resolve(now), None);
        let columns = QuotaColumns {
            quota_monthly: Some(10_000),
            quota_reset_day: Some(15),
            quota_used: None,
        };
        let quota = columns.resolve(now).unwrap();
        assert_eq!(quota.used, 0, "no row yet: nothing used");
        assert_eq!(quota.reset_day, 15);
        assert_eq!(quota.period_start, Timestamp(at("2026-11-15T00:00:00Z")));
        assert_eq!(quota.resets_at, Timestamp(at("2026-12-15T00:00:00Z")));
        assert_eq!(
            serde_json::to_value(quota).unwrap(),
            serde_json::json!({
                "monthly": 10000,
                "used": 0,
                "reset_day": 15,
                "period_start": "2026-11-15T00:00:00Z",
                "resets_at": "2026-12-15T00:00:00Z"
            })
        );
    }

    #[test]
    fn audited_quotas_are_small_objects() {
        assert_eq!(
            serde_json::to_value(AuditedOrgQuota {
                monthly: 5,
                reset_day: 3
            })
            .unwrap(),
            serde_json::json!({"monthly": 5, "reset_day": 3})
        );
        assert_eq!(
            serde_json::to_value(Some(AuditedKeyQuota { monthly: 7 })).unwrap(),
            serde_json::json!({"monthly": 7})
        );
    }
}
