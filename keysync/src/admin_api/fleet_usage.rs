//! `/v1/usage`: the whole fleet's usage by hour and outcome, and the organizations with
//! the most traffic and refusals (the console's overview). A token limited to one
//! organization is refused: the fleet is every organization's.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;

use super::auth::Caller;
use super::documented::{BadRequest, Forbidden, Throttled, Unauthorized, Unavailable};
use super::error::ApiError;
use super::extract::QueryParams;
use super::ApiState;
use crate::operations::fleet_usage::{self, FleetUsage, FleetUsageQuery};

/// `?since=&top=` of the overview.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FleetUsageParams {
    /// How far back: a duration such as `24h` (the default), `7d` or `30d`.
    pub since: Option<String>,
    /// Organizations in each ranking: 1 to 100 (larger values are capped), default 10.
    #[param(minimum = 1, maximum = 100)]
    pub top: Option<u32>,
}

/// Every organization's requests by hour and outcome over the last `since` (whole UTC
/// hours), the requests refused for want of a valid key (`unauthenticated`), and the
/// organizations with the most requests and the most refusals. Not for a token limited
/// to one organization (403 `org_scoped_token`).
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "usage",
    params(FleetUsageParams),
    responses(
        (status = 200, description = "The fleet's usage", body = FleetUsage),
        BadRequest, Unauthorized, Forbidden, Throttled, Unavailable
    )
)]
pub async fn get_fleet_usage(
    State(state): State<ApiState>,
    caller: Caller,
    QueryParams(params): QueryParams<FleetUsageParams>,
) -> Result<Json<FleetUsage>, ApiError> {
    if caller.org_id.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "org_scoped_token",
            "this admin token is limited to one organization: the fleet's usage is every \
             organization's (read yours at /v1/orgs/{org_id}/usage)",
        ));
    }
    let query = FleetUsageQuery::new(params.since.as_deref(), params.top, Utc::now())
        .map_err(|error| ApiError::invalid_request(error.to_string()))?;
    Ok(Json(fleet_usage::overview(state.pool(), &query).await?))
}
