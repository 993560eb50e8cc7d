//! `/v1/keys` and `/v1/orgs/{org_id}/keys`: create a key (shown once, with its scopes
//! and allowlist), list an organization's keys, get, revoke, rotate (the new key shown
//! once), set or clear a key's own rate limit or its metadata, import keys (JSON
//! Lines). Scopes and allowlists of existing keys are [`super::key_policy`]'s. A token
//! limited to one organization makes keys in that one only ([`super::org_scope`]).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::Caller;
use super::documented::{
    BadRequest, Forbidden, IdempotencyHeader, KeyIdPath, NotFound, OrgIdPath, Throttled, TooLarge,
    Unauthorized, Unavailable, Unprocessable,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{IdempotencyKey, ImportBody, JsonBody, QueryParams};
use super::idempotency::fingerprint;
use super::key_policy::named;
use super::org_scope::{reach_org, KeyInPath, OrgInPath};
use super::orgs::LimitRequest;
use super::{create_once, ApiState, ListQuery};
use crate::fleet::receipt::MAX_WAIT;
use crate::fleet::revocation::{self, ConfirmedRevocation, Wait};
use crate::operations::actor::Actor;
use crate::operations::durations::{expiry_named, grace_named, since_named};
use crate::operations::key_import::{self, ImportedKeys};
use crate::operations::key_metadata::{self, KeyMetadataOutcome};
use crate::operations::key_policy::{Allowlist, Scopes};
use crate::operations::key_secret::KeyEnvironment;
use crate::operations::keys::{
    self, CreatedKey, KeyFilter, KeyPage, ListedKey, NewKey, OldKeyFate, RotatedKey,
};
use crate::operations::limits::{self, KeyLimitOutcome, LimitChange};
use crate::operations::metadata::Metadata;
use crate::operations::name::Name;

/// `keysync keys create`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// The organization that owns the key.
    pub org_id: Uuid,
    /// 1 to 200 characters.
    pub name: String,
    /// `live` (default) or `test`: the key starts `sk_live_` or `sk_test_`.
    #[serde(default)]
    pub env: Option<KeyEnvironment>,
    /// Lifetime, such as `90d`, `24h`, `30m` or `45s`; the key never expires without it.
    #[serde(default)]
    pub expires_in: Option<String>,
    /// The scopes the key grants, such as `orders:read`: 1 to 64 characters of
    /// `[a-z0-9:._-]` each, at most 32. None by default: routes that require a scope
    /// refuse the key.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The networks the key may be used from, such as `203.0.113.0/24` or
    /// `2001:db8::/32`, at most 16. None by default: anywhere.
    #[serde(default)]
    pub allowed_networks: Option<Vec<String>>,
    /// A JSON object of at most 1 KiB, kept and returned as given (`--metadata`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

/// `keysync keys set-metadata`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyMetadataRequest {
    /// A JSON object of at most 1 KiB, kept and returned as given; it replaces the
    /// key's metadata.
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

/// `?limit=&cursor=&unused_since=` of a key listing.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyListQuery {
    /// Rows in the page: 1 to 1000 (larger values are capped), default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Only keys nobody used for this long, such as `30d` (`--unused-since`): never
    /// used, or last used before then; keys created since are left out.
    pub unused_since: Option<String>,
}

/// `keysync keys rotate`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// How long the old key keeps working, such as `24h` (the default), `30m` or `0s`
    /// (`0s` revokes it at once); a sooner expiry of its own is kept.
    #[serde(default)]
    pub grace: Option<String>,
    /// Lifetime of the new key, such as `90d`; it never expires without it.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// The grace of a rotation when none is given.
pub const DEFAULT_GRACE: &str = "24h";

/// Create a key; the answer holds the key itself, shown only this once
/// (`keysync keys create`).
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    params(IdempotencyHeader),
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Created; `key` is shown only this once", body = CreatedKey),
        (status = 409, description = "A retry whose first answer cannot be replayed: it was sealed by another keysync process; nothing was made now (`idempotent_answer_unavailable`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn create_key(
    State(state): State<ApiState>,
    caller: Caller,
    idempotency_key: IdempotencyKey,
    JsonBody(request): JsonBody<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let new_key = NewKey {
        org_id: reach_org(&caller, request.org_id)?,
        name: Name::of_key(&request.name)?,
        environment: request.env.unwrap_or(KeyEnvironment::Live),
        expires_at: request
            .expires_in
            .as_deref()
            .map(|text| expiry_named("expires_in", text, Utc::now()))
            .transpose()?,
        scopes: Scopes::parse(request.scopes.as_deref().unwrap_or_default())
            .map_err(|error| named("scopes", error))?,
        allowed_networks: Allowlist::parse(request.allowed_networks.as_deref().unwrap_or_default())
            .map_err(|error| named("allowed_networks", error))?,
        metadata: request.metadata.clone(),
    };
    let actor = Actor::AdminToken(caller.token_id);
    let fingerprint = fingerprint("keys.create", None, &request);
    create_once(
        &state,
        caller.0,
        &idempotency_key,
        fingerprint,
        async |connection| Ok(keys::create_on(connection, actor, new_key).await?),
    )
    .await
}

