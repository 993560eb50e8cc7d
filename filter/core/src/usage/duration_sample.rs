//! Which forwarded requests usage metering times. Timing a request takes two clock
//! reads, host calls that are most of metering's cost, so under load only a sample is
//! timed: each key's first [`PER_TICK`] requests in every worker tick (250 ms). A key
//! that sends a worker up to 16 requests a second has every one timed; a busier key, a
//! steady sample. The duration buckets count the timed requests, so a mean (the sum over
//! the buckets' total) and the buckets' shares stay right.

use std::cell::Cell;

/// Requests of one key timed per worker tick: 16 a second per worker.
pub const PER_TICK: u16 = 4;

/// One key's timed requests in the current tick, kept with the worker's copy of its
/// record (no lookup of its own).
#[derive(Default, Debug)]
pub struct DurationSample {
    tick: Cell<u32>,
    timed: Cell<u16>,
}

impl DurationSample {
    /// Whether to time a request of this key admitted in the worker's tick `tick`.
    pub fn take(&self, tick: u32) -> bool {
        if self.tick.get() != tick {
            self.tick.set(tick);
            self.timed.set(0);
        }
        let timed = self.timed.get();
        if timed >= PER_TICK {
            return false;
        }
        self.timed.set(timed + 1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_a_keys_first_requests_of_each_tick() {
        let sample = DurationSample::default();
        let first_tick: Vec<bool> = (0..6).map(|_| sample.take(7)).collect();
        assert_eq!(first_tick, [true, true, true, true, false, false]);
        assert!(sample.take(8), "a new tick times again");
        assert_eq!((0..5).filter(|_| sample.take(8)).count(), 3);
        // Any other tick number starts over, even an earlier one (the counter wraps).
        assert!(sample.take(0));
    }
}
