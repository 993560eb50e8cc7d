//! When the sync service refreshes: at start, then every `refresh_interval`, and after
//! a failed refresh again with jittered exponential backoff (about 1 s, 2 s, 4 s ... up
//! to a ceiling, never longer than the interval itself).

use crate::steady_clock::millis;
use keysync_backoff::Backoff;
use std::time::Duration;

/// The first retry after a failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);

pub struct RefreshSchedule {
    interval: Duration,
    backoff: Backoff,
    next_due_ms: u64,
}

impl RefreshSchedule {
    /// Due at once. `seed` spreads the retries of many Envoys (see `keysync_backoff`).
    pub fn new(interval: Duration, max_retry: Duration, seed: u64) -> Self {
        RefreshSchedule {
            interval,
            backoff: Backoff::new(FIRST_RETRY, max_retry.min(interval), seed),
            next_due_ms: 0,
        }
    }

    pub fn is_due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_due_ms
    }

    pub fn succeeded(&mut self, now_ms: u64) {
        self.backoff.reset();
        self.next_due_ms = now_ms.saturating_add(millis(self.interval));
    }

    /// Returns the delay before the next attempt.
    pub fn failed(&mut self, now_ms: u64) -> Duration {
        let delay = self.backoff.failed();
        self.next_due_ms = now_ms.saturating_add(millis(delay));
        delay
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.backoff.consecutive_failures()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_start_then_every_interval() {
        let mut s = RefreshSchedule::new(Duration::from_secs(900), Duration::from_secs(60), 1);
        assert!(s.is_due(0));
        s.succeeded(1_000);
        assert!(!s.is_due(900_999));
        assert!(s.is_due(901_000));
    }

    #[test]
    fn backs_off_exponentially_to_the_ceiling_and_resets() {
        let mut s = RefreshSchedule::new(Duration::from_secs(900), Duration::from_secs(10), 1);
        for nominal in [1, 2, 4, 8, 10, 10] {
            let delay = s.failed(0);
            assert!(
                delay <= Duration::from_secs(nominal) && delay >= Duration::from_secs(nominal) / 2,
                "{delay:?} for {nominal}s"
            );
            assert!(!s.is_due(millis(delay) - 1) && s.is_due(millis(delay)));
        }
        assert_eq!(s.consecutive_failures(), 6);
        s.succeeded(0);
        assert!(s.failed(0) <= Duration::from_secs(1));
    }

    #[test]
    fn never_waits_longer_than_the_refresh_interval() {
        let mut s = RefreshSchedule::new(Duration::from_secs(2), Duration::from_secs(60), 1);
        for _ in 0..40 {
            assert!(s.failed(0) <= Duration::from_secs(2));
        }
    }
}
