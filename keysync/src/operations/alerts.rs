//! Listing the anomaly alerts keysync raised (`keysync alerts`, `GET /v1/alerts`):
//! newest first, over every organization or one, raised in the last 7 days unless said
//! otherwise, of every kind or those asked for. How they are raised is
//! [`crate::anomaly`]'s.
//!
//! Reading is tolerant, like the audit trail's: kinds come back as text, so alerts
//! written by a newer keysync (with kinds this one does not know) still list.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::durations::{self, InvalidDuration};
use super::orgs::{self, OrgError};
use super::page::{self, PageRequest};
use super::timestamp::Timestamp;
use crate::anomaly::kind::AnomalyKind;

/// How far back a listing reaches without `--since`.
pub const DEFAULT_SINCE: &str = "7d";

/// Which alerts to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertFilter {
    /// Only this organization's.
    pub org_id: Option<Uuid>,
    /// Only those raised at or after this instant.
    pub since: DateTime<Utc>,
    /// Only these kinds; empty: every kind.
    pub kinds: Vec<AnomalyKind>,
}

/// A filter's parameters as given, text, checked by [`AlertParameters::check`].
#[derive(Debug, Clone, Default)]
pub struct AlertParameters<'a> {
    pub org_id: Option<Uuid>,
    pub since: Option<&'a str>,
    /// One kind or several, separated by commas.
    pub kind: Option<&'a str>,
}

/// Parameters that cannot be used; the message names them as the caller wrote them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAlertQuery {
    #[error(transparent)]
    Since(#[from] InvalidDuration),
    #[error(
        "invalid {name} '{value}': expected {} (several separated by commas)",
        AnomalyKind::NAMES
    )]
    Kind { name: &'static str, value: String },
}

impl AlertParameters<'_> {
    /// The filter, as of `now`; `since` and `kind` named `since_name` and `kind_name` in
    /// errors (`--since` on the command line, `since` in the API).
    pub fn check(
        &self,
        since_name: &'static str,
        kind_name: &'static str,
        now: DateTime<Utc>,
    ) -> Result<AlertFilter, InvalidAlertQuery> {
        let since = durations::since_named(since_name, self.since.unwrap_or(DEFAULT_SINCE), now)?;
        let mut kinds = Vec::new();
        if let Some(text) = self.kind {
            for name in text.split(',') {
                let kind = name.parse().map_err(|()| InvalidAlertQuery::Kind {
                    name: kind_name,
                    value: text.to_owned(),
                })?;
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
        Ok(AlertFilter {
            org_id: self.org_id,
            since,
            kinds,
        })
    }
}

/// An alert as listed: the organization, the kind and the hour, and the numbers it was
/// judged on.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertRecord {
    /// The alert's CloudEvent id on the usage export (derived from the organization, the
    /// kind and the hour).
    pub event_id: Uuid,
    pub org_id: Uuid,
    /// `spike`, `drop`, `refusals` or `upstream_5xx`.
    pub kind: String,
    /// The start of the UTC hour judged.
    #[schema(value_type = String, format = DateTime)]
    pub hour: Timestamp,
    /// False for a spike seen while its hour ran (`observed`: the requests so far).
    pub hour_complete: bool,
    /// Requests (spike, drop) or the share of the hour's requests (refusals,
    /// upstream_5xx), from 0 to 1.
    pub observed: f64,
    /// The median of the requests in the same hour of the baseline weeks, or the share
    /// over them.
    pub baseline: f64,
    /// What `observed` had to reach: at least (at most for a drop).
    pub threshold: f64,
    /// Every request of the organization in the hour.
    pub requests: i64,
    /// The requests the kind counts: all (spike, drop), refused by the gateway, or
    /// answered 5xx by the upstream.
    pub matching_requests: i64,
    /// The weeks the baseline was made of.
    pub baseline_weeks: i16,
    /// When the alert was raised.
    #[schema(value_type = String, format = DateTime)]
    pub raised_at: Timestamp,
}

/// A page of alerts, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertPage {
    pub items: Vec<AlertRecord>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(sqlx::FromRow)]