/// List an organization's keys (prefixes, never keys) with the limit each runs under,
/// oldest first, a page at a time (`keysync keys list --org-id`).
#[utoipa::path(
    get,
    path = "/v1/orgs/{org_id}/keys",
    tag = "keys",
    params(OrgIdPath, KeyListQuery),
    responses(
        (status = 200, description = "A page of keys", body = KeyPage),
        BadRequest, Unauthorized, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn list_keys(
    State(state): State<ApiState>,
    OrgInPath(org_id): OrgInPath,
    QueryParams(query): QueryParams<KeyListQuery>,
) -> Result<Json<KeyPage>, ApiError> {
    let filter = KeyFilter {
        unused_since: query
            .unused_since
            .as_deref()
            .map(|text| since_named("unused_since", text, Utc::now()))
            .transpose()?,
    };
    let page = ListQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    Ok(Json(
        keys::list_page(&state.pool, org_id, filter, page).await?,
    ))
}

/// One key as listed: prefix, status, limit; never the key.
#[utoipa::path(
    get,
    path = "/v1/keys/{key_id}",
    tag = "keys",
    params(KeyIdPath),
    responses(
        (status = 200, description = "The key", body = ListedKey),
        BadRequest, Unauthorized, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn get_key(
    State(state): State<ApiState>,
    KeyInPath(key_id): KeyInPath,
) -> Result<Json<ListedKey>, ApiError> {
    Ok(Json(keys::get(&state.pool, key_id).await?))
}

/// `?wait=` of a revocation.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevokeQuery {
    /// Wait this long at most (such as `10s`; at most `60s`) for every live gateway to
    /// serve the revocation, and answer with its `receipt`.
    pub wait: Option<String>,
}

/// Revoke a key; gateways refuse it within moments. Revoking twice is not an error
/// (`revocation`: `already_revoked`) (`keysync keys revoke`). With `?wait=10s` the answer
/// comes when every live gateway serves a revision that includes the revocation (after
/// which none admits the key), or when the wait is over, with a `receipt` saying how
/// many did and which did not (`missing`): still 200, the key is revoked either way.
#[utoipa::path(
    post,
    path = "/v1/keys/{key_id}/revoke",
    tag = "keys",
    params(KeyIdPath, RevokeQuery),
    responses(
        (status = 200, description = "Revoked (with `receipt` when waited for)", body = ConfirmedRevocation),
        BadRequest, Unauthorized, Forbidden, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn revoke_key(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
    QueryParams(query): QueryParams<RevokeQuery>,
) -> Result<Json<ConfirmedRevocation>, ApiError> {
    let wait = query
        .wait
        .as_deref()
        .map(|text| {
            let timeout = receipt_wait(text).map_err(ApiError::invalid_request)?;
            Ok::<_, ApiError>(Wait {
                timeout,
                live_window: state.fleet().live_window,
            })
        })
        .transpose()?;
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        revocation::revoke(&state.pool, actor, key_id, wait).await?,
    ))
}

/// `?wait=`: a duration up to [`MAX_WAIT`].
fn receipt_wait(text: &str) -> Result<Duration, String> {
    let wait = humantime::parse_duration(text.trim())
        .map_err(|error| format!("invalid wait '{text}': {error}"))?;
    if wait > MAX_WAIT {
        return Err(format!(
            "invalid wait '{text}': at most {}s",
            MAX_WAIT.as_secs()
        ));
    }
    Ok(wait)
}

