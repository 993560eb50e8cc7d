//! A time that only moves forward, built from wall-clock readings.
//!
//! Proxy-wasm offers only the wall clock, and a wall clock can be stepped (NTP, an
//! operator, a VM restore). [`SteadyClock`] turns successive wall-clock readings into a
//! time that only moves forward: a step back counts as no time, a step forward (or a
//! stalled thread) as at most [`MAX_STEP_MS`]. The sync service runs its schedule on it
//! and ages keysync's last confirmation with it; each worker ages the store with one
//! (`store::store_age`). Times on it, like every duration the filter computes with, are
//! milliseconds ([`millis`]).

use std::time::Duration;

/// The most one reading may advance the clock: a forward step of the wall clock, or a
/// thread that did not run for longer, counts as this much.
pub const MAX_STEP_MS: u64 = 10_000;

/// Where a [`SteadyClock`] starts: far enough from 0 that a moment some age before the
/// first reading (keysync confirmed its data 300 ms before we heard of it) is still a
/// time on it.
pub const ORIGIN_MS: u64 = 1 << 40;

/// A clock that only moves forward, built from wall-clock readings.
#[derive(Debug)]
pub struct SteadyClock {
    last_wall_ms: Option<u64>,
    now_ms: u64,
}

impl Default for SteadyClock {
    fn default() -> Self {
        SteadyClock {
            last_wall_ms: None,
            now_ms: ORIGIN_MS,
        }
    }
}

impl SteadyClock {
    /// Advances by the time since the last reading (clamped) and returns the new time.
    pub fn read(&mut self, wall_ms: u64) -> u64 {
        if let Some(last) = self.last_wall_ms {
            let step = wall_ms.saturating_sub(last).min(MAX_STEP_MS);
            self.now_ms = self.now_ms.saturating_add(step);
        }
        self.last_wall_ms = Some(wall_ms);
        self.now_ms
    }
}

/// A duration in whole milliseconds (saturating).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steady_clock_ignores_steps_back_and_caps_steps_forward() {
        const HOUR: u64 = 3_600_000;
        let mut clock = SteadyClock::default();
        assert_eq!(clock.read(10 * HOUR), ORIGIN_MS);
        assert_eq!(clock.read(10 * HOUR + 250), ORIGIN_MS + 250);
        assert_eq!(
            clock.read(9 * HOUR + 250),
            ORIGIN_MS + 250,
            "an hour back: no time"
        );
        assert_eq!(
            clock.read(9 * HOUR + 500),
            ORIGIN_MS + 500,
            "then it runs on"
        );
        assert_eq!(clock.read(10 * HOUR + 500), ORIGIN_MS + 500 + MAX_STEP_MS);
    }
}
