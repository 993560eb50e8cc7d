//! The operator HTTP API: everything the CLI does to organizations, keys and limits,
//! under `/v1/` on the admin port, for a customer's own backend (issuing a key at
//! sign-up, rotating from a dashboard). Handlers call the same [`crate::operations`] as
//! the CLI and answer with the same result types, so the JSON has the CLI's `--json`
//! field names.
//!
//! - [`auth`]: admin tokens (`Authorization: Bearer`), read-only tokens, and
//!   [`failed_tokens`], which slows down an address that keeps guessing (but not its
//!   valid tokens: [`active_tokens`]);
//! - [`org_scope`]: tokens limited to one organization see only that one;
//! - [`extract`]: strict request parsing (unknown fields 400, body limit 413);
//! - [`error`]: the one error shape and the status of each failure;
//! - [`idempotency`]: creates with an `Idempotency-Key` happen once, their answers
//!   sealed under [`idempotency_secret`];
//! - [`orgs`], [`keys`], [`key_policy`], [`quotas`], [`audit`], [`usage`], [`alerts`],
//!   [`plans`], [`invoices`], [`fleet_usage`], [`whoami`], [`webhooks`], [`gateways`]: the
//!   handlers, each with its OpenAPI description.
//!
//! The OpenAPI 3.1 document is generated from the handlers and types ([`openapi`]),
//! served at `/v1/openapi.json` and checked in as `keysync/openapi.json`; a test fails
//! when the two differ (`KEYSYNC_BLESS=1 cargo test -p keysync openapi` rewrites it).

pub mod active_tokens;
pub mod alerts;
pub mod audit;
pub mod auth;
mod documented;
pub mod error;
pub mod extract;
pub mod failed_tokens;
pub mod fleet_usage;
pub mod gateways;
pub mod idempotency;
pub mod idempotency_secret;
pub mod invoices;
pub mod key_policy;
pub mod keys;
pub mod org_scope;
pub mod orgs;
pub mod plans;
pub mod quotas;
pub mod usage;
pub mod webhooks;
pub mod whoami;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{middleware, Router};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tracing::warn;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::active_tokens::ActiveTokens;
use self::error::{ApiError, ErrorBody};
use self::extract::IdempotencyKey;
use self::failed_tokens::FailedTokens;
use self::idempotency::Idempotency;
use self::idempotency_secret::{IdempotencySecret, SECRET_FILE_VARIABLE};
use crate::fleet::FleetSettings;
use crate::log_throttle::{LogThrottle, LOG_PERIOD};
use crate::operations::admin_tokens::AdminCaller;
use crate::operations::page::{Cursor, PageRequest, DEFAULT_PAGE_LIMIT};

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// The API's settings (`KEYSYNC_API_MAX_BODY_BYTES`, `KEYSYNC_API_MAX_IMPORT_BYTES`,
/// `KEYSYNC_IDEMPOTENCY_TTL`, `KEYSYNC_IDEMPOTENCY_SECRET_FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// The same for a key import's body (JSON Lines, one transaction for the whole file).
    pub max_import_bytes: usize,
    /// How long an `Idempotency-Key` replays its first answer.
    pub idempotency_ttl: Duration,
    /// What stored answers are sealed under, from the operator's file; `None`: a secret
    /// of this process alone (replays do not survive a restart).
    pub idempotency_secret: Option<IdempotencySecret>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            max_body_bytes: 64 * 1024,
            max_import_bytes: 16 << 20,
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            idempotency_secret: None,
        }
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The API's own connections, apart from the ones that keep the key set in sync.
    pool: PgPool,
    settings: ApiSettings,
    shared: Arc<Shared>,
    /// When a gateway counts as live (`GET /v1/gateways`, `?wait=` of a revocation).
    fleet: FleetSettings,
}

#[derive(Debug)]
struct Shared {
    failed_tokens: FailedTokens,
    active_tokens: ActiveTokens,
    /// One log line per period for refused tokens.
    refusal_log: LogThrottle,
    /// The configured secret, or this process's own.
    idempotency_secret: IdempotencySecret,
}

