//! The operator API in process, on a test database, for the tests of its endpoints.

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use keysync::admin_api::{router, ApiSettings, ApiState};
use serde_json::Value;
use tower::ServiceExt;

use super::json;

/// The `/v1/` routes on their own pool.
pub struct Api {
    app: axum::Router,
}

impl Api {
    pub async fn new(url: &str) -> Api {
        let pool = keysync::database::connect(url).await.unwrap();
        Api {
            app: router(ApiState::new(pool, ApiSettings::default())),
        }
    }

    /// `GET path` with `token`: the status and the JSON answer.
    pub async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(token, "GET", path, None).await
    }

    /// `method path` with `token` and a JSON `body`: the status and the JSON answer.
    pub async fn send(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }
}

/// A new admin token from the CLI; `extra` such as `--read-only` or `--org-id ORG`.
pub fn admin_token(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["admin-tokens", "create", "--name", "t", "--json"];
    args.extend_from_slice(extra);
    json(url, &args)["token"].as_str().unwrap().to_owned()
}
