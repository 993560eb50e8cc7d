//! One evaluation: which hours are judged at a given time, reading their sums and
//! baselines ([`super::hourly_sums`]), judging each organization old enough to be judged
//! ([`super::judgement`]) and storing what it found, in one transaction.
//!
//! Two hours are judged each time:
//! - the last hour that is **over**, once its close delay has passed (the gateways'
//!   flushes of the hour stored), for every kind;
//! - the **running** hour, for spikes only, on its requests so far: they only grow, so
//!   a spike seen early stands at the close, and a surge is reported within an
//!   evaluation period instead of an hour later.
//!
//! Only one keysync replica evaluates at a time: the transaction first takes a
//! PostgreSQL advisory lock ([`LOCK_KEY`]) without waiting, and a replica that does not
//! get it skips its turn. Should two evaluate anyway (one after the other), the alerts
//! table's primary key `(org_id, kind, hour)` keeps one alert per organization, kind and
//! hour: the insert skips the ones stored already, and only the alerts this evaluation
//! stored are returned, to be announced once. An anomaly that lasts is therefore one
//! alert per hour, however often the hour is judged.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::alert::Alert;
use super::hourly_sums::{self, OrgHours};
use super::judgement::{judge, HourState};
use super::settings::AnomalySettings;

/// The advisory lock of the evaluator (`pg_try_advisory_xact_lock`): one evaluation at a
/// time across keysync replicas. The number spells "anomaly" in ASCII.
pub const LOCK_KEY: i64 = 0x0061_6e6f_6d61_6c79;

/// What an evaluation did.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    /// Another replica holds the lock: nothing read or stored.
    Skipped,
    Judged(Judged),
}

/// What an evaluation that ran found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Judged {
    /// The hour judged whole and the running one.
    pub complete_hour: DateTime<Utc>,
    pub running_hour: DateTime<Utc>,
    /// Organizations with traffic in the hours read that were judged.
    pub organizations: usize,
    /// Organizations with traffic too recent to be judged.
    pub too_new: usize,
    /// The alerts this evaluation stored (not the ones stored before), by organization,
    /// hour and kind.
    pub raised: Vec<Alert>,
}

/// The hours an evaluation at `now` judges: the last one over at least `close_delay`
/// ago, and the running one.
pub fn hours_judged(
    now: DateTime<Utc>,
    close_delay: std::time::Duration,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let delay = TimeDelta::from_std(close_delay).unwrap_or(TimeDelta::zero());
    let running = hour_of(now);
    let complete = hour_of(now - delay) - TimeDelta::hours(1);
    (complete, running)
}

fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

/// The same hour of the week in each of the `weeks` weeks before `hour`, the nearest
/// first.
pub fn baseline_hours(hour: DateTime<Utc>, weeks: u8) -> Vec<DateTime<Utc>> {
    (1..=i64::from(weeks))
        .map(|week| hour - TimeDelta::weeks(week))
        .collect()
}

/// Evaluates as of `now` (see the module's documentation).
pub async fn evaluate(
    pool: &PgPool,
    settings: &AnomalySettings,
    now: DateTime<Utc>,
) -> Result<Evaluation, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *transaction)
        .await?;
    if !locked {
        transaction.rollback().await?;
        return Ok(Evaluation::Skipped);
    }
    let weeks = settings.thresholds.baseline_weeks;
    let (complete_hour, running_hour) = hours_judged(now, settings.close_delay);
    let targets = [
        (complete_hour, HourState::Complete),
        (running_hour, HourState::Running),
    ];
    let mut hours = Vec::new();
    for (hour, _) in targets {
        hours.push(hour);
        hours.extend(baseline_hours(hour, weeks));
    }
    // An organization's traffic must reach back to the oldest baseline hour of the
    // hour judged whole (a week's worth of weeks before it).
    let history_from = complete_hour - TimeDelta::weeks(i64::from(weeks));
    let orgs = hourly_sums::read(&mut transaction, &hours, history_from).await?;

    let mut judged = Judged {
        complete_hour,
        running_hour,
        ..Judged::default()
    };
    let mut found = Vec::new();
    for (org_id, org) in &orgs {
        if !org.old_enough {
            judged.too_new += 1;
            continue;
        }
        judged.organizations += 1;
        for (hour, state) in targets {
            found.extend(judge_hour(*org_id, org, hour, state, settings));
        }
    }
    found.sort_by_key(|a| (a.org_id, a.hour, a.kind));
    judged.raised = store(&mut transaction, found).await?;
    transaction.commit().await?;
    Ok(Evaluation::Judged(judged))
}

