//! Whether a worker trusts the store: not when its data was last confirmed against
//! PostgreSQL longer ago than `max_staleness` (or never). A stale store cannot vouch
//! for a key; keysync's fresh answers still can, and so can one it gave recently: a
//! record the miss path cached, within `max_staleness` of keysync's confirmation
//! (`lookup_ledger`), when keysync cannot answer now.

use crate::auth::decision::{Denial, Verdict};
use crate::auth::worker::AuthWorker;
use crate::host::Host;
use crate::keysync_api::provenance::NEVER;
use crate::stats::Counter;
use crate::steady_clock::millis;
use keysync_contract::key_hash::KeyHash;
use log::{info, warn};

impl<H: Host> AuthWorker<H> {
    /// Whether the store is too stale to trust, looking again if it was: a store that
    /// was stale at the last tick may have been confirmed since (the first sync after
    /// start, keysync back), and a request should not wait for the next tick to see it.
    /// Costs a shared-data read only while stale.
    pub fn store_is_stale(&self) -> bool {
        if self.stale.get() {
            self.check_staleness();
        }
        self.stale.get()
    }

    /// Is the store too stale to trust? Never confirmed counts as stale.
    pub(super) fn check_staleness(&self) {
        let Some(max) = self.config.max_staleness else {
            return;
        };
        let meta = self.store().meta();
        let Ok(mut store_age) = self.store_age.try_borrow_mut() else {
            return;
        };
        let age = store_age.age_ms(&meta, self.host.now_unix_ms());
        let stale = age > millis(max);
        if stale != self.stale.get() {
            if stale && age == NEVER {
                info!("the store has not been synced yet: keys are asked of keysync");
            } else if stale {
                warn!(
                    "the store was last confirmed against PostgreSQL {}s ago, over max_staleness \
                     ({}s): it is not trusted; keys are asked of keysync, or get 503",
                    age / 1000,
                    max.as_secs()
                );
            } else {
                info!(
                    "the store is confirmed again ({}s ago): serving keys from it",
                    age / 1000
                );
            }
            self.stale.set(stale);
            // Copies of records made before the store went stale must not outlive it:
            // while stale, keysync's word decided, and it may have refused a key this
            // worker still holds a copy of.
            if let Ok(mut records) = self.records.try_borrow_mut() {
                records.clear();
            }
        }
    }
}

impl<H: Host> AuthWorker<H> {
    /// The verdict on `hash` from a stale store while keysync cannot answer: the record
    /// the miss path cached for it, if keysync confirmed that within `max_staleness`;
    /// otherwise nobody can tell (503).
    pub(super) fn judge_stale(&self, hash: &KeyHash) -> Verdict {
        let now = self.host.now_unix_ms();
        let vouched = self.config.max_staleness.and_then(|max| {
            let lookups = self.store().lookups();
            let lookup = lookups.find(hash)?;
            if !lookup.vouches_at(now, millis(max)) {
                return None;
            }
            self.store().find(hash).ok().flatten()
        });
        match vouched {
            Some(record) => {
                self.stats.bump(Counter::LookupVouched);
                self.judge_record(record)
            }
            None => {
                self.stats.bump(Counter::Stale);
                Verdict::Deny(Denial::Unavailable)
            }
        }
    }
}
