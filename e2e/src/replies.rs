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
    response.json()["headers"][name]
        .as_array()
        .map(|values| {
            values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}
