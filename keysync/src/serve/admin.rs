//! The admin HTTP port: liveness (`/healthz`), readiness (`/readyz`: the first key
//! snapshot is loaded) and Prometheus metrics (`/metrics`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::{self, Metrics};
use crate::readiness::Readiness;

/// What the admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
}

pub fn app(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// The process is up; says nothing about the database.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: key snapshot not loaded yet\n",
        )
    }
}

async fn metrics_text(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn state() -> AdminState {
        AdminState {
            readiness: Readiness::new(),
            metrics: Arc::new(Metrics::new()),
        }
    }

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn healthz_is_always_ok() {
        let (status, body) = get(app(state()), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ok\n");
    }

    #[tokio::test]
    async fn readyz_follows_the_latch() {
        let state = state();
        let (status, _) = get(app(state.clone()), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        state.readiness.set_ready();
        let (status, body) = get(app(state), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ready\n");
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text() {
        let state = state();
        state.metrics.record_store(3, 9);
        let response = app(state)
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            metrics::CONTENT_TYPE
        );
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("keysync_snapshot_keys 3"), "{text}");
        assert!(text.contains("keysync_store_revision 9"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[tokio::test]
    async fn unknown_path_is_404() {
        let (status, _) = get(app(state()), "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
