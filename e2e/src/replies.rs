//! What the gateway's answers must look like: the contract's JSON errors, and the
//! headers the echo backend reports it received.

use crate::http::Response;

/// An error reply of the contract: `status`, `content-type: application/json` and
/// `{"error": error, ...}`.
pub fn assert_error(response: &Response, status: u16, error: &str) {
    assert_eq!(response.status, status, "body: {}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "headers: {:?}",
        response.headers
    );
    assert_eq!(response.json()["error"], error, "body: {}", response.text());
}

/// Every value of a header the echo backend received, as reported in its JSON body.
pub fn forwarded_header(response: &Response, name: &str) -> Vec<String> {
    header_values(&response.json(), name)
}

/// Every value of header `name` in an echo description (`crate::echo::describe`).
pub fn header_values(description: &serde_json::Value, name: &str) -> Vec<String> {
    description["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// How many of `responses` have `status`.
pub fn count_status(responses: &[Response], status: u16) -> usize {
    responses.iter().filter(|r| r.status == status).count()
}

/// A member (`limit`, `remaining` or `reset`) of a response's `RateLimit` header
/// (`limit=100, remaining=42, reset=17`); `None` when the header or the member is absent.
pub fn ratelimit_member(response: &Response, name: &str) -> Option<u64> {
    response
        .header("ratelimit")?
        .split(", ")
        .find_map(|member| member.strip_prefix(name)?.strip_prefix('='))?
        .parse()
        .ok()
}

/// A 429 of the contract for a budget of `limit` a window: the JSON error, `Retry-After`
/// in seconds, `RateLimit` with nothing remaining and the same reset, and the policy.
/// Returns the Retry-After seconds.
pub fn assert_rate_limited(response: &Response, limit: u64) -> u64 {
    assert_error(response, 429, "rate_limited");
    let retry: u64 = response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in seconds: {:?}", response.headers));
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        response.header("ratelimit"),
        Some(format!("limit={limit}, remaining=0, reset={retry}").as_str())
    );
    assert_eq!(
        response.header("ratelimit-policy"),
        Some(format!("{limit};w=60").as_str())
    );
    retry
}
