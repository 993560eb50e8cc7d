//! Usage metering, keysync's side: the gateways' flushes of cumulative counters
//! ([`flush`]: checked into a [`flush::Flush`]), turned into hourly increments in
//! PostgreSQL ([`store`]: one transaction a flush, a few batched statements whatever the
//! number of counters), and the monthly partitions of the rollup created ahead and
//! dropped after the retention ([`partitions`]). Reading the rollup is
//! [`crate::operations::usage`]'s. Optionally, each stored flush's increments are
//! exported to Kafka as CloudEvents ([`cloud_event`], [`export`]) after its commit.
//!
//! Exactness rests on two facts: an instance's counters only grow for its life, and
//! keysync stores, in the same transaction as the increments, the cumulative values it
//! took them from. A retried flush (its answer lost), a repeated one or a flush that
//! raced its retry adds nothing twice; a flush keysync could not store is answered
//! `UNAVAILABLE`, so the gateway sends its (larger) counters again later.

pub mod cloud_event;
pub mod export;
pub mod flush;
pub mod metrics;
pub mod partitions;
pub mod store;

use std::fmt;

/// What happened to a counted request (the proto's `UsageCounter.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Forwarded and answered 1xx, or anything not 2xx..5xx.
    Other,
    Status2xx,
    Status3xx,
    Status4xx,
    Status5xx,
    /// Refused by a rate limit (429).
    RateLimited,
    /// Refused by a quota.
    QuotaExceeded,
    /// Refused by the key's policy: a scope or the allowlist (403).
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
    pub fn code(self) -> i16 {
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

    pub fn from_code(code: i64) -> Option<Outcome> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| i64::from(outcome.code()) == code)
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
    fn codes_round_trip_and_names_are_distinct() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::from_code(i64::from(outcome.code())), Some(outcome));
        }
        assert_eq!(Outcome::from_code(0), None);
        assert_eq!(Outcome::from_code(9), None);
        let names: std::collections::BTreeSet<_> = Outcome::ALL
            .iter()
            .map(|outcome| outcome.as_str())
            .collect();
        assert_eq!(names.len(), 8);
    }
}
