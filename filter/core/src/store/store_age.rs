//! How old the store's data is, as one worker sees it, without trusting the wall clock:
//! the age the sync service last wrote (`StoreMeta::confirmed_age_ms`), plus the time,
//! on the worker's own [`SteadyClock`], since the sync service's `beat` last moved. So a
//! dead sync VM leaves the store ageing toward `max_staleness` instead of frozen.

use crate::keysync_api::provenance::NEVER;
use crate::steady_clock::SteadyClock;
use crate::store::store_meta::StoreMeta;

/// A worker's view of the store's age.
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
