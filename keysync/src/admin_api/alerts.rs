//! `/v1/alerts`: the anomaly alerts keysync raised, newest first, a page at a time
//! (`keysync alerts`). Readable with a read-only token, like every `GET`; a token
//! limited to one organization reads that organization's alerts alone.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::auth::Caller;
use super::documented::{BadRequest, NotFound, Throttled, Unauthorized, Unavailable};
use super::error::ApiError;
use super::extract::QueryParams;
use super::org_scope::reach_org;
use super::{ApiState, ListQuery};
use crate::operations::alerts::{self, AlertPage, AlertParameters};

/// `?org_id=&since=&kind=&limit=&cursor=` of the alerts.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only this organization's alerts.
    pub org_id: Option<Uuid>,
    /// Only alerts raised this recently: a duration such as `7d` (the default), `24h` or
    /// `30m`.
    pub since: Option<String>,
    /// Only these kinds: `spike`, `drop`, `refusals`, `upstream_5xx`, several separated
    /// by commas.
    pub kind: Option<String>,
    /// Alerts in the page: 1 to 1000 (larger values are capped), default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// The anomaly alerts keysync raised, newest first, a page at a time: hours in which an
/// organization's traffic departed from its baseline (the same hour of the week over
/// the last weeks): a `spike` of requests, a `drop` of a busy hour, a jump in the share
/// of requests the gateway refused (`refusals`) or the upstream answered 5xx
/// (`upstream_5xx`); one per organization, kind and hour (`keysync alerts --json`).
#[utoipa::path(
    get,
    path = "/v1/alerts",
    tag = "usage",
    params(AlertsQuery),
    responses(
        (status = 200, description = "A page of alerts, newest first", body = AlertPage),
        BadRequest, Unauthorized, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn list_alerts(
    State(state): State<ApiState>,
    caller: Caller,
    QueryParams(query): QueryParams<AlertsQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    let mut org_id = query.org_id;
    if let Some(own) = caller.org_id {
        org_id = Some(reach_org(&caller, org_id.unwrap_or(own))?);
    }
    let filter = AlertParameters {
        org_id,
        since: query.since.as_deref(),
        kind: query.kind.as_deref(),
    }
    .check("since", "kind", Utc::now())
    .map_err(|error| ApiError::invalid_request(error.to_string()))?;
    let page = ListQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    Ok(Json(alerts::list_page(&state.pool, &filter, page).await?))
}
