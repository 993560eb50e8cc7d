//! Slowing down an address that keeps presenting unknown or revoked admin tokens.
//!
//! Each address has a leaky bucket of failures: a failure adds one, and one leaks away
//! every [`LEAK_EVERY`]. While an address holds [`BURST`] or more, its requests are
//! answered 429 with `Retry-After` unless they carry a valid token (see
//! [`super::auth`]): a guess is never looked up in the database then, and counts
//! nothing more, so guessing costs no more than one lookup per [`LEAK_EVERY`] however
//! many connections it opens. Requests without a token, or with a good one, add
//! nothing. Addresses are what the admin port sees: behind a proxy, all callers share
//! the proxy's, which is why a valid token must not be refused for a guesser's failures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures an address may make in a row before it is slowed down.
pub const BURST: f64 = 10.0;
/// How often one failure is forgiven.
pub const LEAK_EVERY: Duration = Duration::from_secs(6);
/// Addresses remembered at most; past it, forgiven ones are forgotten first.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Default)]
pub struct FailedTokens {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    /// The level at `now`, after leaking.
    fn level_at(&self, now: Instant) -> f64 {
        let leaked =
            now.saturating_duration_since(self.at).as_secs_f64() / LEAK_EVERY.as_secs_f64();
        (self.level - leaked).max(0.0)
    }
}

impl FailedTokens {
    pub fn new() -> Self {
        FailedTokens::default()
    }

    /// How long `address` must wait before its next try counts, if it must.
    pub fn blocked(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let level = buckets.get(&address)?.level_at(now);
        (level > BURST - 1.0).then(|| LEAK_EVERY.mul_f64(level - (BURST - 1.0)))
    }

    /// Counts a failure of `address`; returns the failures it now holds.
    pub fn record(&self, address: IpAddr, now: Instant) -> f64 {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_ADDRESSES && !buckets.contains_key(&address) {
            buckets.retain(|_, bucket| bucket.level_at(now) > 0.0);
            if buckets.len() >= MAX_ADDRESSES {
                return 0.0;
            }
        }
        let bucket = buckets.entry(address).or_insert(Bucket {
            level: 0.0,
            at: now,
        });
        bucket.level = bucket.level_at(now) + 1.0;
        bucket.at = now;
        bucket.level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_slowed_after_a_burst_and_forgiven_with_time() {
        let failed = FailedTokens::new();
        let here: IpAddr = "127.0.0.1".parse().unwrap();
        let there: IpAddr = "127.0.0.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..9 {
            failed.record(here, start);
            assert_eq!(failed.blocked(here, start), None);
        }
        failed.record(here, start);
        assert_eq!(failed.blocked(here, start), Some(LEAK_EVERY));
        assert_eq!(
            failed.blocked(there, start),
            None,
            "other addresses are not"
        );
        let later = start + LEAK_EVERY;
        assert_eq!(
            failed.blocked(here, later),
            None,
            "one more try after a leak"
        );
        failed.record(here, later);
        assert_eq!(failed.blocked(here, later), Some(LEAK_EVERY));
    }
}
