//! The miss path: a well-formed key the store lacks is asked of keysync (`LookupKey`),
//! within a bound of lookups in flight per worker. keysync's answer admits the key only
//! when it is at least as new as the store and fresh; a found key is cached in the
//! store for every worker (and noted in the lookup ledger, so that a refresh from older
//! pages keeps it and a stalled keysync does not turn it into 503s: `lookup_ledger`),
//! an unknown one in the worker's negative cache. When keysync cannot be asked or gives
//! no usable answer, the store decides alone.

use crate::auth::decision::{self, Denial, Verdict};
use crate::auth::worker::AuthWorker;
use crate::host::Host;
use crate::keysync_api::provenance::Provenance;
use crate::keysync_api::{self, ApiError, Reply};
use crate::stats::Counter;
use crate::steady_clock::millis;
use crate::store::key_record::KeyRecord;
use crate::store::key_store::{Cached, Change};
use crate::store::lookup_ledger::Lookup;
use crate::store::store_meta::StoreMeta;
use keysync_contract::key_hash::KeyHash;
use keysync_proto::v1 as proto;
use log::{info, warn};

impl<H: Host> AuthWorker<H> {
    pub fn may_start_lookup(&self) -> bool {
        self.config.miss_lookup.enabled
            && self.lookups_in_flight.get() < self.config.miss_lookup.max_in_flight
    }

    /// Asks keysync for `hash`; returns the call's token (one more lookup in flight
    /// until [`AuthWorker::lookup_ended`]).
    pub fn start_lookup(&self, hash: &KeyHash) -> Result<u32, ApiError> {
        let request = proto::LookupKeyRequest {
            key_hash: hash.0.to_vec(),
        };
        info!(
            "cache miss: key_hash={} not in store, asking keysync",
            hash.short()
        );
        self.stats.bump(Counter::MissLookups);
        let token = keysync_api::dispatch(
            &self.host,
            &self.config.keysync_cluster,
            keysync_api::LOOKUP_KEY,
            &request,
            self.config.miss_lookup.timeout,
        )?;
        let in_flight = &self.lookups_in_flight;
        in_flight.set(in_flight.get().saturating_add(1));
        Ok(token)
    }

    /// A lookup answered, or its request gone.
    pub fn lookup_ended(&self) {
        let in_flight = &self.lookups_in_flight;
        in_flight.set(in_flight.get().saturating_sub(1));
    }

    /// The verdict on `hash` from what Envoy delivered for its lookup.
    pub fn judge_lookup_reply(&self, hash: &KeyHash, reply: Reply) -> Verdict {
        match keysync_api::decode::<proto::LookupKeyResponse>(reply) {
            Ok(answer) => self.judge_answer(hash, answer),
            Err(e) => self.lookup_failed_verdict(hash, &e),
        }
    }

    fn judge_answer(&self, hash: &KeyHash, answer: proto::LookupKeyResponse) -> Verdict {
        let provenance = Provenance::from_proto(answer.provenance.as_ref());
        let stale = self.stale.get();
        let meta = self.store().meta();
        let max_age = self.config.max_staleness.map(millis);
        if !decision::answer_trusted(provenance, answer.revision, &meta, stale, max_age) {
            info!(
                "cache miss: keysync's answer for key_hash={} is older than the store or \
                 unconfirmed (revision {}, confirmed {} ms ago); the store decides",
                hash.short(),
                answer.revision,
                provenance.confirmed_age_ms
            );
            self.stats.bump(Counter::StaleAnswers);
            return self.judge_from_store(hash, stale);
        }
        let Some(found) = answer.key else {
            info!("cache miss: key_hash={} unknown to keysync", hash.short());
            if stale {
                // A record the miss path cached before (in a store not trusted yet) must
                // not vouch for the key if keysync stalls next: it is revoked.
                if let Err(e) = self.store().forget_lookup(hash) {
                    warn!("cannot forget the lookup of key_hash={}: {e}", hash.short());
                }
            }
            self.withdraw_refused(hash, answer.revision, provenance, &meta);
            if let Ok(mut cache) = self.negative.try_borrow_mut() {
                cache.insert(*hash, self.host.now_unix_ms());
            }
            return Verdict::Deny(Denial::InvalidKey);
        };
        match KeyRecord::from_proto(&found) {
            Ok(record) if record.hash == *hash => {
                // Only into a store of the same revision history: a fresh answer makes a
                // stale store no worse, and the revision rule of `cache_lookup` still holds.
                let outcome = if meta.epoch == 0 || provenance.epoch == meta.epoch {
                    self.note_lookup(&record, answer.revision, provenance, meta.revision);
                    match self.store().cache_lookup(&record, answer.revision) {
                        Cached::Stored | Cached::AlreadyThere => "cached",
                        Cached::Stale => "not cached: the store is newer",
                        Cached::Failed(_) => "not cached: store busy",
                    }
                } else {
                    "not cached: the store is of another revision history"
                };
                info!(
                    "cache miss: key_hash={} found by keysync ({outcome})",
                    hash.short()
                );
                self.judge_record(record)
            }
            Ok(_) => {
                self.lookup_failed_verdict(hash, &ApiError::Decode("answer for another key".into()))
            }
            Err(e) => self.lookup_failed_verdict(hash, &ApiError::Decode(e.to_string())),
        }
    }

