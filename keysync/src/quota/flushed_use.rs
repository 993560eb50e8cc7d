//! A usage flush's part in quotas, inside the flush's transaction: its forwarded
//! requests (outcomes other and 2xx..5xx; refusals use no quota) added to the use of
//! each organization and key with a quota (`quota_usage`, in the period of the flush's
//! hour), and to what the flushing instance has reported against its leases
//! (`quota_leases.flushed`). One statement whatever the number of counters; a threshold
//! crossed is queued for the `quota.threshold` webhooks in the same transaction.

use chrono::{DateTime, Utc};
use keysync_contract::subject::SubjectKind;
use keysync_contract::usage_outcome::Outcome;
use uuid::Uuid;

use super::alert::{self, Crossing};
use crate::webhooks::event::EventType;
use crate::webhooks::outbox;

/// The flush's grown counters: ids, outcome codes and request increments, in step.
pub struct Increments<'a> {
    pub org_ids: &'a [Uuid],
    pub key_ids: &'a [Uuid],
    pub outcomes: &'a [i16],
    pub requests: &'a [i64],
}

const STATEMENT: &str = "\
WITH inc AS ( \
    SELECT org_id, key_id, requests \
    FROM UNNEST($3::uuid[], $4::uuid[], $5::smallint[], $6::bigint[]) \
         AS t (org_id, key_id, outcome, requests) \
    WHERE outcome BETWEEN $9 AND $10 AND requests > 0), \
subjects AS ( \
    SELECT q.subject_kind, q.subject_id, q.org_id, q.monthly_limit, \
           keysync_quota_period_start($1, q.reset_day) AS period_start, \
           sum(inc.requests)::bigint AS n \
    FROM inc JOIN quotas q ON q.subject_kind = $7 AND q.subject_id = inc.org_id \
    GROUP BY q.subject_kind, q.subject_id, q.org_id, q.monthly_limit, q.reset_day \
    UNION ALL \
    SELECT q.subject_kind, q.subject_id, q.org_id, q.monthly_limit, \
           keysync_quota_period_start($1, coalesce( \
               (SELECT o.reset_day FROM quotas o \
                WHERE o.subject_kind = $7 AND o.subject_id = q.org_id), 1::smallint)), \
           sum(inc.requests)::bigint \
    FROM inc JOIN quotas q ON q.subject_kind = $8 AND q.subject_id = inc.key_id \
    GROUP BY q.subject_kind, q.subject_id, q.monthly_limit, q.org_id), \
used AS ( \
    INSERT INTO quota_usage (subject_kind, subject_id, period_start, used) \
    SELECT subject_kind, subject_id, period_start, n FROM subjects \
    ON CONFLICT (subject_kind, subject_id, period_start) DO UPDATE SET \
        used = LEAST(quota_usage.used::numeric + EXCLUDED.used, 9223372036854775807)::bigint \
    RETURNING subject_kind, subject_id, period_start, used, alerted), \
leases AS ( \
    UPDATE quota_leases l SET flushed = l.flushed + s.n, updated_at = now() \
    FROM subjects s \
    WHERE l.instance_id = $2 AND l.subject_kind = s.subject_kind \
      AND l.subject_id = s.subject_id AND l.period_start = s.period_start) \
SELECT u.subject_kind, u.subject_id, s.org_id, u.period_start, u.used, u.alerted, \
       s.monthly_limit \
FROM used u JOIN subjects s USING (subject_kind, subject_id, period_start)";

/// A subject's use after the flush: kind, id, organization, period start, used,
/// threshold announced, quota.
type UseRow = (i16, Uuid, Uuid, DateTime<Utc>, i64, i16, i64);

/// Adds the flush's forwarded requests to the quotas' use and the instance's leases;
/// returns the thresholds this flush crossed, each marked announced (once a period).
pub async fn record(
    transaction: &mut sqlx::PgConnection,
    instance: Uuid,
    hour: DateTime<Utc>,
    increments: Increments<'_>,
) -> Result<Vec<Crossing>, sqlx::Error> {
    let rows: Vec<UseRow> = sqlx::query_as(STATEMENT)
        .bind(hour)
        .bind(instance)
        .bind(increments.org_ids)
        .bind(increments.key_ids)
        .bind(increments.outcomes)
        .bind(increments.requests)
        .bind(i16::from(SubjectKind::Org.code()))
        .bind(i16::from(SubjectKind::Key.code()))
        .bind(i16::from(Outcome::Other.code()))
        .bind(i16::from(Outcome::Status5xx.code()))
        .fetch_all(&mut *transaction)
        .await?;
    let mut crossings = Vec::new();
    for (kind, subject_id, org_id, period_start, used, alerted, limit) in rows {
        let Some(kind) = SubjectKind::from_code(i64::from(kind)) else {
            continue;
        };
        let Some(threshold) = alert::crossed(used, limit, alerted) else {
            continue;
        };
        // Another keysync's flush may have announced it meanwhile: the row decides.
        let marked = sqlx::query(
            "UPDATE quota_usage SET alerted = $4 WHERE subject_kind = $1 \
             AND subject_id = $2 AND period_start = $3 AND alerted < $4",
        )
        .bind(i16::from(kind.code()))
        .bind(subject_id)
        .bind(period_start)
        .bind(threshold)
        .execute(&mut *transaction)
        .await?;
        if marked.rows_affected() == 1 {
            let crossing = Crossing {
                kind,
                subject_id,
                org_id,
                period_start,
                threshold,
                used,
                limit,
            };
            // Announced by webhook from the same decision, in the same transaction.
            outbox::enqueue(
                &mut *transaction,
                EventType::QuotaThreshold,
                &crossing.data(),
            )
            .await?;
            crossings.push(crossing);
        }
    }
    Ok(crossings)
}
