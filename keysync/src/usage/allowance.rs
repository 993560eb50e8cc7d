//! How many requests one gateway instance's usage flushes may still add: what a gateway
//! can plausibly serve since its last flush, at most `KEYSYNC_GATEWAY_MAX_RATE` requests
//! a second, saved up for at most [`WINDOW`]. A token bucket per instance, kept in its
//! `usage_instance_totals` row (`allowance`, `allowance_at`) and worked out on
//! PostgreSQL's clock, so every keysync replica agrees on it.
//!
//! - An instance's first flush (a gateway that just started, or one keysync has not
//!   heard from since this bound exists) may add a full window's worth: it covers the
//!   gateway's life so far, and a gateway that could not reach keysync for a while.
//! - A flush too large for one call is sent as several with the same cut time; they
//!   share what is left, so the split does not refuse what one call would take.
//! - After an outage a gateway flushes what it served meanwhile: up to a window's worth
//!   of the rate, which at a rate ten times the gateway's real one covers ten windows.
//!
//! What goes beyond is refused ([`crate::usage::screening`]).

use std::time::Duration;

/// The most an instance saves up, and what its first flush may add: a window's worth.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// The bound of one instance's flushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ceiling {
    /// Requests a second one gateway is taken to serve at most.
    pub rate: u32,
}

impl Ceiling {
    /// A window's worth: the allowance of a new instance, and the most any saves up.
    pub fn capacity(self) -> i64 {
        i64::from(self.rate).saturating_mul(WINDOW.as_secs() as i64)
    }

    /// The allowance `elapsed_ms` after it stood at `stored` (`None`: never stored, a
    /// full window's worth). A clock that went back adds nothing.
    pub fn refill(self, stored: Option<i64>, elapsed_ms: i64) -> i64 {
        let Some(stored) = stored else {
            return self.capacity();
        };
        let earned = i128::from(self.rate) * i128::from(elapsed_ms.max(0)) / 1000;
        let refilled = i128::from(stored.max(0)).saturating_add(earned);
        i64::try_from(refilled.min(i128::from(self.capacity()))).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allowance_grows_with_the_rate_up_to_a_window() {
        let ceiling = Ceiling { rate: 1000 };
        assert_eq!(ceiling.capacity(), 900_000);
        assert_eq!(
            ceiling.refill(None, 0),
            900_000,
            "a first flush: a full window"
        );
        assert_eq!(
            ceiling.refill(Some(0), 10_000),
            10_000,
            "ten seconds' worth"
        );
        assert_eq!(ceiling.refill(Some(0), 1), 1);
        assert_eq!(ceiling.refill(Some(500), 2_500), 3_000);
        assert_eq!(
            ceiling.refill(Some(0), 3_600_000),
            900_000,
            "at most a window"
        );
        assert_eq!(ceiling.refill(Some(899_999), 5_000), 900_000);
        assert_eq!(ceiling.refill(Some(400), -60_000), 400, "a clock gone back");
        assert_eq!(ceiling.refill(Some(-5), 0), 0);
        let huge = Ceiling { rate: u32::MAX };
        assert_eq!(huge.refill(Some(i64::MAX), i64::MAX), huge.capacity());
    }
}