impl ApiState {
    pub fn new(pool: PgPool, settings: ApiSettings) -> ApiState {
        let idempotency_secret = settings.idempotency_secret.clone().unwrap_or_else(|| {
            warn!(
                "admin api: {SECRET_FILE_VARIABLE} is not set: answers to creates with an \
                 Idempotency-Key are sealed under a secret of this process alone, so a \
                 retry after a restart or on another replica is refused (409), not replayed"
            );
            IdempotencySecret::generate()
        });
        ApiState {
            pool,
            settings,
            shared: Arc::new(Shared {
                failed_tokens: FailedTokens::new(),
                active_tokens: ActiveTokens::new(),
                refusal_log: LogThrottle::new(LOG_PERIOD),
                idempotency_secret,
            }),
            fleet: FleetSettings::default(),
        }
    }

    /// Judges the fleet by `fleet` (`KEYSYNC_GATEWAY_LIVE_WINDOW`).
    pub fn judging_fleet(mut self, fleet: FleetSettings) -> Self {
        self.fleet = fleet;
        self
    }

    pub fn fleet(&self) -> FleetSettings {
        self.fleet
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn settings(&self) -> &ApiSettings {
        &self.settings
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "keysync operator API",
        version = "1",
        description = "Everything `keysync` does on the command line to organizations, API \
            keys, rate limits and quotas, over HTTP on keysync's admin port, the audit trail of \
            those changes, and the usage the gateways metered. Every request but this \
            document's needs `Authorization: Bearer <admin token>` (`keysync admin-tokens \
            create`); a read-only token may only GET, and a token limited to one organization \
            (`--org-id`) sees and changes only that one (others answer 404, as if they did not \
            exist). Errors are \
            `{\"error\": \"<code>\", \"message\": \"...\"}`. Creates accept an \
            `Idempotency-Key` header: a retry with the same key gets the first answer again \
            (`Idempotent-Replayed: true`) and creates nothing; if the answer was sealed by \
            another keysync process without the same `KEYSYNC_IDEMPOTENCY_SECRET_FILE`, the \
            retry gets 409 (`idempotent_answer_unavailable`) and creates nothing either."
    ),
    paths(openapi_document),
    components(schemas(ErrorBody)),
    modifiers(&AdminTokenScheme),
    security(("admin_token" = [])),
    tags(
        (name = "organizations", description = "The owners of API keys, with the rate limit and the monthly quota their keys share"),
        (name = "keys", description = "API keys: created and rotated (shown once), listed, revoked, limited, given quotas"),
        (name = "audit", description = "Every change operators made, newest first, without secrets"),
        (name = "usage", description = "What the gateways metered: requests of an organization's keys by hour, day, month, key or outcome, and the anomalies keysync found in it"),
        (name = "plans", description = "Price plans (a monthly fee, included units, graduated tiers, endpoint weights), the plan each organization is on, and what its usage costs: exact amounts in minor units, rounded once per line, half up"),
        (name = "webhooks", description = "Endpoints told of key changes and quota thresholds, signed as Standard Webhooks defines (webhook-id, webhook-timestamp, webhook-signature), and their deliveries"),
        (name = "fleet", description = "The gateways that enforce keys, the revision each serves, and how far behind it is"),
        (name = "meta", description = "This document")
    )
)]
struct ApiDoc;

/// The `admin_token` bearer scheme every operation names.
struct AdminTokenScheme;

