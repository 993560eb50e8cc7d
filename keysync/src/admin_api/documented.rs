//! Pieces the OpenAPI descriptions of the handlers share: the error answers by status
//! (each an [`ErrorBody`]) and the parameters several operations take.

use serde::Deserialize;
use utoipa::{IntoParams, IntoResponses};
use uuid::Uuid;

use super::error::ErrorBody;

#[derive(IntoResponses)]
#[response(
    status = 400,
    description = "The request does not parse: bad JSON, an unknown field, a bad id, query or header (`invalid_request`)"
)]
pub struct BadRequest(#[allow(dead_code)] ErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 401,
    description = "No admin token, or an unknown or revoked one (`missing_token`, `invalid_token`)"
)]
pub struct Unauthorized(#[allow(dead_code)] ErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 403,
    description = "A read-only token asked for a change (`read_only_token`), or a token limited to one organization asked to make one (`org_scoped_token`)"
)]
pub struct Forbidden(#[allow(dead_code)] ErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "No such organization or key, or one of an organization a token limited to another may not see: the same answer (`org_not_found`, `key_not_found`)"
)]
pub struct NotFound(#[allow(dead_code)] ErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 413,
    description = "The body is over the size limit (`payload_too_large`)"
)]
pub struct TooLarge(#[allow(dead_code)] ErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 422,
    description = "A value the operation refuses (`invalid_value`), or an Idempotency-Key used before for another request (`idempotency_key_reused`)"
)]
pub struct Unprocessable(#[allow(dead_code)] ErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 429,
    description = "Too many bad tokens from this address lately, and this one is not a valid token; see `Retry-After` (`too_many_failed_tokens`). A valid token is served whatever its address sent."
)]
pub struct Throttled(#[allow(dead_code)] ErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "PostgreSQL cannot be reached; nothing was changed (`database_unavailable`)"
)]
pub struct Unavailable(#[allow(dead_code)] ErrorBody);

/// `{org_id}` in a path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct OrgIdPath {
    /// The organization's id.
    org_id: Uuid,
}

/// `{key_id}` in a path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct KeyIdPath {
    /// The key's id (not the key).
    key_id: Uuid,
}

/// The `Idempotency-Key` header of a create.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyHeader {
    /// A random value (16 to 255 visible ASCII characters, such as a UUID): a retry with
    /// the same one from the same token gets the first answer again (the same key) and
    /// makes nothing.
    #[serde(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
}