/// The alerts of `hour` of one organization.
fn judge_hour(
    org_id: Uuid,
    org: &OrgHours,
    hour: DateTime<Utc>,
    state: HourState,
    settings: &AnomalySettings,
) -> Vec<Alert> {
    let weeks = settings.thresholds.baseline_weeks;
    let baseline: Vec<_> = baseline_hours(hour, weeks)
        .into_iter()
        .map(|week| org.at(week))
        .collect();
    judge(org.at(hour), &baseline, &settings.thresholds, state)
        .iter()
        .map(|finding| Alert::of(org_id, hour, state == HourState::Complete, weeks, finding))
        .collect()
}

/// Stores `found`, skipping the alerts stored before; returns those it stored, with
/// their `raised_at`.
async fn store(
    connection: &mut PgConnection,
    found: Vec<Alert>,
) -> Result<Vec<Alert>, sqlx::Error> {
    if found.is_empty() {
        return Ok(found);
    }
    let column = |value: fn(&Alert) -> f64| found.iter().map(value).collect::<Vec<f64>>();
    let stored: Vec<(Uuid, DateTime<Utc>)> = sqlx::query_as(
        "INSERT INTO anomaly_alerts (org_id, kind, hour, hour_complete, observed, baseline, \
                threshold, requests, matching_requests, baseline_weeks, event_id) \
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::boolean[], \
                $5::float8[], $6::float8[], $7::float8[], $8::bigint[], $9::bigint[], \
                $10::smallint[], $11::uuid[]) \
         ON CONFLICT (org_id, kind, hour) DO NOTHING \
         RETURNING event_id, raised_at",
    )
    .bind(found.iter().map(|alert| alert.org_id).collect::<Vec<_>>())
    .bind(
        found
            .iter()
            .map(|alert| alert.kind.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(found.iter().map(|alert| alert.hour).collect::<Vec<_>>())
    .bind(
        found
            .iter()
            .map(|alert| alert.hour_complete)
            .collect::<Vec<_>>(),
    )
    .bind(column(|alert| alert.observed))
    .bind(column(|alert| alert.baseline))
    .bind(column(|alert| alert.threshold))
    .bind(found.iter().map(|alert| alert.requests).collect::<Vec<_>>())
    .bind(
        found
            .iter()
            .map(|alert| alert.matching_requests)
            .collect::<Vec<_>>(),
    )
    .bind(
        found
            .iter()
            .map(|alert| i16::from(alert.baseline_weeks))
            .collect::<Vec<_>>(),
    )
    .bind(found.iter().map(|alert| alert.event_id).collect::<Vec<_>>())
    .fetch_all(connection)
    .await?;
    let raised_at: HashMap<Uuid, DateTime<Utc>> = stored.into_iter().collect();
    Ok(found
        .into_iter()
        .filter_map(|mut alert| {
            alert.raised_at = *raised_at.get(&alert.event_id)?;
            Some(alert)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_hour_over_is_judged_once_its_close_delay_passed() {
        let minute = Duration::from_secs(60);
        assert_eq!(
            hours_judged(at("2026-12-01T15:00:59Z"), minute),
            (at("2026-12-01T13:00:00Z"), at("2026-12-01T15:00:00Z"))
        );
        assert_eq!(
            hours_judged(at("2026-12-01T15:01:00Z"), minute),
            (at("2026-12-01T14:00:00Z"), at("2026-12-01T15:00:00Z"))
        );
        assert_eq!(
            hours_judged(at("2026-12-01T15:59:59Z"), minute),
            (at("2026-12-01T14:00:00Z"), at("2026-12-01T15:00:00Z"))
        );
        assert_eq!(
            hours_judged(at("2026-12-01T15:00:00Z"), Duration::ZERO),
            (at("2026-12-01T14:00:00Z"), at("2026-12-01T15:00:00Z"))
        );
    }

    #[test]
    fn the_baseline_is_the_same_hour_of_the_weeks_before() {
        assert_eq!(
            baseline_hours(at("2026-12-01T14:00:00Z"), 3),
            [
                at("2026-11-24T14:00:00Z"),
                at("2026-11-17T14:00:00Z"),
                at("2026-11-10T14:00:00Z")
            ]
        );
    }
}
