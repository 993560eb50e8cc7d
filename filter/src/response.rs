//! The local replies the gateway sends instead of forwarding: status, headers, JSON body.

use crate::decision::Denial;
use crate::local_rate_limit::Quota;

pub struct LocalReply {
    pub status: u32,
    pub headers: &'static [(&'static str, &'static str)],
    pub body: &'static [u8],
}

const MISSING_BODY: &[u8] = br#"{"error":"missing_api_key","message":"An API key is required: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."}"#;
const INVALID_BODY: &[u8] =
    br#"{"error":"invalid_api_key","message":"The API key is unknown, revoked, expired or malformed."}"#;
const UNAVAILABLE_BODY: &[u8] =
    br#"{"error":"auth_unavailable","message":"API keys cannot be checked right now; retry shortly."}"#;

const JSON: (&str, &str) = ("content-type", "application/json");

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
    }
}

const RATE_LIMITED_BODY: &[u8] =
    br#"{"error":"rate_limited","message":"Too many requests for this API key's rate limit; see Retry-After."}"#;

/// 429 for a request over its window's budget, with the rate-limit headers.
pub fn rate_limited(quota: &Quota) -> (u32, Vec<(&'static str, String)>, &'static [u8]) {
    (
        429,
        vec![
            (JSON.0, JSON.1.to_string()),
            ("retry-after", quota.reset_secs.to_string()),
            ("ratelimit-policy", quota.policy_header()),
            ("ratelimit", quota.limit_header()),
        ],
        RATE_LIMITED_BODY,
    )
}

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

        for r in [missing, invalid, invalid_401, unavailable] {
            assert!(r.headers.contains(&JSON));
        }
    }

    #[test]
    fn rate_limited_reply_says_when_to_retry() {
        let quota = Quota {
            allowed: false,
            policy: "org",
            budget: 100,
            remaining: 0,
            reset_secs: 17,
        };
        let (status, headers, body) = rate_limited(&quota);
        assert_eq!(status, 429);
        assert!(headers.contains(&("retry-after", "17".to_string())));
        assert!(headers.contains(&("ratelimit", "\"org\";r=0;t=17".to_string())));
        assert!(headers.contains(&("ratelimit-policy", "\"org\";q=100;w=60".to_string())));
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(json["error"], "rate_limited");
    }
}