impl utoipa::Modify for AdminTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin token from `keysync admin-tokens create` (`ksa_...`)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The documented routes: each handler with its OpenAPI description, so the document
/// and the router come from the same list.
fn documented_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(orgs::create_org, orgs::list_orgs))
        .routes(routes!(orgs::get_org, orgs::update_org))
        .routes(routes!(orgs::set_org_limit, orgs::clear_org_limit))
        .routes(routes!(quotas::set_org_quota, quotas::clear_org_quota))
        .routes(routes!(keys::list_keys))
        .routes(routes!(keys::create_key))
        .routes(routes!(keys::get_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(keys::set_key_limit, keys::clear_key_limit))
        .routes(routes!(quotas::set_key_quota, quotas::clear_key_quota))
        .routes(routes!(
            key_policy::set_key_scopes,
            key_policy::clear_key_scopes
        ))
        .routes(routes!(
            key_policy::set_key_allowlist,
            key_policy::clear_key_allowlist
        ))
        .routes(routes!(audit::list_audit))
        .routes(routes!(usage::get_usage))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(plans::create_plan, plans::list_plans))
        .routes(routes!(plans::get_plan))
        .routes(routes!(plans::archive_plan))
        .routes(routes!(plans::get_org_plan, plans::set_org_plan))
        .routes(routes!(invoices::invoice_preview))
        .routes(routes!(fleet_usage::get_fleet_usage))
        .routes(routes!(whoami::whoami))
        .routes(routes!(keys::set_key_metadata, keys::clear_key_metadata))
        .routes(routes!(keys::import_keys))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(webhooks::delete_webhook))
        .routes(routes!(webhooks::test_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(gateways::list_gateways))
}

/// The OpenAPI 3.1 document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented_routes().into_openapi()
}

/// The document as served and checked in.
pub fn openapi_json() -> String {
    // Serializing the document cannot fail: it holds no maps with non-string keys.
    let mut text = openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// The `/v1/` routes: every operation behind the admin-token check, the document open.
pub fn router(state: ApiState) -> Router {
    let (routes, _) = documented_routes().split_for_parts();
    let document = Arc::new(openapi_json());
    routes
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .route(
            OPENAPI_PATH,
            get(move || async move { json_response(StatusCode::OK, document.as_bytes().to_vec()) }),
        )
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .with_state(state)
}

/// The document itself.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json"))
)]
#[allow(dead_code)] // Documents the route `router` serves from the generated text.
async fn openapi_document() {}

/// A JSON answer from bytes already serialized.
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// `?limit=&cursor=` of a listing.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Rows in the page: 1 to 1000 (larger values are capped), default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

impl ListQuery {
    fn page(&self) -> Result<PageRequest, ApiError> {
        let after = self
            .cursor
            .as_deref()
            .map(Cursor::decode)
            .transpose()
            .map_err(|error| ApiError::invalid_request(error.to_string()))?;
        match self.limit {
            Some(0) => Err(ApiError::invalid_request(
                "invalid limit 0: expected 1 to 1000",
            )),
            limit => Ok(PageRequest::new(after, limit.unwrap_or(DEFAULT_PAGE_LIMIT))),
        }
    }
}