/// Replace an active key with a new one for the same organization, name, environment,
/// own limit, scopes and allowlist; the old key keeps working for the grace period. The answer holds the
/// new key, shown only this once. A key is rotated once: of two rotations at the same
/// time one wins, the other gets 409 (`keysync keys rotate`).
#[utoipa::path(
    post,
    path = "/v1/keys/{key_id}/rotate",
    tag = "keys",
    params(KeyIdPath, IdempotencyHeader),
    request_body(content = Option<RotateKeyRequest>, description = "Optional: no body (or `null`) takes the defaults"),
    responses(
        (status = 201, description = "Rotated; `key` is shown only this once", body = RotatedKey),
        (status = 409, description = "The key is revoked, expired, or already rotated; or a retry whose first answer cannot be replayed (`idempotent_answer_unavailable`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn rotate_key(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
    idempotency_key: IdempotencyKey,
    JsonBody(request): JsonBody<Option<RotateKeyRequest>>,
) -> Result<Response, ApiError> {
    // No body, `{}` and `null` all take the defaults.
    let request = request.unwrap_or_default();
    let now = Utc::now();
    let grace = request.grace.as_deref().unwrap_or(DEFAULT_GRACE);
    let fate = match grace_named("grace", grace, now)? {
        None => OldKeyFate::RevokeNow,
        Some(at) => OldKeyFate::ExpireBy(at),
    };
    let expires_at = request
        .expires_in
        .as_deref()
        .map(|text| expiry_named("expires_in", text, now))
        .transpose()?;
    let actor = Actor::AdminToken(caller.token_id);
    let fingerprint = fingerprint("keys.rotate", Some(key_id), &request);
    create_once(
        &state,
        caller.0,
        &idempotency_key,
        fingerprint,
        async |transaction| -> Result<RotatedKey, ApiError> {
            Ok(keys::rotate_on(transaction, actor, key_id, expires_at, fate).await?)
        },
    )
    .await
}

/// Give a key a limit of its own, counted for it alone
/// (`keysync keys set-limit KEY_ID --rpm N --burst B`).
#[utoipa::path(
    put,
    path = "/v1/keys/{key_id}/rate-limit",
    tag = "keys",
    params(KeyIdPath),
    request_body = LimitRequest,
    responses(
        (status = 200, description = "The limit the key now runs under", body = KeyLimitOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn set_key_limit(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
    JsonBody(request): JsonBody<LimitRequest>,
) -> Result<Json<KeyLimitOutcome>, ApiError> {
    let change = request.change()?;
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        limits::set_key_limit(&state.pool, actor, key_id, change).await?,
    ))
}

/// Clear a key's own limit: it shares its organization's again
/// (`keysync keys set-limit KEY_ID --clear`).
#[utoipa::path(
    delete,
    path = "/v1/keys/{key_id}/rate-limit",
    tag = "keys",
    params(KeyIdPath),
    responses(
        (status = 200, description = "The limit the key now runs under", body = KeyLimitOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn clear_key_limit(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
) -> Result<Json<KeyLimitOutcome>, ApiError> {
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        limits::set_key_limit(&state.pool, actor, key_id, LimitChange::Clear).await?,
    ))
}

/// Set a key's metadata, a JSON object kept and returned as given
/// (`keysync keys set-metadata KEY_ID --metadata JSON`).
#[utoipa::path(
    put,
    path = "/v1/keys/{key_id}/metadata",
    tag = "keys",
    params(KeyIdPath),
    request_body = KeyMetadataRequest,
    responses(
        (status = 200, description = "The key's metadata now (`changed`: false when it already was so)", body = KeyMetadataOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn set_key_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
    JsonBody(request): JsonBody<KeyMetadataRequest>,
) -> Result<Json<KeyMetadataOutcome>, ApiError> {
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        key_metadata::set_key_metadata(&state.pool, actor, key_id, Some(&request.metadata)).await?,
    ))
}

/// Remove a key's metadata (`keysync keys set-metadata KEY_ID --clear`).
#[utoipa::path(
    delete,
    path = "/v1/keys/{key_id}/metadata",
    tag = "keys",
    params(KeyIdPath),
    responses(
        (status = 200, description = "No metadata now (`changed`: false when it had none)", body = KeyMetadataOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn clear_key_metadata(
    State(state): State<ApiState>,
    caller: Caller,
    KeyInPath(key_id): KeyInPath,
) -> Result<Json<KeyMetadataOutcome>, ApiError> {
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        key_metadata::set_key_metadata(&state.pool, actor, key_id, None).await?,
    ))
}

/// Import keys customers already hold (`keysync keys import --org-id ORG --file FILE`).
/// The body is JSON Lines (one object a line, not a JSON array): `{"key_hash": "<64
/// hex>"}` or `{"key": "sk_live_..."}` (hashed here, never stored), with optional
/// `name`, `expires_at`, `created_at`, `metadata` and, with `key_hash`, `prefix`. All or
/// nothing: the first bad line is a 422 naming its line number, and nothing is written.
/// The body is bounded by `KEYSYNC_API_MAX_IMPORT_BYTES` (16 MiB by default).
#[utoipa::path(
    post,
    path = "/v1/orgs/{org_id}/keys:import",
    tag = "keys",
    params(OrgIdPath),
    request_body(content = String, content_type = "application/jsonl", description = "JSON Lines: one key object a line"),
    responses(
        (status = 201, description = "Imported, each key with its line and id", body = ImportedKeys),
        (status = 409, description = "A key of the body was stored by someone else meanwhile; nothing was imported (`import_conflict`)", body = ErrorBody),
        (status = 422, description = "A bad line (`invalid_import`): its number and why; nothing was imported", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Throttled,
        Unavailable
    )
)]
pub async fn import_keys(
    State(state): State<ApiState>,
    caller: Caller,
    OrgInPath(org_id): OrgInPath,
    ImportBody(body): ImportBody,
) -> Result<(StatusCode, Json<ImportedKeys>), ApiError> {
    let keys = key_import::parse(&body, Utc::now())?;
    let actor = Actor::AdminToken(caller.token_id);
    let imported = key_import::import(&state.pool, actor, org_id, &keys).await?;
    Ok((StatusCode::CREATED, Json(imported)))
}
