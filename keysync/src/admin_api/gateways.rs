//! `/v1/gateways`: the fleet, each gateway with the revision it serves, its lag behind
//! the database, when it last reported, its mode and version (`keysync gateways`). The
//! fleet serves every organization: a token limited to one may not read it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::auth::Caller;
use super::documented::{Forbidden, Throttled, Unauthorized, Unavailable};
use super::error::ApiError;
use super::ApiState;
use crate::database::describe_sqlx;
use crate::fleet::revocation::RevocationError;
use crate::fleet::roster::{self, Roster};
use crate::fleet::FleetError;

/// The gateways that reported to any keysync replica: live ones first (seen within
/// `KEYSYNC_GATEWAY_LIVE_WINDOW`), then stale ones (`stale`: they no longer count in
/// revocation receipts), each forgotten a day after it was last seen.
#[utoipa::path(
    get,
    path = "/v1/gateways",
    tag = "fleet",
    responses(
        (status = 200, description = "The fleet and the database's revision", body = Roster),
        Unauthorized, Forbidden, Throttled, Unavailable
    )
)]
pub async fn list_gateways(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Roster>, ApiError> {
    if caller.org_id.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "org_scoped_token",
            "this admin token is limited to one organization: it cannot read the fleet",
        ));
    }
    let roster = roster::read(state.pool(), state.fleet().live_window).await?;
    Ok(Json(roster))
}

impl From<FleetError> for ApiError {
    fn from(error: FleetError) -> ApiError {
        match error {
            FleetError::Database(error) => ApiError::database(&error),
        }
    }
}

impl From<RevocationError> for ApiError {
    fn from(error: RevocationError) -> ApiError {
        match error {
            RevocationError::Key(error) => error.into(),
            // The key is revoked: say so, rather than "nothing was changed".
            RevocationError::Fleet { key_id, error } => {
                let FleetError::Database(cause) = &error;
                tracing::error!("database error: admin api: {}", describe_sqlx(cause));
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "receipt_unavailable",
                    format!(
                        "key {key_id} is revoked, but the gateways' receipt cannot be read now"
                    ),
                )
            }
        }
    }
}
