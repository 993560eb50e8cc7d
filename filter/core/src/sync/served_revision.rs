//! The store revision this gateway serves: one that every worker's admission already
//! reflects, not merely one the store holds.
//!
//! Workers keep copies of the records they served (`auth::record_cache`) and drop them
//! on their tick (every `WORKER_TICK`, 250 ms) when the store moved. So a change the
//! store holds can still be missed by a worker until its next tick. Rather than have
//! every worker acknowledge (workers do not know each other, and a shared entry of
//! acknowledgements would need a host call per worker tick and a way to forget dead
//! workers), the service counts time: the store's complete revision is sampled on each
//! of its ticks, and a sample counts as served once [`SERVE_DELAY_MS`] has passed since
//! — a full worker tick plus one more for timer jitter. The sample is taken after the
//! change was written, so the delay is measured from a moment no earlier than the write.
//! A native worker ticks at the start of a request when a tick is due, so the bound
//! holds there too.

use std::collections::VecDeque;

use crate::auth::worker::WORKER_TICK;

/// How long after the store is complete up to a revision the gateway reports serving
/// it: two worker ticks (one to drop every cached record, one of margin).
pub const SERVE_DELAY_MS: u64 = 500;
const _: () = assert!(SERVE_DELAY_MS as u128 == 2 * WORKER_TICK.as_millis());

/// Samples waiting out the delay: one per service tick at most, so a few.
const MAX_PENDING: usize = 16;

#[derive(Debug, Default)]
pub struct ServedRevision {
    /// The epoch the samples count in.
    epoch: u64,
    /// (revision, when it was sampled), oldest first, revisions increasing.
    pending: VecDeque<(u64, u64)>,
    served: Option<u64>,
}

impl ServedRevision {
    /// One service tick: the store is complete up to `complete` (in `epoch`) at `now`.
    pub fn sample(&mut self, epoch: u64, complete: Option<u64>, now: u64) {
        if epoch != self.epoch {
            // Revisions of another history say nothing about this one.
            *self = ServedRevision {
                epoch,
                ..ServedRevision::default()
            };
        }
        if let Some(revision) = complete {
            let newest = self.pending.back().map(|&(r, _)| r).or(self.served);
            match newest {
                Some(newest) if revision < newest => {
                    // A new baseline below what was seen (a reset refresh): start over.
                    self.pending.clear();
                    self.served = None;
                    self.pending.push_back((revision, now));
                }
                Some(newest) if revision == newest => {}
                _ => {
                    if self.pending.len() >= MAX_PENDING {
                        // Replace the newest: it only waits longer, never shorter.
                        self.pending.pop_back();
                    }
                    self.pending.push_back((revision, now));
                }
            }
        }
        while let Some(&(revision, at)) = self.pending.front() {
            if now.saturating_sub(at) < SERVE_DELAY_MS {
                break;
            }
            self.served = Some(revision);
            self.pending.pop_front();
        }
    }

    /// The epoch and revision every worker serves; `None` before the first.
    pub fn served(&self) -> Option<(u64, u64)> {
        self.served.map(|revision| (self.epoch, revision))
    }

    /// Forgets everything: this VM stopped syncing.
    pub fn clear(&mut self) {
        *self = ServedRevision::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: u64 = 7;

    #[test]
    fn a_revision_is_served_only_two_worker_ticks_after_the_store_reached_it() {
        let mut served = ServedRevision::default();
        served.sample(EPOCH, Some(5), 1_000);
        assert_eq!(served.served(), None);
        served.sample(EPOCH, Some(6), 1_250);
        served.sample(EPOCH, Some(6), 1_499);
        assert_eq!(served.served(), None, "not one tick after");
        served.sample(EPOCH, Some(6), 1_500);
        assert_eq!(served.served(), Some((EPOCH, 5)));
        served.sample(EPOCH, Some(6), 1_749);
        assert_eq!(served.served(), Some((EPOCH, 5)));
        served.sample(EPOCH, Some(6), 1_750);
        assert_eq!(served.served(), Some((EPOCH, 6)));
    }

    #[test]
    fn steady_changes_still_move_the_served_revision() {
        let mut served = ServedRevision::default();
        for tick in 0..40u64 {
            served.sample(EPOCH, Some(tick + 1), tick * 250);
        }
        // At 9,750 ms: what the store held at 9,250 ms (revision 38).
        assert_eq!(served.served(), Some((EPOCH, 38)));
    }

    #[test]
    fn a_new_epoch_or_a_lower_baseline_starts_over() {
        let mut served = ServedRevision::default();
        served.sample(EPOCH, Some(9), 0);
        served.sample(EPOCH, Some(9), 500);
        assert_eq!(served.served(), Some((EPOCH, 9)));
        served.sample(EPOCH + 1, Some(3), 600);
        assert_eq!(served.served(), None);
        served.sample(EPOCH + 1, Some(3), 1_100);
        assert_eq!(served.served(), Some((EPOCH + 1, 3)));
        served.sample(EPOCH + 1, Some(2), 1_200);
        assert_eq!(served.served(), None, "a reset refresh below it");
        served.sample(EPOCH + 1, None, 1_700);
        assert_eq!(served.served(), Some((EPOCH + 1, 2)));
    }

    #[test]
    fn pending_samples_stay_bounded_and_never_shorten_a_wait() {
        let mut served = ServedRevision::default();
        for n in 0..100u64 {
            served.sample(EPOCH, Some(n + 1), n);
        }
        assert!(served.pending.len() <= MAX_PENDING);
        served.sample(EPOCH, Some(100), 99 + SERVE_DELAY_MS - 1);
        assert!(served.served().is_some_and(|(_, r)| r < 100));
        served.sample(EPOCH, Some(100), 99 + SERVE_DELAY_MS);
        assert_eq!(served.served(), Some((EPOCH, 100)));
    }
}
