//! What happened to a request usage metering counts: the `outcome` of keysync.v1's
//! `UsageCounter` and of the usage rollup's rows. The gateway counts under these codes
//! and keysync stores and reports them, so both read them from here; the names are what
//! the CLI and the HTTP API show.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Forwarded and answered 1xx or anything outside 2xx..5xx; no response headers came
    /// (the client or the upstream went away); or the gateway itself failed the request
    /// (503 when its identity headers could not be written).
    Other,
    Status2xx,
    Status3xx,
    Status4xx,
    Status5xx,
    /// Refused by a rate limit (429).
    RateLimited,
    /// Refused by a monthly quota (429).
    QuotaExceeded,
    /// Refused by the key's policy: a scope the route requires, or its allowlist (403).
    PolicyDenied,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Other,
        Outcome::Status2xx,
        Outcome::Status3xx,
        Outcome::Status4xx,
        Outcome::Status5xx,
        Outcome::RateLimited,
        Outcome::QuotaExceeded,
        Outcome::PolicyDenied,
    ];

    /// The wire and database number (1 to 8).
    pub fn code(self) -> u8 {
        match self {
            Outcome::Other => 1,
            Outcome::Status2xx => 2,
            Outcome::Status3xx => 3,
            Outcome::Status4xx => 4,
            Outcome::Status5xx => 5,
            Outcome::RateLimited => 6,
            Outcome::QuotaExceeded => 7,
            Outcome::PolicyDenied => 8,
        }
    }

    /// The outcome of a code read from the wire or a row; `None` for any other number.
    pub fn from_code(code: i64) -> Option<Outcome> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| i64::from(outcome.code()) == code)
    }

    /// A forwarded request, by its upstream's status (`None`: no response headers).
    pub fn of_status(status: Option<u32>) -> Outcome {
        match status {
            Some(200..=299) => Outcome::Status2xx,
            Some(300..=399) => Outcome::Status3xx,
            Some(400..=499) => Outcome::Status4xx,
            Some(500..=599) => Outcome::Status5xx,
            _ => Outcome::Other,
        }
    }

    /// How the CLI and the API name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Other => "other",
            Outcome::Status2xx => "2xx",
            Outcome::Status3xx => "3xx",
            Outcome::Status4xx => "4xx",
            Outcome::Status5xx => "5xx",
            Outcome::RateLimited => "rate_limited",
            Outcome::QuotaExceeded => "quota_exceeded",
            Outcome::PolicyDenied => "policy_denied",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_and_name_is_pinned() {
        // Stored in the usage rollup and sent by every gateway: a code never changes.
        let pinned = [
            (Outcome::Other, 1, "other"),
            (Outcome::Status2xx, 2, "2xx"),
            (Outcome::Status3xx, 3, "3xx"),
            (Outcome::Status4xx, 4, "4xx"),
            (Outcome::Status5xx, 5, "5xx"),
            (Outcome::RateLimited, 6, "rate_limited"),
            (Outcome::QuotaExceeded, 7, "quota_exceeded"),
            (Outcome::PolicyDenied, 8, "policy_denied"),
        ];
        assert_eq!(pinned.len(), Outcome::ALL.len());
        for (outcome, code, name) in pinned {
            assert_eq!(outcome.code(), code, "{outcome:?}");
            assert_eq!(outcome.as_str(), name);
            assert_eq!(outcome.to_string(), name);
            assert_eq!(Outcome::from_code(i64::from(code)), Some(outcome));
        }
        for unknown in [0, 9, -1, 256, i64::MIN] {
            assert_eq!(Outcome::from_code(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn a_forwarded_request_counts_under_its_status_class() {
        for (status, outcome) in [
            (Some(200), Outcome::Status2xx),
            (Some(204), Outcome::Status2xx),
            (Some(302), Outcome::Status3xx),
            (Some(404), Outcome::Status4xx),
            (Some(503), Outcome::Status5xx),
            (Some(101), Outcome::Other),
            (Some(600), Outcome::Other),
            (None, Outcome::Other),
        ] {
            assert_eq!(Outcome::of_status(status), outcome, "{status:?}");
        }
    }
}
