//! The replies the gateway sends instead of forwarding: status, headers, JSON body.

/// Why a request is not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// 401: no API key offered.
    MissingKey,
    /// 403 (configurable): unknown, revoked, expired or malformed.
    InvalidKey,
    /// 503: the gateway cannot tell (never synced and keysync unreachable).
    Unavailable,
    /// 403: a valid key that lacks a scope the route requires (RFC 6750).
    InsufficientScope,
    /// 403: a valid key used from outside its allowlist.
    IpNotAllowed,
}

pub struct LocalReply {
    pub status: u32,
    pub headers: &'static [(&'static str, &'static str)],
    pub body: &'static [u8],
}

const MISSING_BODY: &[u8] = br#"{"error":"missing_api_key","message":"An API key is required: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."}"#;
const INVALID_BODY: &[u8] =
    br#"{"error":"invalid_api_key","message":"The API key is unknown, revoked, expired or malformed."}"#;
const INSUFFICIENT_SCOPE_BODY: &[u8] = br#"{"error":"insufficient_scope","message":"The API key does not grant a scope this route requires."}"#;
const IP_NOT_ALLOWED_BODY: &[u8] =
    br#"{"error":"ip_not_allowed","message":"The API key may not be used from this address."}"#;
const UNAVAILABLE_BODY: &[u8] =
    br#"{"error":"auth_unavailable","message":"API keys cannot be checked right now; retry shortly."}"#;

pub const JSON: (&str, &str) = ("content-type", "application/json");

pub fn reply(denial: Denial, invalid_key_status: u32) -> LocalReply {
    match denial {
        Denial::MissingKey => LocalReply {
            status: 401,
            headers: &[JSON, ("www-authenticate", "Bearer")],
            body: MISSING_BODY,
        },
        Denial::InvalidKey if invalid_key_status == 401 => LocalReply {
            status: 401,
            headers: &[JSON, ("www-authenticate", "Bearer error=\"invalid_token\"")],
            body: INVALID_BODY,
        },
        Denial::InvalidKey => LocalReply {
            status: 403,
            headers: &[JSON],
            body: INVALID_BODY,
        },
        Denial::Unavailable => LocalReply {
            status: 503,
            headers: &[JSON, ("retry-after", "5")],
            body: UNAVAILABLE_BODY,
        },
        Denial::InsufficientScope => LocalReply {
            status: 403,
            headers: &[
                JSON,
                ("www-authenticate", "Bearer error=\"insufficient_scope\""),
            ],
            body: INSUFFICIENT_SCOPE_BODY,
        },
        Denial::IpNotAllowed => LocalReply {
            status: 403,
            headers: &[JSON],
            body: IP_NOT_ALLOWED_BODY,
        },
    }
}

const INTERNAL_ERROR_BODY: &[u8] = br#"{"error":"internal_error","message":"The gateway failed while checking this request; retry shortly."}"#;

/// 500: the gateway failed while handling the request (the native filter's answer to a panic
/// caught in its own code); the request was not forwarded.
pub fn internal_error() -> LocalReply {
    LocalReply {
        status: 500,
        headers: &[JSON],
        body: INTERNAL_ERROR_BODY,
    }
}

/// The body of a 429; its headers depend on the limiter (see the README).
pub const RATE_LIMITED_BODY: &[u8] =
    br#"{"error":"rate_limited","message":"Too many requests for this API key's rate limit; see Retry-After."}"#;

/// The body of a 429 for a request over a monthly quota (headers: see the README).
pub const QUOTA_EXCEEDED_BODY: &[u8] =
    br#"{"error":"quota_exceeded","message":"The monthly request quota of this API key or its organization is used up; see Retry-After."}"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn error_code(reply: &LocalReply) -> String {
        let body: serde_json::Value = serde_json::from_slice(reply.body).unwrap();
        body["error"].as_str().unwrap().to_string()
    }

    #[test]
    fn contract_statuses_and_bodies() {
        let missing = reply(Denial::MissingKey, 403);
        assert_eq!(missing.status, 401);
        assert_eq!(error_code(&missing), "missing_api_key");
        assert!(missing.headers.contains(&("www-authenticate", "Bearer")));

        let invalid = reply(Denial::InvalidKey, 403);
        assert_eq!(invalid.status, 403);
        assert_eq!(error_code(&invalid), "invalid_api_key");

        let invalid_401 = reply(Denial::InvalidKey, 401);
        assert_eq!(invalid_401.status, 401);
        assert_eq!(error_code(&invalid_401), "invalid_api_key");

        let unavailable = reply(Denial::Unavailable, 403);
        assert_eq!(unavailable.status, 503);
        assert_eq!(error_code(&unavailable), "auth_unavailable");

        // Whatever the status configured for invalid keys: these keys are valid.
        for invalid_key_status in [401, 403] {
            let scope = reply(Denial::InsufficientScope, invalid_key_status);
            assert_eq!(scope.status, 403);
            assert_eq!(error_code(&scope), "insufficient_scope");
            assert!(scope
                .headers
                .contains(&("www-authenticate", "Bearer error=\"insufficient_scope\"")));
            let ip = reply(Denial::IpNotAllowed, invalid_key_status);
            assert_eq!(ip.status, 403);
            assert_eq!(error_code(&ip), "ip_not_allowed");
        }

        for r in [missing, invalid, invalid_401, unavailable] {
            assert!(r.headers.contains(&JSON));
        }
    }

    #[test]
    fn internal_error_is_a_json_500() {
        let reply = internal_error();
        assert_eq!(reply.status, 500);
        assert_eq!(error_code(&reply), "internal_error");
        assert_eq!(reply.headers, &[JSON]);
    }

    #[test]
    fn quota_exceeded_body_is_json() {
        let json: serde_json::Value = serde_json::from_slice(QUOTA_EXCEEDED_BODY).unwrap();
        assert_eq!(json["error"], "quota_exceeded");
    }

    #[test]
    fn rate_limited_body_is_json() {
        let json: serde_json::Value = serde_json::from_slice(RATE_LIMITED_BODY).unwrap();
        assert_eq!(json["error"], "rate_limited");
    }
}
