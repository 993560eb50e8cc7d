//! `/v1/keys/{key_id}/scopes` and `/v1/keys/{key_id}/allowlist`: replace or clear the
//! scopes a key grants and the networks it may be used from, like `keys set-scopes` and
//! `keys set-allowlist`. A value the contract refuses is a 422 and changes nothing.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::documented::{
    BadRequest, Forbidden, KeyIdPath, NotFound, Throttled, TooLarge, Unauthorized, Unavailable,
    Unprocessable,
};
use super::error::ApiError;
use super::extract::JsonBody;
use super::org_scope::KeyInPath;
use super::ApiState;
use crate::operations::actor::Actor;
use crate::operations::key_policy::{
    self, Allowlist, KeyAllowlistOutcome, KeyScopesOutcome, Scopes,
};

/// `keysync keys set-scopes KEY_ID --scope ...`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopesRequest {
    /// The scopes the key grants from now on, replacing its others: 1 to 64 characters
    /// of `[a-z0-9:._-]` each, at most 32 (`[]` clears them, like `DELETE`).
    pub scopes: Vec<String>,
}

/// `keysync keys set-allowlist KEY_ID --allow-cidr ...`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowlistRequest {
    /// The networks the key may be used from from now on, such as `203.0.113.0/24` or
    /// `2001:db8::/32` (an address alone means itself), at most 16; `[]` clears the
    /// allowlist (anywhere), like `DELETE`. A list that admits no address is refused.
    pub allowed_networks: Vec<String>,
}

/// Replace the scopes a key grants (`keysync keys set-scopes KEY_ID --scope S ...`).
#[utoipa::path(
    put,
    path = "/v1/keys/{key_id}/scopes",
    tag = "keys",
    params(KeyIdPath),
    request_body = ScopesRequest,
    responses(
        (status = 200, description = "The key's scopes now (`changed`: false when they already were)", body = KeyScopesOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn set_key_scopes(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
    JsonBody(request): JsonBody<ScopesRequest>,
) -> Result<Json<KeyScopesOutcome>, ApiError> {
    let scopes = Scopes::parse(&request.scopes).map_err(|error| named("scopes", error))?;
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        key_policy::set_scopes(state.pool(), actor, key_id, &scopes).await?,
    ))
}

/// Clear a key's scopes: routes that require a scope refuse it
/// (`keysync keys set-scopes KEY_ID --clear`).
#[utoipa::path(
    delete,
    path = "/v1/keys/{key_id}/scopes",
    tag = "keys",
    params(KeyIdPath),
    responses(
        (status = 200, description = "The key's scopes now: none", body = KeyScopesOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn clear_key_scopes(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
) -> Result<Json<KeyScopesOutcome>, ApiError> {
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        key_policy::set_scopes(state.pool(), actor, key_id, &Scopes::default()).await?,
    ))
}

/// Replace the networks a key may be used from
/// (`keysync keys set-allowlist KEY_ID --allow-cidr C ...`).
#[utoipa::path(
    put,
    path = "/v1/keys/{key_id}/allowlist",
    tag = "keys",
    params(KeyIdPath),
    request_body = AllowlistRequest,
    responses(
        (status = 200, description = "The key's allowlist now (`changed`: false when it already was)", body = KeyAllowlistOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn set_key_allowlist(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
    JsonBody(request): JsonBody<AllowlistRequest>,
) -> Result<Json<KeyAllowlistOutcome>, ApiError> {
    let allowlist = Allowlist::parse(&request.allowed_networks)
        .map_err(|error| named("allowed_networks", error))?;
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        key_policy::set_allowlist(state.pool(), actor, key_id, &allowlist).await?,
    ))
}

/// Clear a key's allowlist: it may be used from anywhere
/// (`keysync keys set-allowlist KEY_ID --clear`).
#[utoipa::path(
    delete,
    path = "/v1/keys/{key_id}/allowlist",
    tag = "keys",
    params(KeyIdPath),
    responses(
        (status = 200, description = "The key's allowlist now: none (anywhere)", body = KeyAllowlistOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn clear_key_allowlist(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
) -> Result<Json<KeyAllowlistOutcome>, ApiError> {
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        key_policy::set_allowlist(state.pool(), actor, key_id, &Allowlist::default()).await?,
    ))
}

/// A refused value, 422, naming the field it came in.
pub(super) fn named(field: &str, error: key_policy::InvalidPolicy) -> ApiError {
    ApiError::invalid_value(format!("invalid {field}: {error}"))
}
