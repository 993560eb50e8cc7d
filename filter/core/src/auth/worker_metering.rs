//! A worker's part in usage metering: counting each request in its tally (memory, no
//! host call), choosing which requests to time, and merging the tally into the shared
//! counters on its tick.

use crate::auth::worker::AuthWorker;
use crate::config::UsageDurations;
use crate::host::Host;
use crate::stats::Counter;
use crate::usage::counters::{self, Counts, Tally, UsageKey};
use crate::usage::duration_sample::DurationSample;
use crate::usage::metering::{Meta, Metering};

impl<H: Host> AuthWorker<H> {
    pub fn metering(&self) -> bool {
        self.metering.get() != Metering::Off
    }

    /// Whether usage metering times this request of a key (whose sample it is).
    pub fn times(&self, sample: Option<&DurationSample>) -> bool {
        if !self.metering() {
            return false;
        }
        match (self.config.usage_durations, sample) {
            (UsageDurations::Sampled, Some(sample)) => sample.take(self.ticks.get()),
            // A record read for this request alone (keysync's answer to a miss).
            (UsageDurations::Sampled, None) | (UsageDurations::All, _) => true,
        }
    }

    /// Counts one request of a recognized key. No host call.
    pub fn count_usage(&self, key: UsageKey, counts: Counts) {
        if self.metering() {
            if let Ok(mut tally) = self.usage.try_borrow_mut() {
                tally.record(key, counts);
            }
        }
    }

    /// Counts one request without a recognized key. No host call.
    pub fn count_unattributed(&self) {
        if self.metering() {
            if let Ok(mut tally) = self.usage.try_borrow_mut() {
                tally.unattributed();
            }
        }
    }

    /// Adds what this worker counted since the last tick into shared data, where the
    /// sync service reads it. One read of the metering settings a tick, and a
    /// compare-and-swap per slot touched.
    pub(super) fn merge_usage(&self) {
        let metering = Metering::of(Meta::read(&self.host));
        self.metering.set(metering);
        let Ok(mut tally) = self.usage.try_borrow_mut() else {
            return;
        };
        match metering {
            Metering::Off => *tally = Tally::default(),
            // The slots may not exist yet; the tally holds on (it is bounded).
            Metering::Unknown => {}
            Metering::On if tally.is_empty() => {}
            Metering::On => {
                let merged = counters::merge(&self.host, &mut tally);
                if merged.dropped > 0 {
                    self.stats.add(Counter::UsageDropped, merged.dropped);
                }
            }
        }
    }
}