/// Runs a create in one transaction, once per `Idempotency-Key` when the request has
/// one, and answers 201 with its result.
async fn create_once<T: Serialize>(
    state: &ApiState,
    caller: AdminCaller,
    idempotency_key: &IdempotencyKey,
    fingerprint: [u8; 32],
    create: impl AsyncFnOnce(&mut PgConnection) -> Result<T, ApiError>,
) -> Result<Response, ApiError> {
    let idempotency = idempotency_key.0.as_deref().map(|key| Idempotency {
        token_id: caller.token_id,
        key,
        secret: &state.shared.idempotency_secret,
        fingerprint,
        ttl: state.settings.idempotency_ttl,
    });
    let mut transaction = state.pool.begin().await?;
    if let Some(idempotency) = &idempotency {
        if let Some(replay) = idempotency.claim(&mut transaction).await? {
            return Ok(replay);
        }
    }
    let created = create(&mut transaction).await?;
    let body = serde_json::to_vec(&created).map_err(|_| ApiError::internal())?;
    if let Some(idempotency) = &idempotency {
        idempotency
            .store(&mut transaction, StatusCode::CREATED, &body)
            .await?;
    }
    transaction.commit().await?;
    Ok(json_response(StatusCode::CREATED, body))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use sqlx::postgres::PgPoolOptions;
    use tower::ServiceExt;

    use super::*;

    /// A router whose database is never reached (nothing here gets that far).
    fn app() -> Router {
        let pool = PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/nothing")
            .unwrap();
        router(ApiState::new(pool, ApiSettings::default()))
    }

    async fn send(request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = app().oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn the_document_is_served_without_a_token_and_the_rest_needs_one() {
        let (status, document) =
            send(Request::get(OPENAPI_PATH).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            document,
            serde_json::from_str::<serde_json::Value>(&openapi_json()).unwrap()
        );
        for (method, path) in [
            ("GET", "/v1/orgs"),
            ("POST", "/v1/keys"),
            ("DELETE", "/v1/keys/x/rate-limit"),
            ("PUT", "/v1/orgs/x/quota"),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            let (status, body) = send(request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(body["error"], "missing_token");
        }
        // Not a token at all: refused without asking the database.
        let request = Request::get("/v1/orgs")
            .header("authorization", "Bearer sk_live_notanadmintoken")
            .body(Body::empty())
            .unwrap();
        let (status, body) = send(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "invalid_token");
    }

    fn checked_in() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
    }

    /// The checked-in document is what the code generates: a route, a field or a status
    /// changed without it fails here. `KEYSYNC_BLESS=1` rewrites it.
    #[test]
    fn openapi_document_is_checked_in_and_current() {
        let generated = openapi_json();
        if std::env::var_os("KEYSYNC_BLESS").is_some() {
            std::fs::write(checked_in(), &generated).unwrap();
        }
        let stored = std::fs::read_to_string(checked_in()).unwrap_or_default();
        assert!(
            stored == generated,
            "keysync/openapi.json differs from the routes: run \
             `KEYSYNC_BLESS=1 cargo test -p keysync openapi` and review the diff"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let document: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = document["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/v1/orgs", &["get", "post"][..]),
            ("/v1/orgs/{org_id}/rate-limit", &["put", "delete"]),
            ("/v1/orgs/{org_id}/quota", &["put", "delete"]),
            ("/v1/orgs/{org_id}/keys", &["get"]),
            ("/v1/keys", &["post"]),
            ("/v1/keys/{key_id}", &["get"]),
            ("/v1/keys/{key_id}/revoke", &["post"]),
            ("/v1/keys/{key_id}/rotate", &["post"]),
            ("/v1/keys/{key_id}/rate-limit", &["put", "delete"]),
            ("/v1/keys/{key_id}/quota", &["put", "delete"]),
            ("/v1/keys/{key_id}/scopes", &["put", "delete"]),
            ("/v1/keys/{key_id}/allowlist", &["put", "delete"]),
            ("/v1/audit", &["get"]),
            ("/v1/orgs/{org_id}/usage", &["get"]),
            ("/v1/alerts", &["get"]),
            ("/v1/plans", &["get", "post"]),
            ("/v1/plans/{plan}", &["get"]),
            ("/v1/plans/{plan}/archive", &["post"]),
            ("/v1/orgs/{org_id}/plan", &["get", "put"]),
            ("/v1/orgs/{org_id}/invoice-preview", &["get"]),
            ("/v1/openapi.json", &["get"]),
            ("/v1/usage", &["get"]),
            ("/v1/whoami", &["get"]),
            ("/v1/orgs/{org_id}", &["get", "patch"]),
            ("/v1/keys/{key_id}/metadata", &["put", "delete"]),
            ("/v1/orgs/{org_id}/keys:import", &["post"]),
            ("/v1/webhooks", &["get", "post"]),
            ("/v1/webhooks/{webhook_id}", &["delete"]),
            ("/v1/webhooks/{webhook_id}/test", &["post"]),
            ("/v1/webhooks/deliveries", &["get"]),
            ("/v1/gateways", &["get"]),
        ] {
            for method in methods {
                assert!(paths[path][method].is_object(), "{method} {path}");
            }
        }
        assert_eq!(paths.len(), 31, "{:?}", paths.keys());
    }
}
