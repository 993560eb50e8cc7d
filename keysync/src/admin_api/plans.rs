//! `/v1/plans` and `/v1/orgs/{org_id}/plan`: create, list, show and archive price plans
//! (`keysync plans`), and put an organization on one (`keysync orgs set-plan`) or read
//! which it is on (`keysync orgs plan`). Amounts
//! are integers in the currency's minor unit (`base_fee_minor: 4900` is EUR 49.00), so
//! no JSON number is ever a fraction of money.
//!
//! Plans are shared by every organization, so a token limited to one organization may
//! neither read nor change them, nor choose its organization's plan (403
//! `org_scoped_token`); it reads which plan its organization is on
//! (`GET /v1/orgs/{org_id}/plan`) and what its usage costs (the invoice preview).

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::documented::{
    BadRequest, Forbidden, IdempotencyHeader, NotFound, OrgIdPath, Throttled, TooLarge,
    Unauthorized, Unavailable, Unprocessable,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{IdempotencyKey, JsonBody, QueryParams};
use super::idempotency::fingerprint;
use super::org_scope::OrgInPath;
use super::{create_once, ApiState};
use crate::billing::currency::Currency;
use crate::billing::plan::{PlanTerms, Tier};
use crate::operations::actor::Actor;
use crate::operations::name::Name;
use crate::operations::org_plans::{self, OrgPlanOutcome, OrgPlans};
use crate::operations::plans::{self, ArchivedPlan, PlanRecord, PlanRef};

/// `keysync plans create`, with amounts in minor units.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlanRequest {
    /// Unique, 1 to 200 characters, not shaped like a UUID.
    pub name: String,
    /// ISO 4217, such as `EUR`.
    pub currency: String,
    /// The monthly fee in minor units (cents); default 0.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000000000000_i64)]
    pub base_fee_minor: i64,
    /// Units a month without a charge; default 0.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub included_requests: i64,
    /// Graduated tiers in order, bounds increasing beyond `included_requests`, the last
    /// one's `up_to` null.
    pub tiers: Vec<Tier>,
    /// What one request of an endpoint counts as (0 to 1000000); others count 1.
    #[serde(default)]
    pub weights: BTreeMap<String, i64>,
}

impl CreatePlanRequest {
    /// The checked terms (422 for a rule broken).
    fn terms(&self) -> Result<PlanTerms, ApiError> {
        let currency = Currency::parse(&self.currency)
            .map_err(|error| ApiError::invalid_value(error.to_string()))?;
        PlanTerms::new(
            currency,
            self.base_fee_minor,
            self.included_requests,
            self.tiers.clone(),
            self.weights.clone(),
        )
        .map_err(|error| ApiError::invalid_value(error.to_string()))
    }
}

/// `?archived=` of the plans.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PlansQuery {
    /// Archived plans too; default false.
    pub archived: Option<bool>,
}

/// `keysync orgs set-plan ORG_ID PLAN [--now]`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPlanRequest {
    /// The plan's name or id.
    pub plan: String,
    /// Take effect now (from the start of the current hour) rather than at the start of
    /// the next period; default false. An organization's first plan takes effect now.
    #[serde(default)]
    pub now: bool,
}

/// The caller, if its token is not limited to one organization.
fn unscoped(caller: &Caller) -> Result<(), ApiError> {
    match caller.org_id {
        Some(_) => Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "org_scoped_token",
            "this admin token is limited to one organization: price plans are shared by \
             every organization, so it can neither read nor choose them",
        )),
        None => Ok(()),
    }
}

/// The caller, refused (403) when its token is limited to one organization: checked
/// before the body is read, so such a token learns nothing from what it sent.
#[derive(Debug, Clone)]
pub struct UnscopedCaller(pub Caller);

impl FromRequestParts<ApiState> for UnscopedCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        // Every plan route is behind the middleware, which inserts the caller.
        let caller = Caller::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::internal())?;
        unscoped(&caller)?;
        Ok(UnscopedCaller(caller))
    }
}

/// `{plan}` in a path: a plan's name or id, for a caller not limited to one
/// organization.
#[derive(Debug, Clone)]
pub struct PlanInPath(pub PlanRef);

impl FromRequestParts<ApiState> for PlanInPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        UnscopedCaller::from_request_parts(parts, state).await?;
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
        Ok(PlanInPath(PlanRef::parse(&text)))
    }
}

/// `{plan}` in a path.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct PlanPath {
    /// The plan's name or id.
    plan: String,
}

