//! Judging a well-formed key from what this Envoy knows: the worker's copy of its record,
//! else the store, else (for a key the store lacks) the negative cache and whether
//! keysync may be asked. The facts come through the host; the verdicts are `decision`'s.

use crate::auth::decision::{self, Verdict};
use crate::auth::record_cache::CachedRecord;
use crate::auth::worker::AuthWorker;
use crate::host::Host;
use crate::stats::Counter;
use crate::store::key_record::KeyRecord;
use keysync_contract::key_hash::KeyHash;
use log::warn;
use std::rc::Rc;

impl<H: Host> AuthWorker<H> {
    /// The verdict on `hash` from the store, with the record it was judged on (and its
    /// identity headers formatted) when there was one.
    pub fn judge_stored(&self, hash: &KeyHash) -> (Verdict, Option<Rc<CachedRecord>>) {
        if self.store_is_stale() {
            // The store is not trusted: only keysync's (fresh) word can admit a key.
            if self.may_start_lookup() {
                return (Verdict::AskKeysync, None);
            }
            return (self.judge_stale(hash), None);
        }
        let cached = self
            .records
            .try_borrow()
            .ok()
            .and_then(|records| records.get(hash));
        if let Some(cached) = cached {
            let verdict = self.judge_record(cached.record.clone());
            return (verdict, Some(cached));
        }
        match self.store().find(hash) {
            Ok(Some(record)) => {
                let cached = Rc::new(CachedRecord::new(record));
                if let Ok(mut records) = self.records.try_borrow_mut() {
                    records.insert(Rc::clone(&cached));
                }
                let verdict = self.judge_record(cached.record.clone());
                (verdict, Some(cached))
            }
            Ok(None) => (self.judge_unknown(hash), None),
            Err(e) => {
                warn!("unreadable bucket for key_hash={}: {e}", hash.short());
                (self.judge_unknown(hash), None)
            }
        }
    }

    /// Expiry needs the clock, a host call: only keys that expire pay for it.
    pub fn judge_record(&self, record: KeyRecord) -> Verdict {
        let now = if record.expires_at == 0 {
            0
        } else {
            i64::try_from(self.host.now_unix_secs()).unwrap_or(i64::MAX)
        };
        decision::judge_record(record, now)
    }

    /// A key the store does not hold.
    fn judge_unknown(&self, hash: &KeyHash) -> Verdict {
        let refused = self
            .negative
            .try_borrow()
            .is_ok_and(|cache| cache.contains(hash, self.host.now_unix_ms()));
        if refused {
            self.stats.bump(Counter::NegativeCacheHits);
        }
        let may_ask = self.may_start_lookup();
        // The metadata read is only needed when neither of the above settles it.
        let synced = refused || may_ask || self.store().meta().synced;
        decision::judge_unknown(refused, may_ask, synced)
    }
}
