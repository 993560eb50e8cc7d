//! Reading the usage rollup (`keysync usage`, `GET /v1/orgs/{org_id}/usage`): one
//! organization's requests in a time range, all keys or one, grouped by hour, day,
//! month (UTC), key, endpoint (the route's name) or outcome, with the total.
//!
//! The range is half-open, `[from, to)`, widened to whole hours (the rollup's grain):
//! `from` down to its hour, `to` up to the next one. The default is the last 30 days
//! (`--since 30d`). A date without a time is that day's midnight, UTC, so
//! `--from 2026-03-01 --to 2026-04-01` is March.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

use super::durations;
use super::orgs::{self, OrgError};
use super::timestamp::Timestamp;
use crate::usage::Outcome;

/// How far back a report reaches without `--since` or `--from`.
pub const DEFAULT_SINCE: &str = "30d";

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Hour,
    Day,
    Month,
    Key,
    Endpoint,
    Status,
}

impl GroupBy {
    pub const NAMES: &'static str = "hour, day, month, key, endpoint or status";

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Hour => "hour",
            GroupBy::Day => "day",
            GroupBy::Month => "month",
            GroupBy::Key => "key",
            GroupBy::Endpoint => "endpoint",
            GroupBy::Status => "status",
        }
    }
}

impl FromStr for GroupBy {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text.trim() {
            "hour" => Ok(GroupBy::Hour),
            "day" => Ok(GroupBy::Day),
            "month" => Ok(GroupBy::Month),
            "key" => Ok(GroupBy::Key),
            "endpoint" => Ok(GroupBy::Endpoint),
            "status" => Ok(GroupBy::Status),
            _ => Err(()),
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What callers name the parameters in errors: `--since` on the command line, `since`
/// in the API.
#[derive(Debug, Clone, Copy)]
pub struct ParameterNames {
    pub since: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub by: &'static str,
}

pub const CLI_NAMES: ParameterNames = ParameterNames {
    since: "--since",
    from: "--from",
    to: "--to",
    by: "--by",
};

pub const API_NAMES: ParameterNames = ParameterNames {
    since: "since",
    from: "from",
    to: "to",
    by: "by",
};

/// A report's parameters as given, text, checked by [`UsageParameters::check`].
#[derive(Debug, Clone, Default)]
pub struct UsageParameters<'a> {
    pub since: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub by: Option<&'a str>,
}

/// Parameters that cannot be used; the message names them as the caller wrote them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidUsageQuery(pub String);

/// A checked report request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub org_id: Uuid,
    pub key_id: Option<Uuid>,
    /// Whole hours, `from < to`.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub by: GroupBy,
}

/// `2026-03-01` (midnight UTC) or an RFC 3339 time.
fn parse_instant(name: &str, text: &str) -> Result<DateTime<Utc>, InvalidUsageQuery> {
    let trimmed = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        if let Some(midnight) = day.and_hms_opt(0, 0, 0) {
            return Ok(midnight.and_utc());
        }
    }
    DateTime::parse_from_rfc3339(trimmed)
        .map(|at| at.to_utc())
        .map_err(|_| {
            InvalidUsageQuery(format!(
                "invalid {name} '{text}': expected a date (2026-03-01) or a time \
                 (2026-03-01T12:00:00Z)"
            ))
        })
}

pub(crate) fn hour_floor(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

pub(crate) fn hour_ceil(at: DateTime<Utc>) -> DateTime<Utc> {
    let floor = hour_floor(at);
    if floor == at {
        at
    } else {
        floor + TimeDelta::hours(1)
    }
}

impl UsageParameters<'_> {
    /// Checks the parameters for `org_id` (and `key_id`), as of `now`.
    pub fn check(
        &self,
        org_id: Uuid,
        key_id: Option<Uuid>,
        names: ParameterNames,
        now: DateTime<Utc>,
    ) -> Result<UsageQuery, InvalidUsageQuery> {
        let by = match self.by {
            None => GroupBy::Day,
            Some(text) => text.parse().map_err(|()| {
                InvalidUsageQuery(format!(
                    "invalid {} '{text}': expected {}",
                    names.by,
                    GroupBy::NAMES
                ))
            })?,
        };
        let (from, to) = match (self.since, self.from, self.to) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(InvalidUsageQuery(format!(
                    "{} cannot be combined with {} or {}",
                    names.since, names.from, names.to
                )))
            }
            (_, None, Some(_)) => {
                return Err(InvalidUsageQuery(format!(
                    "{} needs {} as well",
                    names.to, names.from
                )))
            }
            (since, None, None) => {
                let text = since.unwrap_or(DEFAULT_SINCE);
                let from = durations::since_named(names.since, text, now)
                    .map_err(|error| InvalidUsageQuery(error.to_string()))?;
                (from, now)
            }
            (None, Some(from), to) => {
                let from = parse_instant(names.from, from)?;
                let to = to.map_or(Ok(now), |to| parse_instant(names.to, to))?;
                (from, to)
            }
        };
        if from >= to {
            return Err(InvalidUsageQuery(format!(
                "invalid range: {} {} is not before {} {}",
                names.from,
                Timestamp(from),
                names.to,
                Timestamp(to)
            )));
        }
        Ok(UsageQuery {
            org_id,
            key_id,
            from: hour_floor(from),
            to: hour_ceil(to),
            by,
        })
    }
}

