//! `/v1/orgs/{org_id}/quota` and `/v1/keys/{key_id}/quota`: set or clear a monthly
//! quota, like `orgs set-quota` and `keys set-quota`. A value out of range is a 422 and
//! changes nothing; a key's body has no `reset_day` (its period is its organization's),
//! so one is an unknown field, a 400.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::documented::{
    BadRequest, Forbidden, KeyIdPath, NotFound, OrgIdPath, Throttled, TooLarge, Unauthorized,
    Unavailable, Unprocessable,
};
use super::error::ApiError;
use super::extract::JsonBody;
use super::org_scope::{KeyInPath, OrgInPath};
use super::ApiState;
use crate::operations::actor::Actor;
use crate::operations::quotas::{
    self, KeyQuotaChange, KeyQuotaOutcome, Monthly, OrgQuotaChange, OrgQuotaOutcome, ResetDay,
};

/// `keysync orgs set-quota ORG_ID --monthly N [--reset-day D]`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgQuotaRequest {
    /// Requests a month, shared by the organization's keys.
    #[schema(minimum = 1, maximum = 1000000000000000_i64)]
    pub monthly: i64,
    /// The day of the month (UTC midnight) each period starts; when absent, the quota's
    /// current day, else 1.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 28)]
    pub reset_day: Option<i64>,
}

/// `keysync keys set-quota KEY_ID --monthly N`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyQuotaRequest {
    /// Requests a month, for this key alone, in its organization's periods.
    #[schema(minimum = 1, maximum = 1000000000000000_i64)]
    pub monthly: i64,
}

fn monthly(value: i64) -> Result<Monthly, ApiError> {
    Monthly::new(value)
        .map_err(|error| ApiError::invalid_value(format!("invalid monthly {value}: {error}")))
}

impl OrgQuotaRequest {
    /// The change, with the CLI's ranges (422 outside them).
    pub fn change(&self) -> Result<OrgQuotaChange, ApiError> {
        Ok(OrgQuotaChange::Set {
            monthly: monthly(self.monthly)?,
            reset_day: self
                .reset_day
                .map(|day| {
                    ResetDay::new(day).map_err(|error| {
                        ApiError::invalid_value(format!("invalid reset_day {day}: {error}"))
                    })
                })
                .transpose()?,
        })
    }
}

/// Set the organization's monthly quota, one budget shared by its keys
/// (`keysync orgs set-quota ORG_ID --monthly N --reset-day D`).
#[utoipa::path(
    put,
    path = "/v1/orgs/{org_id}/quota",
    tag = "organizations",
    params(OrgIdPath),
    request_body = OrgQuotaRequest,
    responses(
        (status = 200, description = "The quota now, with its use this period (`changed`: false when it already was)", body = OrgQuotaOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn set_org_quota(
    State(state): State<ApiState>,
    caller: Caller,
    OrgInPath(org_id): OrgInPath,
    JsonBody(request): JsonBody<OrgQuotaRequest>,
) -> Result<Json<OrgQuotaOutcome>, ApiError> {
    let change = request.change()?;
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        quotas::set_org_quota(state.pool(), actor, org_id, change, Utc::now()).await?,
    ))
}

/// Clear the organization's quota (`keysync orgs set-quota ORG_ID --clear`).
#[utoipa::path(
    delete,
    path = "/v1/orgs/{org_id}/quota",
    tag = "organizations",
    params(OrgIdPath),
    responses(
        (status = 200, description = "No quota now (`changed`: false when it had none)", body = OrgQuotaOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn clear_org_quota(
    State(state): State<ApiState>,
    caller: Caller,
    OrgInPath(org_id): OrgInPath,
) -> Result<Json<OrgQuotaOutcome>, ApiError> {
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        quotas::set_org_quota(
            state.pool(),
            actor,
            org_id,
            OrgQuotaChange::Clear,
            Utc::now(),
        )
        .await?,
    ))
}

/// Give a key a monthly quota of its own (`keysync keys set-quota KEY_ID --monthly N`).
#[utoipa::path(
    put,
    path = "/v1/keys/{key_id}/quota",
    tag = "keys",
    params(KeyIdPath),
    request_body = KeyQuotaRequest,
    responses(
        (status = 200, description = "The key's quota now, with its use this period (`changed`: false when it already was)", body = KeyQuotaOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn set_key_quota(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
    JsonBody(request): JsonBody<KeyQuotaRequest>,
) -> Result<Json<KeyQuotaOutcome>, ApiError> {
    let change = KeyQuotaChange::Set(monthly(request.monthly)?);
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        quotas::set_key_quota(state.pool(), actor, key_id, change, Utc::now()).await?,
    ))
}

/// Clear a key's own quota (`keysync keys set-quota KEY_ID --clear`).
#[utoipa::path(
    delete,
    path = "/v1/keys/{key_id}/quota",
    tag = "keys",
    params(KeyIdPath),
    responses(
        (status = 200, description = "No quota of its own now (`changed`: false when it had none)", body = KeyQuotaOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn clear_key_quota(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
) -> Result<Json<KeyQuotaOutcome>, ApiError> {
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        quotas::set_key_quota(
            state.pool(),
            actor,
            key_id,
            KeyQuotaChange::Clear,
            Utc::now(),
        )
        .await?,
    ))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn quotas_take_the_cli_ranges() {
        let org = |monthly, reset_day| OrgQuotaRequest { monthly, reset_day }.change();
        assert_eq!(
            org(10, Some(28)).unwrap(),
            OrgQuotaChange::Set {
                monthly: Monthly::new(10).unwrap(),
                reset_day: Some(ResetDay::new(28).unwrap()),
            }
        );
        assert!(org(1_000_000_000_000_000, None).is_ok());
        for (monthly, reset_day, field) in [
            (0, None, "monthly"),
            (-1, None, "monthly"),
            (1_000_000_000_000_001, None, "monthly"),
            (5, Some(0), "reset_day"),
            (5, Some(29), "reset_day"),
        ] {
            let error = org(monthly, reset_day).unwrap_err();
            assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert!(
                error.message.starts_with(&format!("invalid {field} ")),
                "{error:?}"
            );
        }
        let refused: Result<KeyQuotaRequest, _> =
            serde_json::from_value(serde_json::json!({"monthly": 5, "reset_day": 3}));
        assert!(refused.is_err(), "a key has no reset day of its own");
    }
}
