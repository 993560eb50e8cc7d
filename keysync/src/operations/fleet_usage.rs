//! The whole fleet's usage at a glance (`GET /v1/usage`, the console's overview):
//! every organization's requests by hour and outcome, the requests the gateways refused
//! for want of a valid key (which no organization is billed for), and the organizations
//! with the most traffic and the most refusals, over the last hours or days.
//!
//! Hours that are final come from the rollup of [`crate::usage::fleet_rollup`] (by hour
//! for the series, by day for the rankings); the last hours, and the edges of the range
//! that are not whole rolled days, from `usage_hourly` itself (found through its BRIN
//! index on `hour`). So the overview reads a few thousand rows whatever the range, with
//! 1,000 organizations and 13 months of usage (`bench fleet-overview`).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::durations::{since_named, InvalidDuration};
use super::timestamp::Timestamp;
use super::usage::{hour_ceil, hour_floor};
use crate::usage::{fleet_rollup, Outcome};

/// How far back the overview reaches without `since`.
pub const DEFAULT_SINCE: &str = "24h";
/// Organizations in each ranking without `top`, and at most.
pub const DEFAULT_TOP: u32 = 10;
pub const MAX_TOP: u32 = 100;
/// The outcome the series names the gateways' refusals of missing, malformed or
/// unknown keys by (401 and 403 answered before any organization is known).
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// A checked overview request: whole hours, `from < to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetUsageQuery {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub top: u32,
}

impl FleetUsageQuery {
    /// `since` (a duration such as `24h`, `7d`, `30d`) back from `now`, and the size of
    /// the rankings (1 to [`MAX_TOP`], larger values capped).
    pub fn new(
        since: Option<&str>,
        top: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<FleetUsageQuery, InvalidFleetUsageQuery> {
        let from = since_named("since", since.unwrap_or(DEFAULT_SINCE), now)
            .map_err(InvalidFleetUsageQuery::Since)?;
        let top = match top {
            Some(0) => return Err(InvalidFleetUsageQuery::Top),
            top => top.unwrap_or(DEFAULT_TOP).min(MAX_TOP),
        };
        let (from, to) = (hour_floor(from), hour_ceil(now));
        if from >= to {
            return Err(InvalidFleetUsageQuery::Empty);
        }
        Ok(FleetUsageQuery { from, to, top })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFleetUsageQuery {
    #[error(transparent)]
    Since(InvalidDuration),
    #[error("invalid top 0: expected 1 to {MAX_TOP}")]
    Top,
    #[error("invalid since: the range is empty")]
    Empty,
}

/// Requests of one outcome in one hour, over every organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FleetUsagePoint {
    /// The start of the hour (UTC).
    #[schema(value_type = String, format = DateTime)]
    pub period: Timestamp,
    /// `2xx`, `3xx`, `4xx`, `5xx` (the upstream's answer), `other`, `rate_limited`,
    /// `quota_exceeded`, `policy_denied` (refused by the gateway for a known key), or
    /// `unauthenticated` (refused by the gateway: no key, or not a valid one).
    pub outcome: String,
    pub requests: i64,
}

/// An organization's share of the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrgTraffic {
    pub org_id: Uuid,
    /// Its name; `null` if it has been deleted since (usage outlives it).
    pub name: Option<String>,
    /// Every request of its keys in the range.
    pub requests: i64,
    /// Those the gateway refused: rate limited, over quota or denied by a key's policy.
    pub refused: i64,
}

/// The overview: the range, the series by hour and outcome, the rankings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FleetUsage {
    /// The range, `[from, to)`, in whole hours.
    #[schema(value_type = String, format = DateTime)]
    pub from: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub to: Timestamp,
    /// Requests in the range, every outcome, `unauthenticated` included.
    pub total_requests: i64,
    /// By hour, then outcome; hours and outcomes without requests are left out.
    pub series: Vec<FleetUsagePoint>,
    /// The organizations with the most requests, most first.
    pub top_by_requests: Vec<OrgTraffic>,
    /// The organizations with the most refused requests, most first (none refused: not
    /// listed).
    pub top_by_refusals: Vec<OrgTraffic>,
}

