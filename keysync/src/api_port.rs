//! The operator API's listener (`KEYSYNC_API_ADDR`), apart from the probes and metrics
//! of [`crate::admin_port`]: the API under `/v1/` ([`crate::admin_api`]) with its
//! OpenAPI document, and the leak-report endpoint ([`crate::leak_reports`]) when it is
//! configured, and the web console under `/console/` ([`crate::console`]), which is a
//! client of that API. Apart, so that what mints keys can be bound, published and firewalled on
//! its own (a Kubernetes Service and NetworkPolicy of its own), or not served at all.
//! Unknown paths and methods under `/v1/` answer in the API's JSON error shape.

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::admin_api::error::ApiError;
use crate::admin_api::{self, ApiState};
use crate::console;

/// The API's routes, and the leak-report endpoint's when given.
pub fn app(api: ApiState, leak_reports: Option<Router>) -> Router {
    let app = admin_api::router(api).merge(console::router());
    let app = match leak_reports {
        Some(leak_reports) => app.merge(leak_reports),
        None => app,
    };
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// Unknown paths: the API's error shape under `/v1/`, a plain 404 elsewhere.
async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/v1/") {
        ApiError::not_found(format!(
            "no such path: {} (see {})",
            uri.path(),
            admin_api::OPENAPI_PATH
        ))
        .into_response()
    } else {
        (StatusCode::NOT_FOUND, "not found\n").into_response()
    }
}

async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}
