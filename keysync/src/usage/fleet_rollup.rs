//! The rollup behind the fleet overview (`GET /v1/usage`,
//! [`crate::operations::fleet_usage`]): every organization's requests by hour and
//! outcome (`usage_fleet_hourly`) and each organization's requests and refusals by UTC
//! day (`usage_org_daily`), for the hours no flush can add to any more. Those are
//! rolled up once, under the lock of `usage_fleet_rollup`'s one row (several keysync
//! processes take turns, and none adds an hour twice), a month at most a transaction so
//! that a backlog of 13 months catches up in 13 steps; the overview reads the hours after
//! `rolled_until` from `usage_hourly` itself.

use std::time::Duration;

use chrono::{DateTime, Datelike, DurationRound, TimeDelta, TimeZone, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::flush::MAX_CLOCK_SKEW;
use super::partitions;
use super::Outcome;
use crate::database::describe_sqlx;

/// How long after an hour's end (and [`MAX_CLOCK_SKEW`]) it is taken as final: a flush
/// checked just before may still be committing.
pub const MARGIN: TimeDelta = TimeDelta::minutes(5);
/// How often the rollup looks for hours that became final.
pub const PERIOD: Duration = Duration::from_secs(300);
/// How soon a failed rollup is tried again.
pub const RETRY: Duration = Duration::from_secs(60);

/// The outcomes counted as refused in the rankings.
pub fn refused_codes() -> Vec<i16> {
    [
        Outcome::RateLimited,
        Outcome::QuotaExceeded,
        Outcome::PolicyDenied,
    ]
    .iter()
    .map(|outcome| i16::from(outcome.code()))
    .collect()
}

/// The first hour that is not final as of `now`: every hour before it is.
pub fn final_until(now: DateTime<Utc>) -> DateTime<Utc> {
    let settled = now - MAX_CLOCK_SKEW - MARGIN;
    settled
        .duration_trunc(TimeDelta::hours(1))
        .unwrap_or(settled)
}

/// The start of the UTC month after the one `at` is in.
fn next_month(at: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(at)
}

/// The hours `rolled_until` has reached (`None`: nothing rolled yet).
pub async fn rolled_until(pool: &PgPool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let until: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT rolled_until FROM usage_fleet_rollup")
            .fetch_optional(pool)
            .await?;
    Ok(until.flatten())
}

/// Rolls up the next step of final hours (to the end of their month at most), as of
/// `now`: the new `rolled_until`, or `None` when every final hour was already rolled.
pub async fn roll_step(
    pool: &PgPool,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let limit = final_until(now);
    let mut transaction = pool.begin().await?;
    let rolled: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT rolled_until FROM usage_fleet_rollup FOR UPDATE")
            .fetch_optional(&mut *transaction)
            .await?;
    let start = match rolled.flatten() {
        Some(start) => start,
        // The oldest partition's month: no flush writes before it.
        None => match partitions::partitions(pool).await?.first() {
            Some((month, _)) => month.start(),
            None => limit,
        },
    };
    if start >= limit {
        return Ok(None);
    }
    let end = next_month(start).min(limit);
    sqlx::query(
        "INSERT INTO usage_fleet_hourly (hour, outcome, requests) \
         SELECT hour, outcome, sum(requests)::bigint FROM usage_hourly \
         WHERE hour >= $1 AND hour < $2 GROUP BY hour, outcome \
         ON CONFLICT (hour, outcome) DO UPDATE SET requests = EXCLUDED.requests",
    )
    .bind(start)
    .bind(end)
    .execute(&mut *transaction)
    .await?;
    // A day may be rolled in several steps (the hours as they become final): added.
    sqlx::query(
        "INSERT INTO usage_org_daily (day, org_id, requests, refused) \
         SELECT date_trunc('day', hour, 'UTC'), org_id, sum(requests)::bigint, \
                coalesce(sum(requests) FILTER (WHERE outcome = ANY($3)), 0)::bigint \
         FROM usage_hourly WHERE hour >= $1 AND hour < $2 GROUP BY 1, org_id \
         ON CONFLICT (day, org_id) DO UPDATE SET \
             requests = usage_org_daily.requests + EXCLUDED.requests, \
             refused = usage_org_daily.refused + EXCLUDED.refused",
    )
    .bind(start)
    .bind(end)
    .bind(refused_codes())
    .execute(&mut *transaction)
    .await?;
    sqlx::query("UPDATE usage_fleet_rollup SET rolled_until = $1")
        .bind(end)
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(Some(end))
}

/// Rolls up every final hour, then again every [`PERIOD`], until `stop`.
pub async fn run(pool: PgPool, stop: CancellationToken) {
    loop {
        let wait = loop {
            match roll_step(&pool, Utc::now()).await {
                Ok(Some(until)) => {
                    if until < final_until(Utc::now()) {
                        info!("fleet usage rollup: caught up to {until}, continuing");
                    } else {
                        info!("fleet usage rollup: caught up to {until}");
                    }
                    if stop.is_cancelled() {
                        return;
                    }
                }
                Ok(None) => break PERIOD,
                Err(error) => {
                    warn!(
                        "fleet usage rollup failed (retried in {}s): {}",
                        RETRY.as_secs(),
                        describe_sqlx(&error)
                    );
                    break RETRY;
                }
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn an_hour_is_final_once_the_clock_skew_and_a_margin_have_passed() {
        // 10:00-11:00 may still get flushes until 12:00 (a gateway an hour behind),
        // and one checked then may still commit for a moment.
        assert_eq!(
            final_until(at("2026-03-10T12:04:00Z")),
            at("2026-03-10T10:00:00Z")
        );
        assert_eq!(
            final_until(at("2026-03-10T12:05:00Z")),
            at("2026-03-10T11:00:00Z")
        );
    }

    #[test]
    fn a_step_ends_at_the_next_month() {
        assert_eq!(
            next_month(at("2026-03-10T12:00:00Z")),
            at("2026-04-01T00:00:00Z")
        );
        assert_eq!(
            next_month(at("2026-12-01T00:00:00Z")),
            at("2027-01-01T00:00:00Z")
        );
    }
}