/// Create a price plan (`keysync plans create`). Plans never change: a new price is a
/// new plan.
#[utoipa::path(
    post,
    path = "/v1/plans",
    tag = "plans",
    params(IdempotencyHeader),
    request_body = CreatePlanRequest,
    responses(
        (status = 201, description = "Created", body = PlanRecord),
        (status = 409, description = "A plan with this name exists (`plan_exists`); or a retry whose first answer cannot be replayed (`idempotent_answer_unavailable`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn create_plan(
    State(state): State<ApiState>,
    UnscopedCaller(caller): UnscopedCaller,
    idempotency_key: IdempotencyKey,
    JsonBody(request): JsonBody<CreatePlanRequest>,
) -> Result<Response, ApiError> {
    let name = Name::of_plan(&request.name)?;
    let terms = request.terms()?;
    let actor = Actor::AdminToken(caller.token_id);
    let fingerprint = fingerprint("plans.create", None, &request);
    create_once(
        &state,
        caller.0,
        &idempotency_key,
        fingerprint,
        async |connection| Ok(plans::create_on(connection, actor, &name, &terms).await?),
    )
    .await
}

/// List price plans by name (`keysync plans list`).
#[utoipa::path(
    get,
    path = "/v1/plans",
    tag = "plans",
    params(PlansQuery),
    responses(
        (status = 200, description = "The plans, by name", body = Vec<PlanRecord>),
        BadRequest, Unauthorized, Forbidden, Throttled,
        Unavailable
    )
)]
pub async fn list_plans(
    State(state): State<ApiState>,
    _caller: UnscopedCaller,
    QueryParams(query): QueryParams<PlansQuery>,
) -> Result<Json<Vec<PlanRecord>>, ApiError> {
    Ok(Json(
        plans::list(state.pool(), query.archived.unwrap_or(false)).await?,
    ))
}

/// A price plan, by name or id (`keysync plans show`).
#[utoipa::path(
    get,
    path = "/v1/plans/{plan}",
    tag = "plans",
    params(PlanPath),
    responses(
        (status = 200, description = "The plan", body = PlanRecord),
        (status = 404, description = "No such plan (`plan_not_found`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, Throttled,
        Unavailable
    )
)]
pub async fn get_plan(
    State(state): State<ApiState>,
    PlanInPath(plan): PlanInPath,
) -> Result<Json<PlanRecord>, ApiError> {
    Ok(Json(plans::get(state.pool(), &plan).await?))
}

/// Archive a price plan: no organization can be put on it any more; those on it stay
/// (`keysync plans archive`).
#[utoipa::path(
    post,
    path = "/v1/plans/{plan}/archive",
    tag = "plans",
    params(PlanPath),
    responses(
        (status = 200, description = "The plan, archived (`changed`: false when it was already)", body = ArchivedPlan),
        (status = 404, description = "No such plan (`plan_not_found`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, Throttled,
        Unavailable
    )
)]
pub async fn archive_plan(
    State(state): State<ApiState>,
    caller: Caller,
    PlanInPath(plan): PlanInPath,
) -> Result<Json<ArchivedPlan>, ApiError> {
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        plans::archive(state.pool(), actor, &plan, Utc::now()).await?,
    ))
}

/// The price plan the organization is on, and the changes scheduled
/// (`keysync orgs plan ORG_ID`). A token limited to the organization may read it.
#[utoipa::path(
    get,
    path = "/v1/orgs/{org_id}/plan",
    tag = "plans",
    params(OrgIdPath),
    responses(
        (status = 200, description = "The plan now (`current`: null when it has none) and the changes scheduled", body = OrgPlans),
        BadRequest, Unauthorized, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn get_org_plan(
    State(state): State<ApiState>,
    OrgInPath(org_id): OrgInPath,
) -> Result<Json<OrgPlans>, ApiError> {
    Ok(Json(
        org_plans::get(state.pool(), org_id, Utc::now()).await?,
    ))
}

/// Put the organization on a price plan, from the start of the next period or, with
/// `now`, from the current hour (`keysync orgs set-plan ORG_ID PLAN [--now]`).
#[utoipa::path(
    put,
    path = "/v1/orgs/{org_id}/plan",
    tag = "plans",
    params(OrgIdPath),
    request_body = OrgPlanRequest,
    responses(
        (status = 200, description = "The organization's plans now (`changed`: false when that plan was already scheduled from then)", body = OrgPlanOutcome),
        (status = 409, description = "The plan is archived (`plan_archived`), or in another currency than the organization's plan this period, asked for `now` (`currency_change`)", body = ErrorBody),
        (status = 422, description = "No such plan (`plan_not_found`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Throttled,
        Unavailable
    )
)]
pub async fn set_org_plan(
    State(state): State<ApiState>,
    OrgInPath(org_id): OrgInPath,
    UnscopedCaller(caller): UnscopedCaller,
    JsonBody(request): JsonBody<OrgPlanRequest>,
) -> Result<Json<OrgPlanOutcome>, ApiError> {
    let actor = Actor::AdminToken(caller.token_id);
    let plan = PlanRef::parse(&request.plan);
    let outcome =
        org_plans::set_org_plan(state.pool(), actor, org_id, &plan, request.now, Utc::now())
            .await
            .map_err(|error| {
                // The plan is named in the body, not the path: a value the operation
                // refuses, not a missing resource.
                let api: ApiError = error.into();
                if api.code == "plan_not_found" {
                    ApiError::new(
                        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                        "plan_not_found",
                        api.message,
                    )
                } else {
                    api
                }
            })?;
    Ok(Json(outcome))
}
