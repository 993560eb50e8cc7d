//! The whole fleet's usage at a glance (`GET /v1/usage`, the console's overview):
//! every organization's requests by hour and outcome, the requests the gateways refused
//! for want of a valid key (which no organization is billed for), and the organizations
//! with the most traffic and the most refusals, over the last hours or days.
//!
//! One scan of the rollup answers both the series and the ranking (`GROUPING SETS`),
//! so the overview costs one pass over the range's partitions, whatever the number of
//! organizations.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::durations::{since_named, InvalidDuration};
use super::timestamp::Timestamp;
use super::usage::{hour_ceil, hour_floor};
use crate::usage::Outcome;

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

/// A row of the one scan: `(hour, outcome)` for the series or `org_id` for the ranking,
/// the other columns null, and the sums.
type ScanRow = (Option<DateTime<Utc>>, Option<i16>, Option<Uuid>, i64, i64);

/// The overview `query` asks for.
pub async fn overview(pool: &PgPool, query: &FleetUsageQuery) -> Result<FleetUsage, sqlx::Error> {
    let refused: Vec<i16> = [
        Outcome::RateLimited,
        Outcome::QuotaExceeded,
        Outcome::PolicyDenied,
    ]
    .iter()
    .map(|outcome| i16::from(outcome.code()))
    .collect();
    let rows: Vec<ScanRow> = sqlx::query_as(
        "SELECT hour, outcome, org_id, sum(requests)::bigint, \
                coalesce(sum(requests) FILTER (WHERE outcome = ANY($3)), 0)::bigint \
         FROM usage_hourly WHERE hour >= $1 AND hour < $2 \
         GROUP BY GROUPING SETS ((hour, outcome), (org_id))",
    )
    .bind(query.from)
    .bind(query.to)
    .bind(&refused)
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

    let mut series = Vec::new();
    let mut orgs = Vec::new();
    for (hour, outcome, org_id, requests, refused) in rows {
        match (hour, outcome, org_id) {
            (Some(hour), Some(code), None) => {
                let outcome =
                    Outcome::from_code(i64::from(code)).map_or("other", |outcome| outcome.as_str());
                series.push(FleetUsagePoint {
                    period: Timestamp(hour),
                    outcome: outcome.to_owned(),
                    requests,
                });
            }
            (None, None, Some(org_id)) => orgs.push(OrgTraffic {
                org_id,
                name: None,
                requests,
                refused,
            }),
            _ => {}
        }
    }
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
