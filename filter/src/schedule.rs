//! When the sync service refreshes: at start, then every `refresh_interval`; after a
//! failure, again with exponential backoff (1 s, 2 s, 4 s, ... up to a ceiling).

use std::time::Duration;

const FIRST_RETRY: Duration = Duration::from_secs(1);

pub struct Schedule {
    interval: Duration,
    max_retry: Duration,
    next_due_ms: u64,
    failures: u32,
}

impl Schedule {
    /// Due at once.
    pub fn new(interval: Duration, max_retry: Duration) -> Self {
        Schedule {
            interval,
            max_retry: max_retry.min(interval),
            next_due_ms: 0,
            failures: 0,
        }
    }

    pub fn is_due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_due_ms
    }

    pub fn succeeded(&mut self, now_ms: u64) {
        self.failures = 0;
        self.next_due_ms = now_ms.saturating_add(millis(self.interval));
    }

    /// Returns the delay before the next attempt.
    pub fn failed(&mut self, now_ms: u64) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(16)).unwrap_or(u32::MAX);
        let delay = FIRST_RETRY.saturating_mul(factor).min(self.max_retry);
        self.failures = self.failures.saturating_add(1);
        self.next_due_ms = now_ms.saturating_add(millis(delay));
        delay
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_start_then_every_interval() {
        let mut s = Schedule::new(Duration::from_secs(900), Duration::from_secs(60));
        assert!(s.is_due(0));
        s.succeeded(1_000);
        assert!(!s.is_due(900_999));
        assert!(s.is_due(901_000));
    }

    #[test]
    fn backs_off_exponentially_to_the_ceiling_and_resets() {
        let mut s = Schedule::new(Duration::from_secs(900), Duration::from_secs(10));
        let delays: Vec<u64> = (0..6).map(|_| s.failed(0).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(s.consecutive_failures(), 6);
        s.succeeded(0);
        assert_eq!(s.failed(0).as_secs(), 1);
    }

    #[test]
    fn never_waits_longer_than_the_refresh_interval() {
        let mut s = Schedule::new(Duration::from_secs(2), Duration::from_secs(60));
        for _ in 0..40 {
            assert!(s.failed(0) <= Duration::from_secs(2));
        }
    }
}