    /// keysync does not know a key the store may still hold (revoked while keysync's
    /// stream was down and the store stale, or cached meanwhile by another worker from an
    /// older answer): its record leaves the store now, with the refusal, rather than when
    /// the stream brings the change. So the store cannot admit the key again (once trusted
    /// again, whichever of keysync's stream and confirmation reaches it first), and every
    /// worker drops its copy of the record at its next tick (the store's generation
    /// moved). Only on an answer of the store's revision history, at or after its
    /// revision: a keysync behind the store may not know a key created since, and one of
    /// another history is settled by the resync. Costs a bucket read; a write only if the
    /// bucket holds the key.
    fn withdraw_refused(
        &self,
        hash: &KeyHash,
        revision: u64,
        provenance: Provenance,
        meta: &StoreMeta,
    ) {
        let current = meta.epoch == 0 || provenance.epoch == meta.epoch;
        if !current || revision < meta.revision {
            return;
        }
        if let Err(e) = self.store().apply_changes(&[Change::Remove(*hash)]) {
            warn!(
                "cannot take key_hash={} out of the store: {e}",
                hash.short()
            );
        }
    }

    /// Notes a trusted answer in the lookup ledger before it is cached, so that the
    /// sync service, seeing the record in a bucket, can tell it from a leftover. An
    /// answer older than the store is not cached, so not noted either.
    fn note_lookup(&self, record: &KeyRecord, revision: u64, provenance: Provenance, store: u64) {
        if revision < store {
            return;
        }
        let lookup = Lookup {
            hash: record.hash,
            epoch: provenance.epoch,
            revision,
            confirmed_at_ms: self
                .host
                .now_unix_ms()
                .saturating_sub(provenance.confirmed_age_ms),
        };
        if let Err(e) = self.store().note_lookup(lookup) {
            warn!(
                "cannot note the lookup of key_hash={}: {e}",
                record.hash.short()
            );
        }
    }

    /// An answer that cannot be trusted: a trusted store's own record, if it has one by
    /// now, else what the store alone can say.
    fn judge_from_store(&self, hash: &KeyHash, stale: bool) -> Verdict {
        if stale {
            return self.judge_stale(hash);
        }
        match self.store().find(hash) {
            Ok(Some(record)) => self.judge_record(record),
            _ => Verdict::Deny(decision::judge_from_store_alone(self.store().meta().synced)),
        }
    }

    /// keysync could not be asked, or gave no usable answer: the store decides alone.
    pub fn lookup_failed_verdict(&self, hash: &KeyHash, error: &ApiError) -> Verdict {
        self.stats.bump(Counter::MissLookupErrors);
        warn!(
            "cache miss: lookup of key_hash={} failed: {error}",
            hash.short()
        );
        if self.stale.get() {
            return self.judge_stale(hash);
        }
        Verdict::Deny(decision::judge_from_store_alone(self.store().meta().synced))
    }
}
