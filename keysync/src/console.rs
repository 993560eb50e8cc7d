//! The web console (`/console/` on the operator API's listener): a page that signs in
//! with an admin token and shows and changes what the HTTP API does, nothing more. Its
//! files (`keysync/console/`) are built into the binary, so it works air-gapped and
//! needs no build step; every answer carries a Content-Security-Policy that lets the
//! page load scripts, styles and data from keysync alone (no inline script or style,
//! no other origin), and it talks to `/v1/` only. See `docs/console.md`.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// Where the console is served.
pub const CONSOLE_PATH: &str = "/console/";

/// What the browser may load for the console's pages: its own files and the API, no
/// inline code, no frame, no form posted anywhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// One built-in file: its name under `/console/`, its type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($name:literal => $type:expr),* $(,)?) => {
        &[$(Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../console/", $name)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// Every file of the console.
static ASSETS: &[Asset] = assets! {
    "index.html" => HTML,
    "console.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "app.js" => JS,
    "api.js" => JS,
    "elements.js" => JS,
    "format.js" => JS,
    "chart.js" => JS,
    "signin.js" => JS,
    "overview.js" => JS,
    "orgs.js" => JS,
    "org.js" => JS,
    "key.js" => JS,
    "key_forms.js" => JS,
    "audit.js" => JS,
    "gateways.js" => JS,
};

/// The console's routes: `/console` sends the browser to `/console/`, which is the page.
pub fn router() -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent(CONSOLE_PATH) }),
        )
        .route("/console/", get(|| async { asset("index.html") }))
        .route(
            "/console/{file}",
            get(|Path(file): Path<String>| async move { asset(&file) }),
        )
}

/// The file `name`, with the console's headers; 404 for any other name.
fn asset(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            // A new keysync serves new files at the same names: always revalidate.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let response = router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), 1 << 22).await.unwrap();
        (status, headers, body.to_vec())
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_under_a_strict_policy() {
        let (status, headers, body) = get("/console/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], HTML);
        assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
        let page = String::from_utf8(body).unwrap();
        assert!(page.contains("app.js"), "{page}");
        for asset in ASSETS {
            let (status, headers, body) = get(&format!("/console/{}", asset.name)).await;
            assert_eq!(status, StatusCode::OK, "{}", asset.name);
            assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert!(!body.is_empty(), "{}", asset.name);
        }
        let (status, _, _) = get("/console/secrets.txt").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, headers, _) = get("/console").await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(headers["location"], "/console/");
    }

    /// The page's files name nothing outside keysync: no `http(s)://` URL to load, no
    /// inline handler or style attribute the policy would block.
    #[test]
    fn the_files_load_nothing_from_elsewhere_and_carry_no_inline_code() {
        for asset in ASSETS {
            let text = String::from_utf8_lossy(asset.body);
            for needle in [
                "http://",
                "https://",
                "onclick=",
                "onload=",
                "style=\"",
                "<style",
                "javascript:",
            ] {
                // The SVG namespace is an identifier, not a request.
                let text = text.replace("http://www.w3.org/2000/svg", "");
                assert!(!text.contains(needle), "{} has {needle}", asset.name);
            }
            if asset.name == "index.html" {
                assert!(!text.contains("<script>"), "inline script in index.html");
            }
        }
    }

    /// The audit page's action filter offers every action the trail records (a new one
    /// added to the API without the page would be unreachable from the filter).
    #[test]
    fn the_audit_page_lists_every_action() {
        let page = ASSETS
            .iter()
            .find(|asset| asset.name == "audit.js")
            .map(|asset| String::from_utf8_lossy(asset.body))
            .unwrap();
        for action in crate::operations::audit::AuditAction::ALL {
            let quoted = format!("\"{}\"", action.as_str());
            assert!(page.contains(&quoted), "audit.js lacks {quoted}");
        }
    }
}