/// One row of a report: the group (one of `period`, `key_id`, `endpoint`, `outcome`, as
/// `by` says) and its sums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    /// The start of the hour, day or month (UTC), for `by` hour, day or month.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub period: Option<Timestamp>,
    /// The key, for `by` key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Uuid>,
    /// The name of the route that served the requests, for `by` endpoint: as the
    /// gateway's configuration names it, `-` for a route without a name, `(other)` for
    /// names the gateway did not count as themselves (not 1 to 64 of
    /// `[A-Za-z0-9._:/-]`, or beyond its bound on distinct endpoints).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// What happened to the requests, for `by` status: `2xx`, `3xx`, `4xx`, `5xx` (the
    /// upstream's answer), `other` (1xx or anything else), `rate_limited`,
    /// `quota_exceeded`, `policy_denied` (refused by the gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    pub requests: i64,
    /// Sum of the timed requests' durations, microseconds (request start to response
    /// headers). The gateway times a sample of a busy key's requests, and none it
    /// answered itself: the mean is this over the four buckets' total.
    pub duration_us: i64,
    /// Timed requests that took at most 10 ms, at most 100 ms, at most 1 s, longer.
    pub le_10ms: i64,
    pub le_100ms: i64,
    pub le_1s: i64,
    pub over_1s: i64,
    /// Request and response body bytes, where the gateway knew them.
    pub request_bytes: i64,
    pub response_bytes: i64,
}

/// A report: what was asked, the total and the rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub org_id: Uuid,
    /// The key the report is limited to; null for all the organization's keys.
    pub key_id: Option<Uuid>,
    /// The range, `[from, to)`, in whole hours.
    #[schema(value_type = String, format = DateTime)]
    pub from: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub to: Timestamp,
    pub by: GroupBy,
    /// Requests in the range, every outcome.
    pub total_requests: i64,
    /// Ordered by period, by requests (most first) for keys and endpoints, by outcome.
    pub rows: Vec<UsageRow>,
}

/// A row as the query returns it: period, key, endpoint, outcome (whichever is grouped
/// by), then the sums in [`crate::usage::store::VALUE_COLUMNS`] order.
type Row = (
    Option<DateTime<Utc>>,
    Option<Uuid>,
    Option<String>,
    Option<i16>,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);

