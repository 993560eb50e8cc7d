//! How old the store's data is, measured without trusting the wall clock.
//!
//! Proxy-wasm offers only the wall clock, and a wall clock can be stepped (NTP, an
//! operator, a VM restore). [`SteadyClock`] turns successive wall-clock readings into a
//! time that only moves forward: a step back counts as no time, a step forward (or a
//! stalled thread) as at most [`MAX_STEP_MS`]. The sync service runs its schedule on it
//! and ages keysync's last confirmation with it; each worker uses one to add the time
//! since the sync service last wrote (its `beat`), so a dead sync VM leaves the store
//! ageing toward `max_staleness` instead of frozen.

use crate::store_meta::{StoreMeta, NEVER};

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

/// A worker's view of the store's age: the age the sync service last wrote, plus the
/// time since its `beat` last moved.
#[derive(Debug, Default)]
pub struct StoreAge {
    clock: SteadyClock,
    last_beat: Option<u64>,
    beat_seen_at_ms: u64,
}

impl StoreAge {
    /// The store's age in milliseconds at `wall_ms`; [`NEVER`] if keysync never
    /// confirmed anything in it.
    pub fn age_ms(&mut self, meta: &StoreMeta, wall_ms: u64) -> u64 {
        let now = self.clock.read(wall_ms);
        if self.last_beat != Some(meta.beat) {
            self.last_beat = Some(meta.beat);
            self.beat_seen_at_ms = now;
        }
        if meta.confirmed_age_ms == NEVER {
            return NEVER;
        }
        meta.confirmed_age_ms
            .saturating_add(now.saturating_sub(self.beat_seen_at_ms))
    }
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

    fn meta(confirmed_age_ms: u64, beat: u64) -> StoreMeta {
        StoreMeta {
            confirmed_age_ms,
            beat,
            ..StoreMeta::default()
        }
    }

    #[test]
    fn a_beating_sync_service_reports_the_age_it_wrote() {
        let mut age = StoreAge::default();
        assert_eq!(age.age_ms(&meta(1_000, 1), 50_000), 1_000);
        assert_eq!(age.age_ms(&meta(1_250, 2), 50_250), 1_250);
        assert_eq!(age.age_ms(&meta(NEVER, 3), 50_500), NEVER);
    }

    #[test]
    fn a_silent_sync_service_leaves_the_store_ageing() {
        let mut age = StoreAge::default();
        age.age_ms(&meta(1_000, 9), 50_000);
        // The sync VM died: the beat stops; the worker's own time keeps counting.
        let mut wall = 50_000;
        for _ in 0..40 {
            wall += 250;
            age.age_ms(&meta(1_000, 9), wall);
        }
        assert_eq!(age.age_ms(&meta(1_000, 9), wall), 11_000);
    }

    #[test]
    fn a_clock_stepped_back_does_not_make_old_data_young() {
        let mut age = StoreAge::default();
        age.age_ms(&meta(5_000, 1), 10_000_000);
        let stepped = 10_000_000 - 3_600_000;
        assert_eq!(age.age_ms(&meta(5_000, 1), stepped), 5_000);
        assert_eq!(age.age_ms(&meta(5_000, 1), stepped + 2_000), 7_000);
    }
}
