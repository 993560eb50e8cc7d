//! Anomaly detection against a real PostgreSQL, with usage histories seeded straight into
//! `usage_hourly`: what one evaluation raises for a spike, a drop, a jump in refusals or
//! upstream 5xx, and what it leaves alone (a weekly pattern, an organization too new to
//! judge) ([`detection`]); one alert per organization, kind and hour across repeated
//! evaluations and across two evaluators ([`deduplication`]); and the alerts listed by
//! `keysync alerts` and `GET /v1/alerts` ([`listing`]). This file holds what they share:
//! histories, the hours judged, and running an evaluation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod deduplication;
mod detection;
mod listing;

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use keysync::anomaly::alert::Alert;
use keysync::anomaly::evaluation::{evaluate, Evaluation, Judged};
use keysync::anomaly::settings::AnomalySettings;
use keysync::usage::Outcome;
use sqlx::PgPool;
use uuid::Uuid;

/// The hour `at` falls in.
fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap()
}

/// When the tests judge: half past this hour, so the hour before is over (its close
/// delay of a minute passed) and this one runs.
fn judged_at() -> DateTime<Utc> {
    hour_of(Utc::now()) + TimeDelta::minutes(30)
}

/// The hour an evaluation at `now` judges whole.
fn complete_hour(now: DateTime<Utc>) -> DateTime<Utc> {
    hour_of(now) - TimeDelta::hours(1)
}

/// A usage history: requests by organization, hour and outcome, written to the rollup
/// in one statement (the sums run over keys, so any key does).
#[derive(Debug, Default)]
struct History {
    rows: BTreeMap<(Uuid, DateTime<Utc>, Outcome), i64>,
}

impl History {
    /// `requests` more of `outcome` for `org` in `hour`.
    fn add(
        &mut self,
        org: Uuid,
        hour: DateTime<Utc>,
        outcome: Outcome,
        requests: i64,
    ) -> &mut Self {
        *self.rows.entry((org, hour, outcome)).or_default() += requests;
        self
    }

    /// What `per_hour` says for each hour from `from` up to (not including) `until`.
    fn every_hour(
        &mut self,
        org: Uuid,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        per_hour: impl Fn(DateTime<Utc>) -> Vec<(Outcome, i64)>,
    ) -> &mut Self {
        let mut hour = from;
        while hour < until {
            for (outcome, requests) in per_hour(hour) {
                if requests > 0 {
                    self.add(org, hour, outcome, requests);
                }
            }
            hour += TimeDelta::hours(1);
        }
        self
    }

    /// Writes the history under a key of its own, so histories written one after the
    /// other add up (rows of a month without its partition land in the default one,
    /// which the statement reads like any other).
    async fn write(&self, pool: &PgPool) {
        let mut org_ids = Vec::new();
        let mut hours = Vec::new();
        let mut outcomes = Vec::new();
        let mut requests = Vec::new();
        for ((org, hour, outcome), count) in &self.rows {
            org_ids.push(*org);
            hours.push(*hour);
            outcomes.push(i16::from(outcome.code()));
            requests.push(*count);
        }
        sqlx::query(
            "INSERT INTO usage_hourly (hour, org_id, key_id, outcome, requests, duration_us, \
                 le_10ms, le_100ms, le_1s, over_1s, request_bytes, response_bytes) \
             SELECT h, o, $5, c, r, 0, 0, 0, 0, 0, 0, 0 \
             FROM UNNEST($1::timestamptz[], $2::uuid[], $3::smallint[], $4::bigint[]) \
                  AS t (h, o, c, r)",
        )
        .bind(&hours)
        .bind(&org_ids)
        .bind(&outcomes)
        .bind(&requests)
        .bind(Uuid::new_v4())
        .execute(pool)
        .await
        .unwrap();
    }
}

/// Weeks before `hour`.
fn weeks_before(hour: DateTime<Utc>, weeks: i64) -> DateTime<Utc> {
    hour - TimeDelta::weeks(weeks)
}

/// An organization made with the CLI, as a UUID.
fn org(url: &str, name: &str) -> Uuid {
    Uuid::parse_str(&common::create_org(url, name)).unwrap()
}

/// A pool on the test database.
async fn pool(url: &str) -> PgPool {
    keysync::database::connect(url).await.unwrap()
}

/// One evaluation at `now` with the default settings; it must judge.
async fn judge(pool: &PgPool, now: DateTime<Utc>) -> Judged {
    match evaluate(pool, &AnomalySettings::default(), now)
        .await
        .unwrap()
    {
        Evaluation::Judged(judged) => judged,
        Evaluation::Skipped => panic!("skipped: nobody else evaluates here"),
    }
}

/// The alerts stored, as `(org, kind, hour)`, in order.
async fn stored(pool: &PgPool) -> Vec<(Uuid, String, DateTime<Utc>)> {
    sqlx::query_as("SELECT org_id, kind, hour FROM anomaly_alerts ORDER BY org_id, kind, hour")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// `alerts` as `(org, kind, hour)`.
fn identities(alerts: &[Alert]) -> Vec<(Uuid, String, DateTime<Utc>)> {
    alerts
        .iter()
        .map(|alert| (alert.org_id, alert.kind.as_str().to_owned(), alert.hour))
        .collect()
}
