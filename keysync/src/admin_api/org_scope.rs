//! Tokens limited to one organization (`admin-tokens create --org-id`), for a customer's
//! own dashboard: such a token sees and changes only that organization, its keys, limits,
//! quotas, usage, anomaly alerts and audit trail.
//!
//! Another organization, or a key of one, answers exactly as one that does not exist
//! (404 `org_not_found` or `key_not_found`, the same message), so a token learns nothing
//! about the other tenants, not even that an id is taken; a 403 would say "this exists,
//! and is not yours". Only making an organization, which concerns none, is a 403
//! (`org_scoped_token`).
//!
//! The ids in a path are read through [`OrgInPath`] and [`KeyInPath`], which check the
//! caller's reach before the body is read or anything is done, so no handler can forget
//! to; the handlers without an id in their path (listing organizations, making a key,
//! the audit trail, the alerts) apply [`reach_org`] themselves.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::PathId;
use super::ApiState;
use crate::operations::admin_tokens::AdminCaller;
use crate::operations::keys::KeyError;
use crate::operations::orgs::OrgError;

/// The organization a request names, if the caller may reach it; else the 404 of an
/// organization that does not exist.
pub fn reach_org(caller: &AdminCaller, org_id: Uuid) -> Result<Uuid, ApiError> {
    if caller.reaches_org(org_id) {
        Ok(org_id)
    } else {
        Err(OrgError::NotFound(org_id).into())
    }
}

/// The caller the authentication middleware let through.
fn caller(parts: &Parts) -> Result<AdminCaller, ApiError> {
    // Every route with an id is behind the middleware, which inserts it.
    parts
        .extensions
        .get::<AdminCaller>()
        .copied()
        .ok_or_else(ApiError::internal)
}

/// `{org_id}` in the path: a UUID (400 otherwise), of an organization the caller may
/// reach (404 otherwise).
#[derive(Debug, Clone, Copy)]
pub struct OrgInPath(pub Uuid);

impl FromRequestParts<ApiState> for OrgInPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let PathId(org_id) = PathId::from_request_parts(parts, state).await?;
        reach_org(&caller(parts)?, org_id).map(OrgInPath)
    }
}

/// `{key_id}` in the path: a UUID (400 otherwise), of a key the caller may reach (404
/// otherwise: for a token limited to an organization, a key of another one answers as a
/// key that does not exist).
#[derive(Debug, Clone, Copy)]
pub struct KeyInPath(pub Uuid);

impl FromRequestParts<ApiState> for KeyInPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let PathId(key_id) = PathId::from_request_parts(parts, state).await?;
        if caller(parts)?.reaches_key(state.pool(), key_id).await? {
            Ok(KeyInPath(key_id))
        } else {
            Err(KeyError::NotFound(key_id).into())
        }
    }
}