struct AlertRow {
    event_id: Uuid,
    org_id: Uuid,
    kind: String,
    hour: DateTime<Utc>,
    hour_complete: bool,
    observed: f64,
    baseline: f64,
    threshold: f64,
    requests: i64,
    matching_requests: i64,
    baseline_weeks: i16,
    raised_at: DateTime<Utc>,
}

impl From<AlertRow> for AlertRecord {
    fn from(row: AlertRow) -> AlertRecord {
        AlertRecord {
            event_id: row.event_id,
            org_id: row.org_id,
            kind: row.kind,
            hour: Timestamp(row.hour),
            hour_complete: row.hour_complete,
            observed: row.observed,
            baseline: row.baseline,
            threshold: row.threshold,
            requests: row.requests,
            matching_requests: row.matching_requests,
            baseline_weeks: row.baseline_weeks,
            raised_at: Timestamp(row.raised_at),
        }
    }
}

/// A page of the alerts `filter` selects, newest first, and where the next (older) page
/// starts. An unknown organization is an error rather than an empty page, so a typo in
/// its id does not look like "all quiet".
pub async fn list_page(
    pool: &PgPool,
    filter: &AlertFilter,
    page: PageRequest,
) -> Result<AlertPage, OrgError> {
    if let (Some(org_id), None) = (filter.org_id, page.after) {
        if !orgs::exists(pool, org_id).await? {
            return Err(OrgError::NotFound(org_id));
        }
    }
    // Only the conditions asked for, so each query can use its index.
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT event_id, org_id, kind, hour, hour_complete, observed, baseline, threshold, \
                requests, matching_requests, baseline_weeks, raised_at \
         FROM anomaly_alerts WHERE raised_at >= ",
    );
    query.push_bind(filter.since);
    if let Some(org_id) = filter.org_id {
        query.push(" AND org_id = ").push_bind(org_id);
    }
    if !filter.kinds.is_empty() {
        let kinds: Vec<&str> = filter.kinds.iter().map(|kind| kind.as_str()).collect();
        query.push(" AND kind = ANY(").push_bind(kinds).push(")");
    }
    page.push_newest_first(&mut query, "raised_at", "event_id");
    let rows: Vec<AlertRow> = query.build_query_as().fetch_all(pool).await?;
    let (rows, next_cursor) = page.cut(rows, |row| (row.raised_at, row.event_id));
    Ok(AlertPage {
        items: rows.into_iter().map(AlertRecord::from).collect(),
        next_cursor,
    })
}

/// Up to `limit` of the alerts `filter` selects, newest first.
pub async fn list(
    pool: &PgPool,
    filter: &AlertFilter,
    limit: u32,
) -> Result<Vec<AlertRecord>, OrgError> {
    page::collect(limit, |page| async move {
        let listed = list_page(pool, filter, page).await?;
        Ok((listed.items, listed.next_cursor))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-07T10:00:00Z".parse().unwrap()
    }

    fn check(since: Option<&str>, kind: Option<&str>) -> Result<AlertFilter, String> {
        AlertParameters {
            org_id: None,
            since,
            kind,
        }
        .check("--since", "--kind", now())
        .map_err(|error| error.to_string())
    }

    #[test]
    fn the_default_is_every_kind_of_the_last_week() {
        let filter = check(None, None).unwrap();
        assert_eq!(
            filter.since,
            "2026-11-30T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(filter.kinds.is_empty());
        assert_eq!(filter.org_id, None);
    }

    #[test]
    fn kinds_are_one_or_several_by_name() {
        let filter = check(Some("24h"), Some("spike, drop,spike")).unwrap();
        assert_eq!(filter.kinds, [AnomalyKind::Spike, AnomalyKind::Drop]);
        assert_eq!(
            filter.since,
            "2026-12-06T10:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            check(None, Some("spike,5xx")).unwrap_err(),
            "invalid --kind 'spike,5xx': expected spike, drop, refusals or upstream_5xx \
             (several separated by commas)"
        );
        assert!(check(Some("soon"), None)
            .unwrap_err()
            .starts_with("invalid --since 'soon': "));
    }
}
