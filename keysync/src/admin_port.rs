//! The admin HTTP port: liveness (`/healthz`), readiness (`/readyz`: the key set was
//! loaded and confirmed against PostgreSQL within `KEYSYNC_MAX_UNCONFIRMED`, see
//! [`Confirmation`]) and Prometheus metrics (`/metrics`). What probes and scrapers
//! read, nothing else: the operator API has a listener of its own
//! ([`crate::api_port`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::{self, Metrics};
use crate::readiness::Readiness;
use crate::sync::confirmation::Confirmation;

/// What the admin handlers read.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub readiness: Readiness,
    pub confirmation: Confirmation,
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

async fn readyz(State(state): State<AdminState>) -> (StatusCode, String) {
    if state.readiness.is_ready() && state.confirmation.is_serving() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", state.confirmation.describe_unserving()),
        )
    }
}

async fn metrics_text(State(state): State<AdminState>) -> impl IntoResponse {
    // The age as of this scrape.
    state.confirmation.evaluate();
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

    use std::time::Duration;

    use super::*;
    use crate::sync::confirmation::testing;

    fn state() -> AdminState {
        let metrics = Arc::new(Metrics::new());
        AdminState {
            readiness: Readiness::new(),
            confirmation: testing::unconfirmed(testing::BOUNDS, &metrics),
            metrics,
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

    #[tokio::test(start_paused = true)]
    async fn readyz_follows_the_first_load_and_then_the_confirmation() {
        let state = state();
        let (status, body) = get(app(state.clone()), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: key set not loaded from PostgreSQL yet\n");
        state.readiness.set_ready();
        state.confirmation.confirm(tokio::time::Instant::now());
        let (status, body) = get(app(state.clone()), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "ready\n");

        // Cut off from PostgreSQL: ready until KEYSYNC_MAX_UNCONFIRMED, then not.
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(get(app(state.clone()), "/readyz").await.0, StatusCode::OK);
        tokio::time::advance(Duration::from_secs(2)).await;
        let (status, body) = get(app(state.clone()), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "not ready: key set not confirmed against PostgreSQL for 32s (limit 30s)\n"
        );
        let (_, text) = get(app(state.clone()), "/metrics").await;
        assert!(
            text.contains("keysync_confirmed_age_seconds 32.0"),
            "{text}"
        );
        assert!(text.contains("keysync_ready 0"), "{text}");

        state.confirmation.confirm(tokio::time::Instant::now());
        assert_eq!(get(app(state), "/readyz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text() {
        let state = state();
        state.metrics.sync.record_store(3, 9);
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
