//! `/v1/orgs/{org_id}/usage`: what the gateways metered for an organization
//! (`keysync usage`), answered as the CLI's `--json` prints it. Readable with a
//! read-only token, like every `GET`.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::documented::{BadRequest, NotFound, OrgIdPath, Throttled, Unauthorized, Unavailable};
use super::error::ApiError;
use super::extract::QueryParams;
use super::org_scope::OrgInPath;
use super::ApiState;
use crate::operations::usage::{self, UsageParameters, UsageReport, API_NAMES};

/// `?key_id=&since=&from=&to=&by=` of a usage report.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQueryParams {
    /// Only this key of the organization.
    pub key_id: Option<Uuid>,
    /// How far back: a duration such as `30d` (the default), `24h` or `90m`; not with
    /// `from` or `to`.
    pub since: Option<String>,
    /// Start of the range: a date (`2026-03-01`, midnight UTC) or an RFC 3339 time.
    pub from: Option<String>,
    /// End of the range, exclusive (default now); needs `from`.
    pub to: Option<String>,
    /// Rows by `hour`, `day` (the default), `month` (UTC), `key`, `endpoint` (the name of
    /// the route that served the requests; `-` for a route without one) or `status`.
    pub by: Option<String>,
}

/// An organization's usage in a time range (`[from, to)`, in whole UTC hours), grouped
/// by hour, day, month, key, endpoint or outcome, with `total_requests`: every request
/// of its keys a gateway counted and flushed (`keysync usage --json`).
#[utoipa::path(
    get,
    path = "/v1/orgs/{org_id}/usage",
    tag = "usage",
    params(OrgIdPath, UsageQueryParams),
    responses(
        (status = 200, description = "The usage report", body = UsageReport),
        BadRequest, Unauthorized, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn get_usage(
    State(state): State<ApiState>,
    OrgInPath(org_id): OrgInPath,
    QueryParams(query): QueryParams<UsageQueryParams>,
) -> Result<Json<UsageReport>, ApiError> {
    let checked = UsageParameters {
        since: query.since.as_deref(),
        from: query.from.as_deref(),
        to: query.to.as_deref(),
        by: query.by.as_deref(),
    }
    .check(org_id, query.key_id, API_NAMES, Utc::now())
    .map_err(|error| ApiError::invalid_request(error.to_string()))?;
    Ok(Json(usage::report(&state.pool, &checked).await?))
}
