//! What the rate-limit service answers when it cannot count (Redis unreachable, slow or
//! answering nonsense): allow the request (`open`, the default: an outage of the
//! counter store must not become an outage of the API) or refuse it (`closed`).

use std::fmt;
use std::str::FromStr;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;

/// `KEYSYNC_RATELIMIT_FAILURE_MODE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// Answer `OK`: requests pass uncounted while Redis is away.
    #[default]
    Open,
    /// Answer `OVER_LIMIT`: requests are refused (429) while Redis is away.
    Closed,
}

impl FailureMode {
    /// The answer for descriptors that could not be counted.
    pub fn code(self) -> Code {
        match self {
            FailureMode::Open => Code::Ok,
            FailureMode::Closed => Code::OverLimit,
        }
    }

    /// What an operator reads in the log line about a Redis failure.
    pub fn consequence(self) -> &'static str {
        match self {
            FailureMode::Open => "failing open: requests are allowed uncounted",
            FailureMode::Closed => "failing closed: requests are refused",
        }
    }
}

impl fmt::Display for FailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureMode::Open => "open",
            FailureMode::Closed => "closed",
        })
    }
}

impl FromStr for FailureMode {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "open" => Ok(FailureMode::Open),
            "closed" => Ok(FailureMode::Closed),
            _ => Err("expected open or closed".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_allows_and_closed_refuses() {
        assert_eq!(FailureMode::default(), FailureMode::Open);
        assert_eq!(FailureMode::Open.code(), Code::Ok);
        assert_eq!(FailureMode::Closed.code(), Code::OverLimit);
        assert!(FailureMode::Open.consequence().contains("allowed"));
        assert!(FailureMode::Closed.consequence().contains("refused"));
    }

    #[test]
    fn parses_its_own_spelling_only() {
        for mode in [FailureMode::Open, FailureMode::Closed] {
            assert_eq!(mode.to_string().parse::<FailureMode>(), Ok(mode));
        }
        for text in ["", "OPEN", "deny", "allow", "closed "] {
            assert!(text.parse::<FailureMode>().is_err(), "{text:?}");
        }
    }
}
