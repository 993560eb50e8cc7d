//! Retry spacing after failures, for the wasm filter (refreshes, the watch stream) and
//! keysync (database and Redis reconnects): short at first so a blip heals fast,
//! doubling up to a ceiling so an outage does not become a stream of doomed attempts,
//! and jittered so that many Envoys (or keysyncs) that lost the same peer at the same
//! moment do not all come back in the same millisecond.
//!
//! Plain Rust with no dependencies (it runs in wasm): the randomness is a small
//! xorshift generator seeded by the caller, which is plenty for spreading retries.
#![forbid(unsafe_code)]
// Runs inside Envoy's wasm VM, where a panic kills the VM of a whole worker.
#![deny(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unimplemented,
    clippy::unreachable
)]

use std::time::Duration;

/// Exponential backoff with "equal jitter": the n-th consecutive failure waits a random
/// time between half and all of `min(first * 2^n, max)`. The ceiling is never exceeded
/// and the wait never drops below half the nominal delay.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    failures: u32,
    random: u64,
}

impl Backoff {
    /// `seed` spreads the jitter: the clock or a random number, anything that differs
    /// between processes.
    pub fn new(first: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            first,
            max: max.max(first),
            failures: 0,
            random: scramble(seed),
        }
    }

    /// Counts a failure and returns how long to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        let nominal = self.nominal(self.failures);
        self.failures = self.failures.saturating_add(1);
        let half = nominal / 2;
        // A fraction in [0, 1) with 24 bits of resolution.
        let fraction =
            f64::from(u32::try_from(self.next_random() >> 40).unwrap_or(0)) / f64::from(1u32 << 24);
        half + (nominal - half).mul_f64(fraction)
    }

    /// After a success: the next failure starts from `first` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// The delay before jitter after `failures` earlier failures.
    fn nominal(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(20)).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        x
    }
}

/// splitmix64's finaliser: neighbouring seeds (pids, clock readings) give unrelated
/// states, and xorshift never sees the 0 it cannot leave.
fn scramble(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    match z ^ (z >> 31) {
        0 => 1,
        state => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn doubles_up_to_the_ceiling_within_the_jitter_band() {
        let mut backoff = Backoff::new(secs(1), secs(30), 7);
        for nominal in [1, 2, 4, 8, 16, 30, 30, 30] {
            let delay = backoff.failed();
            assert!(
                delay >= secs(nominal) / 2 && delay <= secs(nominal),
                "{delay:?} for nominal {nominal}s"
            );
        }
        assert_eq!(backoff.consecutive_failures(), 8);
    }

    #[test]
    fn resets_after_a_success() {
        let mut backoff = Backoff::new(secs(1), secs(30), 7);
        for _ in 0..10 {
            backoff.failed();
        }
        backoff.reset();
        assert_eq!(backoff.consecutive_failures(), 0);
        assert!(backoff.failed() <= secs(1));
    }

    #[test]
    fn different_seeds_spread_the_retries() {
        let delays: Vec<Duration> = (1..=20)
            .map(|seed| Backoff::new(secs(4), secs(4), seed).failed())
            .collect();
        let mut distinct = delays.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 15, "{delays:?}");
        assert!(delays.iter().all(|d| *d >= secs(2) && *d <= secs(4)));
    }

    #[test]
    fn a_zero_seed_still_jitters_and_huge_counts_stay_at_the_ceiling() {
        let mut backoff = Backoff::new(Duration::from_millis(250), secs(5), 0);
        for _ in 0..1000 {
            let delay = backoff.failed();
            assert!(delay <= secs(5));
        }
        let delay = backoff.failed();
        assert!(delay >= Duration::from_millis(2500), "{delay:?}");
    }

    #[test]
    fn a_ceiling_below_the_first_delay_is_raised_to_it() {
        let mut backoff = Backoff::new(secs(2), secs(1), 3);
        let delay = backoff.failed();
        assert!(delay >= secs(1) && delay <= secs(2));
    }
}
