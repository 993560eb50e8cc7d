//! Quota leases (`AcquireQuota`): the list of subjects with a quota for the gateways,
//! and grants of requests they may admit, reconciled with their usage flushes.
//!
//! For a subject and period, what is committed is the use the flushes reported
//! (`quota_usage.used`) plus, for every instance seen in the last [`LEASE_IDLE`], what it
//! was granted and has not reported yet (`granted - flushed`: requests it may still
//! admit, or admitted and not flushed). A grant never takes the committed total past
//! the quota, so the gateways together admit at most the quota, give or take the
//! small credit a gateway may spend while its claim is on the way and a lease left on
//! an instance idle for longer than [`LEASE_IDLE`] (then released for others).
//! Grants for a subject are serialized on its `quotas` row.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use keysync_contract::subject::SubjectKind;
use sqlx::PgPool;
use uuid::Uuid;

use super::period::Period;

/// An instance whose lease of a subject has not moved (claim or flush) for this long is
/// taken as gone: what it was granted and never reported is released.
pub const LEASE_IDLE_SECS: i64 = 60;
pub const LEASE_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// A grant is at most this share of what is left, so the last of a quota is spread
/// over the gateways asking for it rather than taken by the first.
const GRANT_DIVISOR: i64 = 4;

/// The most claims one call may carry.
pub const MAX_CLAIMS: usize = 10_000;

/// One request for more of a subject's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub kind: SubjectKind,
    pub subject_id: Uuid,
    pub want: i64,
}

/// A subject's quota as one instance holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub kind: SubjectKind,
    pub subject_id: Uuid,
    /// 0: no quota (any more).
    pub monthly_limit: i64,
    pub period: Option<Period>,
    /// All this instance was granted in the period.
    pub granted: i64,
    /// What this call added to it.
    pub added: i64,
    pub exhausted: bool,
}

/// What one call answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub revision: i64,
    pub full_list: bool,
    pub quotas: Vec<State>,
    /// Requests claimed for organizations and keys that do not exist (answered with no
    /// quota, nothing granted).
    pub unknown_subject_requests: i64,
}

/// What a grant decided, from the committed totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: i64,
    pub exhausted: bool,
}

/// How much of `want` to grant: at most what is left after the use and every live
/// lease, and at most a [`GRANT_DIVISOR`]th of it (at least 1 while anything is left).
pub fn decide(limit: i64, used: i64, others_out: i64, mine_out: i64, want: i64) -> Grant {
    let left = limit
        .saturating_sub(used)
        .saturating_sub(others_out)
        .saturating_sub(mine_out)
        .max(0);
    let share = (left / GRANT_DIVISOR).max(left.min(1));
    let granted = want.max(0).min(share);
    Grant {
        granted,
        exhausted: left - granted <= 0,
    }
}

/// How long a read of the quota list's revision answers the gateways' polls.
pub const REVISION_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct QuotaLeases {
    pool: PgPool,
    /// The list's revision as last read, and when: every gateway polls about once a
    /// second, and a poll that claims nothing and knows this revision needs no
    /// database at all.
    revision: Arc<Mutex<Option<(i64, Instant)>>>,
}

/// `quota_revision`'s value; is_called is false until the first nextval: no quota ever
/// set is revision 0.
async fn read_revision<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<i64, sqlx::Error> {
    let (last_value, is_called): (i64, bool) =
        sqlx::query_as("SELECT last_value, is_called FROM quota_revision")
            .fetch_one(executor)
            .await?;
    Ok(if is_called { last_value } else { 0 })
}

impl QuotaLeases {
    pub fn new(pool: PgPool) -> QuotaLeases {
        QuotaLeases {
            pool,
            revision: Arc::new(Mutex::new(None)),
        }
    }

    /// The list's revision, read at most once per [`REVISION_FRESH`].
    async fn revision(&self) -> Result<i64, sqlx::Error> {
        let cached = *self.revision.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((revision, read_at)) = cached {
            if read_at.elapsed() < REVISION_FRESH {
                return Ok(revision);
            }
        }
        let revision = read_revision(&self.pool).await?;
        *self.revision.lock().unwrap_or_else(|e| e.into_inner()) = Some((revision, Instant::now()));
        Ok(revision)
    }

