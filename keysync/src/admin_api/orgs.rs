//! `/v1/orgs`: create, list, get and update an organization (its external id and
//! metadata), and set or clear its rate limit. A token limited to one organization lists
//! that one alone and makes none.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::Caller;
use super::documented::{
    BadRequest, Forbidden, IdempotencyHeader, NotFound, OrgIdPath, Throttled, TooLarge,
    Unauthorized, Unavailable, Unprocessable,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{IdempotencyKey, JsonBody, QueryParams};
use super::idempotency::fingerprint;
use super::org_scope::{reach_org, OrgInPath};
use super::{create_once, ApiState, ListQuery};
use crate::key_set::limit_columns::MAX_LIMIT_VALUE;
use crate::operations::actor::Actor;
use crate::operations::external_id::ExternalId;
use crate::operations::field_change::FieldChange;
use crate::operations::limits::{self, LimitChange, OrgLimitOutcome};
use crate::operations::metadata::Metadata;
use crate::operations::name::Name;
use crate::operations::org_update::{self, OrgUpdate, OrgUpdateOutcome};
use crate::operations::orgs::{self, CreatedOrg, OrgData, OrgPage, Organization};
use crate::operations::page::PageRequest;
use keysync_contract::limit::Limit;

/// `keysync orgs create`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgRequest {
    /// 1 to 200 characters.
    pub name: String,
    /// The new organization's id; a random one when absent (`--id`).
    #[serde(default)]
    pub org_id: Option<Uuid>,
    /// The customer's id in the operator's billing system, unique (`--external-id`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub external_id: Option<ExternalId>,
    /// A JSON object of at most 1 KiB, kept and returned as given (`--metadata`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

/// `keysync orgs update`: a field left out stays as it is, `null` clears it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrgRequest {
    /// The customer's id in the operator's billing system, unique; `null` removes it.
    #[serde(default, skip_serializing_if = "FieldChange::is_unchanged")]
    #[schema(value_type = Option<String>)]
    pub external_id: FieldChange<ExternalId>,
    /// A JSON object of at most 1 KiB, kept and returned as given; `null` removes it.
    #[serde(default, skip_serializing_if = "FieldChange::is_unchanged")]
    #[schema(value_type = Option<Object>)]
    pub metadata: FieldChange<Metadata>,
}

/// A rate limit to set: `requests_per_minute + burst` requests in each clock-aligned
/// one-minute window (`--rpm`, `--burst`).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitRequest {
    #[schema(minimum = 1, maximum = 2147483647)]
    pub requests_per_minute: i64,
    /// Default 0.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub burst: i64,
}

impl LimitRequest {
    /// The change, with the CLI's ranges (422 outside them).
    pub fn change(&self) -> Result<LimitChange, ApiError> {
        let value = |name: &str, value: i64, min: u32| {
            u32::try_from(value)
                .ok()
                .filter(|value| (min..=MAX_LIMIT_VALUE).contains(value))
                .ok_or_else(|| {
                    ApiError::invalid_value(format!(
                        "invalid {name} {value}: expected a whole number from {min} to \
                         {MAX_LIMIT_VALUE}"
                    ))
                })
        };
        Ok(LimitChange::Set(Limit {
            requests_per_minute: value("requests_per_minute", self.requests_per_minute, 1)?,
            burst: value("burst", self.burst, 0)?,
        }))
    }
}

/// Create an organization (`keysync orgs create`).
#[utoipa::path(
    post,
    path = "/v1/orgs",
    tag = "organizations",
    params(IdempotencyHeader),
    request_body = CreateOrgRequest,
    responses(
        (status = 201, description = "Created", body = CreatedOrg),
        (status = 409, description = "An organization with this id exists (`org_exists`), or with this external id (`external_id_taken`); or a retry whose first answer cannot be replayed (`idempotent_answer_unavailable`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn create_org(
    State(state): State<ApiState>,
    caller: Caller,
    idempotency_key: IdempotencyKey,
    JsonBody(request): JsonBody<CreateOrgRequest>,
) -> Result<Response, ApiError> {
    if caller.org_id.is_some() {
        return Err(ApiError::org_scoped_token());
    }
    let name = Name::of_org(&request.name)?;
    let actor = Actor::AdminToken(caller.token_id);
    let fingerprint = fingerprint("orgs.create", None, &request);
    let data = OrgData {
        external_id: request.external_id,
        metadata: request.metadata,
    };
    create_once(
        &state,
        caller.0,
        &idempotency_key,
        fingerprint,
        async |connection| {
            Ok(orgs::create_on(connection, actor, request.org_id, &name, data).await?)
        },
    )
    .await
}

/// Change an organization's external id or metadata (`keysync orgs update`); a field
/// left out stays as it is, `null` removes it.
#[utoipa::path(
    patch,
    path = "/v1/orgs/{org_id}",
    tag = "organizations",
    params(OrgIdPath),
    request_body = UpdateOrgRequest,
    responses(
        (status = 200, description = "The two fields now (`changed`: false when they already were so)", body = OrgUpdateOutcome),
        (status = 409, description = "Another organization has this external id (`external_id_taken`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn update_org(
    State(state): State<ApiState>,
    caller: Caller,
    OrgInPath(org_id): OrgInPath,
    JsonBody(request): JsonBody<UpdateOrgRequest>,
) -> Result<Json<OrgUpdateOutcome>, ApiError> {
    let update = OrgUpdate {
        external_id: request.external_id,
        metadata: request.metadata,
    };
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        org_update::update(&state.pool, actor, org_id, &update).await?,
    ))
}