/// The start of the UTC day `at` is in, and of the next day unless `at` starts one.
fn day_floor(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::days(1)).unwrap_or(at)
}

fn day_ceil(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = day_floor(at);
    if floor == at {
        at
    } else {
        floor + TimeDelta::days(1)
    }
}

/// Where each part of `[from, to)` is read: hours before `rolled` from the hourly
/// rollup, whole days before it from the daily one, the rest from `usage_hourly`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sources {
    rolled: DateTime<Utc>,
    days_from: DateTime<Utc>,
    days_to: DateTime<Utc>,
}

impl Sources {
    fn of(query: &FleetUsageQuery, rolled_until: Option<DateTime<Utc>>) -> Sources {
        let rolled = rolled_until
            .unwrap_or(query.from)
            .clamp(query.from, query.to);
        let (days_from, days_to) = (day_ceil(query.from), day_floor(rolled));
        if days_from < days_to {
            Sources {
                rolled,
                days_from,
                days_to,
            }
        } else {
            // No whole rolled day: every hour from usage_hourly or the hourly rollup.
            Sources {
                rolled,
                days_from: rolled,
                days_to: rolled,
            }
        }
    }
}

/// The overview `query` asks for.
pub async fn overview(pool: &PgPool, query: &FleetUsageQuery) -> Result<FleetUsage, sqlx::Error> {
    let sources = Sources::of(query, fleet_rollup::rolled_until(pool).await?);
    let points: Vec<(DateTime<Utc>, i16, i64)> = sqlx::query_as(
        "SELECT hour, outcome, requests FROM usage_fleet_hourly \
         WHERE hour >= $1 AND hour < $2 \
         UNION ALL \
         SELECT hour, outcome, sum(requests)::bigint FROM usage_hourly \
         WHERE hour >= $2 AND hour < $3 GROUP BY hour, outcome",
    )
    .bind(query.from)
    .bind(sources.rolled)
    .bind(query.to)
    .fetch_all(pool)
    .await?;
    let orgs: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT org_id, sum(requests)::bigint, sum(refused)::bigint FROM ( \
             SELECT org_id, requests, refused FROM usage_org_daily \
             WHERE day >= $1 AND day < $2 \
             UNION ALL \
             SELECT org_id, requests, \
                    CASE WHEN outcome = ANY($5) THEN requests ELSE 0 END \
             FROM usage_hourly \
             WHERE (hour >= $3 AND hour < $1) OR (hour >= $2 AND hour < $4) \
         ) parts GROUP BY org_id",
    )
    .bind(sources.days_from)
    .bind(sources.days_to)
    .bind(query.from)
    .bind(query.to)
    .bind(fleet_rollup::refused_codes())
    .fetch_all(pool)
    .await?;
    let unauthenticated: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT hour, unattributed_requests FROM usage_gateway_hourly \
         WHERE hour >= $1 AND hour < $2 AND unattributed_requests > 0",
    )
    .bind(query.from)
    .bind(query.to)
    .fetch_all(pool)
    .await?;

    let mut series: Vec<FleetUsagePoint> = points
        .into_iter()
        .map(|(hour, code, requests)| FleetUsagePoint {
            period: Timestamp(hour),
            outcome: Outcome::from_code(i64::from(code))
                .map_or("other", |outcome| outcome.as_str())
                .to_owned(),
            requests,
        })
        .collect();
    let orgs: Vec<OrgTraffic> = orgs
        .into_iter()
        .map(|(org_id, requests, refused)| OrgTraffic {
            org_id,
            name: None,
            requests,
            refused,
        })
        .collect();
    series.extend(
        unauthenticated
            .into_iter()
            .map(|(hour, requests)| FleetUsagePoint {
                period: Timestamp(hour),
                outcome: UNAUTHENTICATED.to_owned(),
                requests,
            }),
    );
    series.sort_by(|a, b| (a.period, &a.outcome).cmp(&(b.period, &b.outcome)));
    let total_requests = series
        .iter()
        .fold(0i64, |total, point| total.saturating_add(point.requests));

    let top = usize::try_from(query.top).unwrap_or(usize::MAX);
    let mut top_by_requests = orgs.clone();
    top_by_requests.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.org_id.cmp(&b.org_id)));
    top_by_requests.truncate(top);
    let mut top_by_refusals: Vec<OrgTraffic> =
        orgs.into_iter().filter(|org| org.refused > 0).collect();
    top_by_refusals.sort_by(|a, b| b.refused.cmp(&a.refused).then(a.org_id.cmp(&b.org_id)));
    top_by_refusals.truncate(top);

    let ids: Vec<Uuid> = top_by_requests
        .iter()
        .chain(&top_by_refusals)
        .map(|org| org.org_id)
        .collect();
    let names: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, name FROM organizations WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(pool)
            .await?;
    for org in top_by_requests.iter_mut().chain(top_by_refusals.iter_mut()) {
        org.name = names
            .iter()
            .find(|(id, _)| *id == org.org_id)
            .map(|(_, name)| name.clone());
    }
    Ok(FleetUsage {
        from: Timestamp(query.from),
        to: Timestamp(query.to),
        total_requests,
        series,
        top_by_requests,
        top_by_refusals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-10T10:27:00Z")
            .unwrap()
            .to_utc()
    }

    #[test]
    fn the_default_is_the_last_day_in_whole_hours_and_ten_organizations() {
        let query = FleetUsageQuery::new(None, None, now()).unwrap();
        assert_eq!(Timestamp(query.from).to_string(), "2026-03-09T10:00:00Z");
        assert_eq!(Timestamp(query.to).to_string(), "2026-03-10T11:00:00Z");
        assert_eq!(query.top, 10);
        let month = FleetUsageQuery::new(Some("30d"), Some(5000), now()).unwrap();
        assert_eq!(Timestamp(month.from).to_string(), "2026-02-08T10:00:00Z");
        assert_eq!(month.top, MAX_TOP);
    }

    #[test]
    fn whole_rolled_days_come_from_the_daily_rollup_and_the_edges_from_the_hours() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let month = FleetUsageQuery::new(Some("30d"), None, now()).unwrap();
        let sources = Sources::of(&month, Some(at("2026-03-10T08:00:00Z")));
        assert_eq!(sources.rolled, at("2026-03-10T08:00:00Z"));
        assert_eq!(sources.days_from, at("2026-02-09T00:00:00Z"));
        assert_eq!(sources.days_to, at("2026-03-10T00:00:00Z"));
        // Nothing rolled yet, or no whole day rolled: every hour from usage_hourly.
        let nothing = Sources::of(&month, None);
        assert_eq!(
            (nothing.rolled, nothing.days_from),
            (month.from, month.from)
        );
        let day = FleetUsageQuery::new(Some("24h"), None, now()).unwrap();
        let sources = Sources::of(&day, Some(at("2026-03-10T08:00:00Z")));
        assert_eq!(sources.days_from, sources.days_to);
        // A rollup ahead of the range (a clock behind) is held to it.
        let ahead = Sources::of(&day, Some(at("2027-01-01T00:00:00Z")));
        assert_eq!(ahead.rolled, day.to);
    }

    #[test]
    fn bad_parameters_are_named() {
        let message = FleetUsageQuery::new(Some("soon"), None, now())
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("invalid since 'soon'"), "{message}");
        let message = FleetUsageQuery::new(None, Some(0), now())
            .unwrap_err()
            .to_string();
        assert_eq!(message, "invalid top 0: expected 1 to 100");
    }
}