    /// Grants `claims` for `instance` and, when the list changed since
    /// `known_revision`, sends every subject with a quota.
    pub async fn acquire(
        &self,
        instance: Uuid,
        known_revision: i64,
        claims: &[Claim],
        now: DateTime<Utc>,
    ) -> Result<Answer, sqlx::Error> {
        if claims.is_empty() && self.revision().await? == known_revision {
            return Ok(Answer {
                revision: known_revision,
                full_list: false,
                quotas: Vec::new(),
                unknown_subject_requests: 0,
            });
        }
        let mut transaction = self.pool.begin().await?;
        let revision = read_revision(&mut *transaction).await?;
        let mut quotas = Vec::with_capacity(claims.len());
        let mut unknown_subject_requests: i64 = 0;
        for claim in claims {
            let (state, known) = grant(&mut transaction, instance, claim, now).await?;
            if !known {
                unknown_subject_requests = unknown_subject_requests.saturating_add(claim.want);
            }
            quotas.push(state);
        }
        let full_list = revision != known_revision;
        if full_list {
            let claimed: std::collections::HashSet<(SubjectKind, Uuid)> =
                quotas.iter().map(|s| (s.kind, s.subject_id)).collect();
            for state in list(&mut transaction, instance, now).await? {
                if !claimed.contains(&(state.kind, state.subject_id)) {
                    quotas.push(state);
                }
            }
        }
        transaction.commit().await?;
        Ok(Answer {
            revision,
            full_list,
            quotas,
            unknown_subject_requests,
        })
    }
}

/// Every subject with a quota, with what `instance` holds of it this period.
async fn list(
    transaction: &mut sqlx::PgConnection,
    instance: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<State>, sqlx::Error> {
    let rows: Vec<(i16, Uuid, i64, i16, Option<i64>)> = sqlx::query_as(
        "WITH q AS ( \
             SELECT q.subject_kind, q.subject_id, q.monthly_limit, \
                    coalesce(q.reset_day, o.reset_day, 1::smallint) AS reset_day \
             FROM quotas q \
             LEFT JOIN quotas o ON o.subject_kind = $3 AND o.subject_id = q.org_id) \
         SELECT q.subject_kind, q.subject_id, q.monthly_limit, q.reset_day, l.granted \
         FROM q LEFT JOIN quota_leases l ON l.instance_id = $1 \
              AND l.subject_kind = q.subject_kind AND l.subject_id = q.subject_id \
              AND l.period_start = keysync_quota_period_start($2, q.reset_day)",
    )
    .bind(instance)
    .bind(now)
    .bind(i16::from(SubjectKind::Org.code()))
    .fetch_all(transaction)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(kind, subject_id, limit, reset_day, granted)| {
            Some(State {
                kind: SubjectKind::from_code(i64::from(kind))?,
                subject_id,
                monthly_limit: limit,
                period: Some(Period::containing(
                    u8::try_from(reset_day).unwrap_or(1),
                    now,
                )),
                granted: granted.unwrap_or(0),
                added: 0,
                exhausted: false,
            })
        })
        .collect())
}

