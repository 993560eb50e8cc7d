//! Echo backend: an HTTP/1.1 server that answers every request with 200 and a JSON
//! description of the request, so tests (and the demo) can see exactly what the gateway
//! forwarded: `{"method": "GET", "path": "/a?b=c", "headers": {"name": ["value"]}}`.
//! A request header `x-echo-response-header: name: value` makes it send that header back,
//! so tests can play an upstream that sets headers of its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The echo service: every method and path goes to the same handler.
pub fn router() -> Router {
    Router::new().fallback(echo)
}

/// Serves the echo service on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    axum::serve(listener, router()).await
}

/// Serves the echo service on `listener` until `shutdown` completes, then finishes the
/// requests in flight.
pub async fn serve_until(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The JSON description of a request: method, path with query, and headers by
/// lower-case name, each with all its values in order (invalid UTF-8 replaced).
pub fn describe(method: &Method, uri: &Uri, headers: &HeaderMap) -> Value {
    let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        by_name
            .entry(name.as_str())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let path = uri.path_and_query().map_or("/", |path| path.as_str());
    json!({
        "method": method.as_str(),
        "path": path,
        "headers": by_name,
    })
}

/// Request header asking the echo to add `name: value` to its response.
pub const RESPONSE_HEADER_REQUEST: &str = "x-echo-response-header";

/// The echo's answer to `request`.
pub async fn echo(request: Request) -> Response {
    let description = describe(request.method(), request.uri(), request.headers());
    let mut response = (
        [(header::CONTENT_TYPE, "application/json")],
        description.to_string(),
    )
        .into_response();
    let asked = request.headers().get_all(RESPONSE_HEADER_REQUEST);
    for (name, value) in asked
        .iter()
        .filter_map(|asked| response_header(asked.as_bytes()))
    {
        response.headers_mut().append(name, value);
    }
    response
}

/// `name: value` as a header, or `None` when it is not one.
fn response_header(asked: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let asked = std::str::from_utf8(asked).ok()?;
    let (name, value) = asked.split_once(':')?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
    Some((name, HeaderValue::from_str(value.trim()).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_header_requests_are_read_leniently() {
        let (name, value) = response_header(b"RateLimit:  limit=5, remaining=4 ").expect("valid");
        assert_eq!(name.as_str(), "ratelimit");
        assert_eq!(value, "limit=5, remaining=4");
        assert!(response_header(b"no colon").is_none());
        assert!(response_header(b"bad name: x").is_none());
    }

    #[test]
    fn describe_groups_header_values_by_name() {
        let mut headers = HeaderMap::new();
        headers.append("x-org-id", HeaderValue::from_static("org_1"));
        headers.append("accept", HeaderValue::from_static("a"));
        headers.append("accept", HeaderValue::from_static("b"));
        headers.append(
            "x-bytes",
            HeaderValue::from_bytes(b"caf\xe9").expect("opaque header value"),
        );
        let uri: Uri = "/v1/things?limit=5".parse().expect("uri");
        let description = describe(&Method::POST, &uri, &headers);
        assert_eq!(
            description,
            json!({
                "method": "POST",
                "path": "/v1/things?limit=5",
                "headers": {
                    "accept": ["a", "b"],
                    "x-bytes": ["caf\u{fffd}"],
                    "x-org-id": ["org_1"],
                },
            })
        );
    }
}