/// List organizations with their limits, oldest first, a page at a time
/// (`keysync orgs list`); for a token limited to one organization, that one alone.
#[utoipa::path(
    get,
    path = "/v1/orgs",
    tag = "organizations",
    params(OrgListQuery),
    responses(
        (status = 200, description = "A page of organizations", body = OrgPage),
        BadRequest, Unauthorized, Throttled,
        Unavailable
    )
)]
pub async fn list_orgs(
    State(state): State<ApiState>,
    caller: Caller,
    QueryParams(query): QueryParams<OrgListQuery>,
) -> Result<Json<OrgPage>, ApiError> {
    let page = ListQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    let search = query
        .search
        .as_deref()
        .filter(|text| !text.trim().is_empty());
    match (caller.org_id, search) {
        (None, None) => Ok(Json(orgs::list_page(&state.pool, page).await?)),
        (None, Some(search)) => Ok(Json(orgs::search_page(&state.pool, search, page).await?)),
        (Some(own), search) => {
            let org = orgs::get(&state.pool, reach_org(&caller, own)?).await?;
            let mut listed = only(org, page);
            listed
                .items
                .retain(|org| search.is_none_or(|text| matches(org, text)));
            Ok(Json(listed))
        }
    }
}

/// `?limit=&cursor=&search=` of the organizations' listing.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrgListQuery {
    /// Rows in the page: 1 to 1000 (larger values are capped), default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
    /// Only organizations whose name contains this text (any case), or whose id it is.
    pub search: Option<String>,
}

/// Whether `org` is one `search` finds, as [`orgs::search_page`] decides.
fn matches(org: &Organization, search: &str) -> bool {
    let search = search.trim().to_lowercase();
    org.name.to_lowercase().contains(&search) || org.org_id.to_string() == search
}

/// The page of a listing that holds `org` alone: it, unless the cursor is past it.
fn only(org: Organization, page: PageRequest) -> OrgPage {
    let past = page
        .after
        .is_some_and(|after| (org.created_at.0, org.org_id) <= (after.created_at, after.id));
    OrgPage {
        items: if past { Vec::new() } else { vec![org] },
        next_cursor: None,
    }
}

/// One organization with its limit.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org_id}",
    tag = "organizations",
    params(OrgIdPath),
    responses(
        (status = 200, description = "The organization", body = Organization),
        BadRequest, Unauthorized, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn get_org(
    State(state): State<ApiState>,
    OrgInPath(org_id): OrgInPath,
) -> Result<Json<Organization>, ApiError> {
    Ok(Json(orgs::get(&state.pool, org_id).await?))
}

/// Set the organization's limit, one budget shared by its keys
/// (`keysync orgs set-limit ORG_ID --rpm N --burst B`).
#[utoipa::path(
    put,
    path = "/v1/orgs/{org_id}/rate-limit",
    tag = "organizations",
    params(OrgIdPath),
    request_body = LimitRequest,
    responses(
        (status = 200, description = "The limit now (`changed`: false when it already was)", body = OrgLimitOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn set_org_limit(
    State(state): State<ApiState>,
    caller: Caller,
    OrgInPath(org_id): OrgInPath,
    JsonBody(request): JsonBody<LimitRequest>,
) -> Result<Json<OrgLimitOutcome>, ApiError> {
    let change = request.change()?;
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        limits::set_org_limit(&state.pool, actor, org_id, change).await?,
    ))
}

/// Clear the organization's limit: it is then unlimited
/// (`keysync orgs set-limit ORG_ID --clear`).
#[utoipa::path(
    delete,
    path = "/v1/orgs/{org_id}/rate-limit",
    tag = "organizations",
    params(OrgIdPath),
    responses(
        (status = 200, description = "No limit now (`changed`: false when it had none)", body = OrgLimitOutcome),
        BadRequest, Unauthorized, Forbidden, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn clear_org_limit(
    State(state): State<ApiState>,
    caller: Caller,
    OrgInPath(org_id): OrgInPath,
) -> Result<Json<OrgLimitOutcome>, ApiError> {
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        limits::set_org_limit(&state.pool, actor, org_id, LimitChange::Clear).await?,
    ))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn limit(requests_per_minute: i64, burst: i64) -> Result<LimitChange, ApiError> {
        LimitRequest {
            requests_per_minute,
            burst,
        }
        .change()
    }

    #[test]
    fn limits_take_the_cli_ranges() {
        assert_eq!(
            limit(100, 20).unwrap(),
            LimitChange::Set(Limit {
                requests_per_minute: 100,
                burst: 20
            })
        );
        assert!(limit(2147483647, 2147483647).is_ok());
        for (rpm, burst, field) in [
            (0, 0, "requests_per_minute"),
            (-1, 0, "requests_per_minute"),
            (2147483648, 0, "requests_per_minute"),
            (1, -1, "burst"),
        ] {
            let error = limit(rpm, burst).unwrap_err();
            assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
            assert!(
                error.message.starts_with(&format!("invalid {field} ")),
                "{error:?}"
            );
        }
    }
}