/// One claim: locks the subject's quota, reads what is committed, grants. With it,
/// whether the subject exists (a subject without a quota is looked up; one with a quota
/// exists).
async fn grant(
    transaction: &mut sqlx::PgConnection,
    instance: Uuid,
    claim: &Claim,
    now: DateTime<Utc>,
) -> Result<(State, bool), sqlx::Error> {
    let quota: Option<(i64, i16)> = sqlx::query_as(
        "SELECT q.monthly_limit, coalesce(q.reset_day, \
                (SELECT o.reset_day FROM quotas o \
                 WHERE o.subject_kind = $3 AND o.subject_id = q.org_id), 1::smallint) \
         FROM quotas q WHERE q.subject_kind = $1 AND q.subject_id = $2 \
         FOR UPDATE OF q",
    )
    .bind(i16::from(claim.kind.code()))
    .bind(claim.subject_id)
    .bind(i16::from(SubjectKind::Org.code()))
    .fetch_optional(&mut *transaction)
    .await?;
    let Some((limit, reset_day)) = quota else {
        let exists = match claim.kind {
            SubjectKind::Org => "SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)",
            SubjectKind::Key => "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = $1)",
        };
        let known: bool = sqlx::query_scalar(exists)
            .bind(claim.subject_id)
            .fetch_one(&mut *transaction)
            .await?;
        let state = State {
            kind: claim.kind,
            subject_id: claim.subject_id,
            monthly_limit: 0,
            period: None,
            granted: 0,
            added: 0,
            exhausted: false,
        };
        return Ok((state, known));
    };
    let period = Period::containing(u8::try_from(reset_day).unwrap_or(1), now);
    let (used, others_out, mine_granted, mine_flushed): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT \
           coalesce((SELECT used FROM quota_usage WHERE subject_kind = $1 \
                     AND subject_id = $2 AND period_start = $3), 0), \
           coalesce((SELECT sum(greatest(granted - flushed, 0))::bigint FROM quota_leases \
                     WHERE subject_kind = $1 AND subject_id = $2 AND period_start = $3 \
                       AND instance_id <> $4 \
                       AND updated_at > now() - make_interval(secs => $5)), 0), \
           coalesce((SELECT granted FROM quota_leases WHERE subject_kind = $1 \
                     AND subject_id = $2 AND period_start = $3 AND instance_id = $4), 0), \
           coalesce((SELECT flushed FROM quota_leases WHERE subject_kind = $1 \
                     AND subject_id = $2 AND period_start = $3 AND instance_id = $4), 0)",
    )
    .bind(i16::from(claim.kind.code()))
    .bind(claim.subject_id)
    .bind(period.start)
    .bind(instance)
    .bind(LEASE_IDLE_SECS as f64)
    .fetch_one(&mut *transaction)
    .await?;
    let mine_out = (mine_granted - mine_flushed).max(0);
    let decided = decide(limit, used, others_out, mine_out, claim.want);
    // Touched even when nothing is granted: the claim shows the instance is alive.
    let granted: i64 = sqlx::query_scalar(
        "INSERT INTO quota_leases (instance_id, subject_kind, subject_id, period_start, granted) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (subject_kind, subject_id, period_start, instance_id) \
         DO UPDATE SET granted = quota_leases.granted + EXCLUDED.granted, updated_at = now() \
         RETURNING granted",
    )
    .bind(instance)
    .bind(i16::from(claim.kind.code()))
    .bind(claim.subject_id)
    .bind(period.start)
    .bind(decided.granted)
    .fetch_one(&mut *transaction)
    .await?;
    let state = State {
        kind: claim.kind,
        subject_id: claim.subject_id,
        monthly_limit: limit,
        period: Some(period),
        granted,
        added: decided.granted,
        exhausted: decided.exhausted,
    };
    Ok((state, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_never_pass_what_is_left() {
        // 10,000, 9,000 used, 500 out elsewhere, 100 of mine out: 400 left.
        assert_eq!(
            decide(10_000, 9_000, 500, 100, 1_000),
            Grant {
                granted: 100,
                exhausted: false
            }
        );
        assert_eq!(
            decide(10_000, 9_000, 500, 100, 50),
            Grant {
                granted: 50,
                exhausted: false
            }
        );
        // The last request.
        assert_eq!(
            decide(10, 9, 0, 0, 16),
            Grant {
                granted: 1,
                exhausted: true
            }
        );
        // Nothing left: nothing granted, and said so.
        assert_eq!(
            decide(10, 8, 2, 0, 16),
            Grant {
                granted: 0,
                exhausted: true
            }
        );
        // Use past the quota (credit spent while a claim was on the way).
        assert_eq!(decide(10, 12, 0, 0, 16).granted, 0);
        assert_eq!(decide(10, 0, 0, 0, -5).granted, 0);
    }

    #[test]
    fn the_last_of_a_quota_goes_in_shrinking_grants() {
        let (limit, mut used) = (10_000, 0);
        let mut grants = 0;
        while used < limit {
            let grant = decide(limit, used, 0, 0, 1_000_000);
            assert!(grant.granted >= 1);
            used += grant.granted;
            grants += 1;
        }
        assert_eq!(used, limit, "exactly the quota");
        assert!(grants < 40, "{grants} grants");
    }
}