/// The report `query` asks for; `OrgError::NotFound` for an unknown organization.
pub async fn report(pool: &PgPool, query: &UsageQuery) -> Result<UsageReport, OrgError> {
    if !orgs::exists(pool, query.org_id).await? {
        return Err(OrgError::NotFound(query.org_id));
    }
    let (group, order) = match query.by {
        GroupBy::Hour => ("hour, NULL::uuid, NULL::text, NULL::smallint", "1"),
        GroupBy::Day => (
            "date_trunc('day', hour, 'UTC'), NULL::uuid, NULL::text, NULL::smallint",
            "1",
        ),
        GroupBy::Month => (
            "date_trunc('month', hour, 'UTC'), NULL::uuid, NULL::text, NULL::smallint",
            "1",
        ),
        GroupBy::Key => (
            "NULL::timestamptz, key_id, NULL::text, NULL::smallint",
            "5 DESC, 2",
        ),
        GroupBy::Endpoint => (
            "NULL::timestamptz, NULL::uuid, endpoint, NULL::smallint",
            "5 DESC, 3",
        ),
        GroupBy::Status => ("NULL::timestamptz, NULL::uuid, NULL::text, outcome", "4"),
    };
    // `group` and `order` are fixed strings above, never input.
    let statement = format!(
        "SELECT {group}, sum(requests)::bigint, sum(duration_us)::bigint, \
                sum(le_10ms)::bigint, sum(le_100ms)::bigint, sum(le_1s)::bigint, \
                sum(over_1s)::bigint, sum(request_bytes)::bigint, sum(response_bytes)::bigint \
         FROM usage_hourly \
         WHERE org_id = $1 AND ($2::uuid IS NULL OR key_id = $2) AND hour >= $3 AND hour < $4 \
         GROUP BY 1, 2, 3, 4 ORDER BY {order}"
    );
    let rows: Vec<Row> = sqlx::query_as(AssertSqlSafe(statement))
        .bind(query.org_id)
        .bind(query.key_id)
        .bind(query.from)
        .bind(query.to)
        .fetch_all(pool)
        .await?;
    let mut total: i64 = 0;
    let rows: Vec<UsageRow> = rows
        .into_iter()
        .map(
            |(
                period,
                key_id,
                endpoint,
                outcome,
                requests,
                duration_us,
                le_10ms,
                le_100ms,
                le_1s,
                over_1s,
                request_bytes,
                response_bytes,
            )| {
                total = total.saturating_add(requests);
                UsageRow {
                    period: period.map(Timestamp),
                    key_id,
                    endpoint,
                    outcome: outcome
                        .and_then(|code| Outcome::from_code(i64::from(code)))
                        .map(|outcome| outcome.as_str().to_owned()),
                    requests,
                    duration_us,
                    le_10ms,
                    le_100ms,
                    le_1s,
                    over_1s,
                    request_bytes,
                    response_bytes,
                }
            },
        )
        .collect();
    Ok(UsageReport {
        org_id: query.org_id,
        key_id: query.key_id,
        from: Timestamp(query.from),
        to: Timestamp(query.to),
        by: query.by,
        total_requests: total,
        rows,
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

    fn check(parameters: UsageParameters<'_>) -> Result<UsageQuery, String> {
        parameters
            .check(Uuid::from_u128(1), None, CLI_NAMES, now())
            .map_err(|error| error.to_string())
    }

    #[test]
    fn the_default_is_thirty_days_by_day_in_whole_hours() {
        let query = check(UsageParameters::default()).unwrap();
        assert_eq!(query.by, GroupBy::Day);
        assert_eq!(Timestamp(query.from).to_string(), "2026-02-08T10:00:00Z");
        assert_eq!(Timestamp(query.to).to_string(), "2026-03-10T11:00:00Z");
    }

    #[test]
    fn dates_are_midnights_and_times_are_taken_as_given() {
        let query = check(UsageParameters {
            from: Some("2026-02-01"),
            to: Some("2026-03-01T01:00:00+01:00"),
            by: Some("month"),
            ..UsageParameters::default()
        })
        .unwrap();
        assert_eq!(Timestamp(query.from).to_string(), "2026-02-01T00:00:00Z");
        assert_eq!(Timestamp(query.to).to_string(), "2026-03-01T00:00:00Z");
        assert_eq!(query.by, GroupBy::Month);
        let until_now = check(UsageParameters {
            from: Some("2026-03-10"),
            by: Some(" key "),
            ..UsageParameters::default()
        })
        .unwrap();
        assert_eq!(Timestamp(until_now.to).to_string(), "2026-03-10T11:00:00Z");
        assert_eq!(until_now.by, GroupBy::Key);
        let by_endpoint = check(UsageParameters {
            by: Some("endpoint"),
            ..UsageParameters::default()
        })
        .unwrap();
        assert_eq!(by_endpoint.by, GroupBy::Endpoint);
    }

    #[test]
    fn bad_parameters_are_one_clear_line() {
        for (parameters, expected) in [
            (
                UsageParameters { by: Some("week"), ..Default::default() },
                "invalid --by 'week': expected hour, day, month, key, endpoint or status",
            ),
            (
                UsageParameters { since: Some("7d"), from: Some("2026-01-01"), ..Default::default() },
                "--since cannot be combined with --from or --to",
            ),
            (
                UsageParameters { to: Some("2026-01-01"), ..Default::default() },
                "--to needs --from as well",
            ),
            (
                UsageParameters { from: Some("2026-02-01"), to: Some("2026-01-01"), ..Default::default() },
                "invalid range: --from 2026-02-01T00:00:00Z is not before --to 2026-01-01T00:00:00Z",
            ),
            (
                UsageParameters { from: Some("yesterday"), ..Default::default() },
                "invalid --from 'yesterday': expected a date (2026-03-01) or a time (2026-03-01T12:00:00Z)",
            ),
            (
                UsageParameters { from: Some("2026-02-30"), to: Some("2026-03-01"), ..Default::default() },
                "invalid --from '2026-02-30'",
            ),
            (
                UsageParameters { since: Some("-1d"), ..Default::default() },
                "invalid --since '-1d': must not be negative",
            ),
        ] {
            let message = check(parameters).unwrap_err();
            assert!(message.starts_with(expected), "{message}");
            assert!(!message.contains('\n'));
        }
        let message = UsageParameters {
            by: Some("x"),
            ..Default::default()
        }
        .check(Uuid::nil(), None, API_NAMES, now())
        .unwrap_err()
        .to_string();
        assert!(message.starts_with("invalid by 'x'"), "{message}");
    }
}
