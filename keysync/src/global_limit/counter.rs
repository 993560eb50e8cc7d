//! Where hits are counted: a store shared by every keysync process (Redis in `serve`,
//! see [`crate::global_limit::redis_counter`]), behind a trait so the service's
//! decisions can be tested without one.
//!
//! Counter layout: one integer per subject and window, named
//! `keysync:ratelimit:<org|key>:<uuid>:<window number>`, created by its first hit and
//! expiring [`COUNTER_TTL_SECONDS`](super::window::COUNTER_TTL_SECONDS) (two windows)
//! later.

use std::future::Future;
use std::time::Duration;

use keysync_contract::subject::Subject;

use super::window::Window;

/// Prefix of every counter's name, so the counters are easy to find (and to tell apart
/// from anything else in a shared Redis).
pub const COUNTER_PREFIX: &str = "keysync:ratelimit:";

/// Hits to add to one counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The counter's name ([`counter_name`]).
    pub counter: String,
    /// How many hits: the request's `hits_addend`, at least 1.
    pub amount: u64,
}

/// Why hits could not be counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    #[error("no answer from Redis within {0:?}")]
    Timeout(Duration),
    /// The client's own error (connection refused, broken pipe, a server error...).
    #[error("{0}")]
    Redis(String),
    #[error("unexpected answer from Redis: {0}")]
    Reply(String),
}

/// Adds hits to window counters, atomically for one call.
pub trait HitCounter: Send + Sync + 'static {
    /// Adds each hit to its counter (creating it, with its expiry, on the first hit)
    /// and returns the counts after the addition, in the order of `hits`.
    fn add(&self, hits: &[Hit]) -> impl Future<Output = Result<Vec<u64>, CounterError>> + Send;

    /// A cheap round trip, to tell whether the store is reachable.
    fn ping(&self) -> impl Future<Output = Result<(), CounterError>> + Send;
}

/// The counter of `subject` in `window`.
pub fn counter_name(subject: &Subject, window: Window) -> String {
    format!("{COUNTER_PREFIX}{subject}:{}", window.number)
}

#[cfg(test)]
mod tests {
    use keysync_contract::id::Id;
    use uuid::Uuid;

    use super::*;

    #[test]
    fn counters_are_named_by_subject_and_window() {
        let id = Id(Uuid::from_u128(0xabc).into_bytes());
        let subject = Subject::Org(id);
        assert_eq!(
            counter_name(&subject, Window::at(1_700_000_000)),
            "keysync:ratelimit:org:00000000-0000-0000-0000-000000000abc:28333333"
        );
        let key = Subject::Key(id);
        assert_ne!(
            counter_name(&key, Window::at(60)),
            counter_name(&subject, Window::at(60))
        );
        assert_ne!(
            counter_name(&key, Window::at(59)),
            counter_name(&key, Window::at(60))
        );
    }
}
