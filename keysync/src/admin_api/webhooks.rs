//! `/v1/webhooks`: register, list and delete webhook endpoints, queue a test event, and
//! list deliveries (`keysync webhooks`). Endpoints hear of every organization's keys, so
//! a token limited to one organization may not use these routes (403
//! `org_scoped_token`); a read-only token may list.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::auth::Caller;
use super::documented::{
    BadRequest, Forbidden, IdempotencyHeader, Throttled, TooLarge, Unauthorized, Unavailable,
    Unprocessable,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{IdempotencyKey, JsonBody, PathId, QueryParams};
use super::idempotency::fingerprint;
use super::{create_once, ApiState, ListQuery};
use crate::operations::actor::Actor;
use crate::operations::webhooks::{
    self, CreatedWebhook, DeletedWebhook, DeliveryFilter, DeliveryPage, ListedWebhook, NewWebhook,
    QueuedTest, WebhookError,
};

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> ApiError {
        let message = error.to_string();
        match error {
            WebhookError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "webhook_not_found", message)
            }
            WebhookError::Destination(_)
            | WebhookError::UnknownEvent(_)
            | WebhookError::NoEvents => ApiError::invalid_value(message),
            WebhookError::Database(error) => ApiError::database(&error),
        }
    }
}

/// The caller, refused (403) when its token is limited to one organization: checked
/// before the body is read.
#[derive(Debug, Clone)]
pub struct WebhookCaller(pub Caller);

impl FromRequestParts<ApiState> for WebhookCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        // Every webhook route is behind the middleware, which inserts the caller.
        let caller = Caller::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::internal())?;
        match caller.org_id {
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "org_scoped_token",
                "this admin token is limited to one organization: webhooks hear of every \
                 organization's keys, so it cannot see or change them",
            )),
            None => Ok(WebhookCaller(caller)),
        }
    }
}

/// `keysync webhooks create`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where deliveries are POSTed: https unless `allow_http`.
    pub url: String,
    /// The events it receives: `key.created`, `key.revoked`, `key.rotated`,
    /// `key.expired`, `key.leaked`, `quota.threshold`.
    pub events: Vec<String>,
    /// Accept a plain http URL (tests, a receiver on loopback); default false.
    #[serde(default)]
    pub allow_http: bool,
    /// Accept a host that resolves to a private, loopback or link-local address
    /// (checked again at every delivery); default false.
    #[serde(default)]
    pub allow_private: bool,
}

/// `{webhook_id}` in a path.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct WebhookIdPath {
    /// The webhook's id.
    webhook_id: Uuid,
}

/// `?webhook_id=&failed=` of the deliveries, with the page.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only this webhook's deliveries.
    pub webhook_id: Option<Uuid>,
    /// Only those whose last attempt failed (retrying, or given up); default false.
    pub failed: Option<bool>,
    /// Rows in the page: 1 to 1000 (larger values are capped), default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// Register a webhook endpoint (`keysync webhooks create`): the answer holds its signing
/// secret, shown only this once.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    params(IdempotencyHeader),
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Registered, with its secret (`whsec_...`)", body = CreatedWebhook),
        (status = 409, description = "A retry whose first answer cannot be replayed (`idempotent_answer_unavailable`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, TooLarge, Unprocessable, Throttled,
        Unavailable
    )
)]
pub async fn create_webhook(
    State(state): State<ApiState>,
    WebhookCaller(caller): WebhookCaller,
    idempotency_key: IdempotencyKey,
    JsonBody(request): JsonBody<CreateWebhookRequest>,
) -> Result<Response, ApiError> {
    let webhook = NewWebhook::new(
        &request.url,
        &request.events,
        request.allow_http,
        request.allow_private,
    )?;
    webhook.check_addresses().await?;
    let actor = Actor::AdminToken(caller.token_id);
    let fingerprint = fingerprint("webhooks.create", None, &request);
    create_once(
        &state,
        caller.0,
        &idempotency_key,
        fingerprint,
        async |connection| Ok(webhooks::create_on(connection, actor, webhook).await?),
    )
    .await
}

/// List the webhook endpoints, oldest first, never their secrets (`keysync webhooks
/// list`).
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The webhooks, with their pending and failed deliveries", body = Vec<ListedWebhook>),
        Unauthorized, Forbidden, Throttled, Unavailable
    )
)]
pub async fn list_webhooks(
    State(state): State<ApiState>,
    _caller: WebhookCaller,
) -> Result<Json<Vec<ListedWebhook>>, ApiError> {
    Ok(Json(webhooks::list(state.pool()).await?))
}

/// Delete a webhook endpoint; deliveries still queued for it are dropped (`keysync
/// webhooks delete`).
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{webhook_id}",
    tag = "webhooks",
    params(WebhookIdPath),
    responses(
        (status = 200, description = "Deleted", body = DeletedWebhook),
        (status = 404, description = "No such webhook (`webhook_not_found`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, Throttled, Unavailable
    )
)]
pub async fn delete_webhook(
    State(state): State<ApiState>,
    WebhookCaller(caller): WebhookCaller,
    PathId(webhook_id): PathId,
) -> Result<Json<DeletedWebhook>, ApiError> {
    let actor = Actor::AdminToken(caller.token_id);
    Ok(Json(
        webhooks::delete(state.pool(), actor, webhook_id).await?,
    ))
}

/// Queue a `webhook.test` event for one endpoint, whatever events it receives (`keysync
/// webhooks test`); `serve` sends it.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{webhook_id}/test",
    tag = "webhooks",
    params(WebhookIdPath),
    responses(
        (status = 202, description = "Queued, with the `webhook-id` it is sent under", body = QueuedTest),
        (status = 404, description = "No such webhook (`webhook_not_found`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, Throttled, Unavailable
    )
)]
pub async fn test_webhook(
    State(state): State<ApiState>,
    _caller: WebhookCaller,
    PathId(webhook_id): PathId,
) -> Result<Response, ApiError> {
    let queued = webhooks::test(state.pool(), webhook_id).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)).into_response())
}

/// Deliveries, newest first, with their attempts and last answer (`keysync webhooks
/// deliveries`).
#[utoipa::path(
    get,
    path = "/v1/webhooks/deliveries",
    tag = "webhooks",
    params(DeliveriesQuery),
    responses(
        (status = 200, description = "A page of deliveries, newest first", body = DeliveryPage),
        (status = 404, description = "No such webhook (`webhook_not_found`)", body = ErrorBody),
        BadRequest, Unauthorized, Forbidden, Throttled, Unavailable
    )
)]
pub async fn list_deliveries(
    State(state): State<ApiState>,
    _caller: WebhookCaller,
    QueryParams(query): QueryParams<DeliveriesQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let page = ListQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    let filter = DeliveryFilter {
        webhook_id: query.webhook_id,
        failed: query.failed.unwrap_or(false),
    };
    Ok(Json(
        webhooks::list_deliveries_page(state.pool(), filter, page).await?,
    ))
}
