//! When the sync service acts: full refreshes at start and then every
//! `refresh_interval`, and after a failure (of a refresh, or of the watch stream) again
//! with exponential backoff (1 s, 2 s, 4 s, ... up to a ceiling).

use std::time::Duration;

const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Exponential backoff after consecutive failures.
pub struct Backoff {
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Backoff { max, failures: 0 }
    }

    /// Counts a failure and returns how long to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(16)).unwrap_or(u32::MAX);
        self.failures = self.failures.saturating_add(1);
        FIRST_RETRY.saturating_mul(factor).min(self.max)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }
}

pub struct Schedule {
    interval: Duration,
    backoff: Backoff,
    next_due_ms: u64,
}

impl Schedule {
    /// Due at once.
    pub fn new(interval: Duration, max_retry: Duration) -> Self {
        Schedule {
            interval,
            backoff: Backoff::new(max_retry.min(interval)),
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

pub fn millis(d: Duration) -> u64 {
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
    fn backoff_alone() {
        let mut b = Backoff::new(Duration::from_secs(3));
        assert_eq!(b.failed().as_secs(), 1);
        assert_eq!(b.failed().as_secs(), 2);
        assert_eq!(b.failed().as_secs(), 3);
        b.reset();
        assert_eq!(b.failed().as_secs(), 1);
    }

    #[test]
    fn never_waits_longer_than_the_refresh_interval() {
        let mut s = Schedule::new(Duration::from_secs(2), Duration::from_secs(60));
        for _ in 0..40 {
            assert!(s.failed(0) <= Duration::from_secs(2));
        }
    }
}
