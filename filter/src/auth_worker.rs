//! What the auth filter keeps per Envoy worker: its configuration, the host, batched
//! stats, the negative cache, the count of lookups in flight, its rate-limit leases and
//! its copies of recently used records. The worker's tick keeps them honest.

use crate::config::AuthConfig;
use crate::host::Host;
use crate::key_store::KeyStore;
use crate::local_rate_limit::{self, Leases};
use crate::negative_cache::NegativeCache;
use crate::record_cache::RecordCache;
use crate::schedule::millis;
use crate::staleness::StoreAge;
use crate::stats::RequestStats;
use crate::store_meta::NEVER;
use log::{info, warn};
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// How often each worker flushes its request counters to Envoy's stats, gives back
/// unused rate-limit leases, drops stale record copies and checks staleness.
pub const WORKER_TICK: Duration = Duration::from_millis(250);

/// Records each worker keeps (about 100 bytes each).
const RECORD_CACHE_ENTRIES: usize = 10_000;

pub struct AuthWorker<H> {
    pub host: H,
    pub config: AuthConfig,
    pub stats: RequestStats,
    pub negative: RefCell<NegativeCache>,
    pub lookups_in_flight: Cell<u32>,
    /// Set on the tick when the store's data was last confirmed against PostgreSQL
    /// longer ago than `max_staleness` (or never); read per request at no host-call
    /// cost. A stale store is not trusted: keys are then asked of keysync, whose answers
    /// carry their own age.
    pub stale: Cell<bool>,
    store_age: RefCell<StoreAge>,
    /// Local rate limiting: requests this worker took from shared counters, not used yet.
    pub leases: RefCell<Leases>,
    pub records: RefCell<RecordCache>,
}

impl<H: Host> AuthWorker<H> {
    pub fn new(host: H, config: AuthConfig) -> Self {
        let negative = NegativeCache::new(
            config.miss_lookup.negative_cache_entries,
            u64::try_from(config.miss_lookup.negative_ttl.as_millis()).unwrap_or(u64::MAX),
        );
        // Until the first tick has looked, nothing is trusted.
        let stale = config.max_staleness.is_some();
        AuthWorker {
            stats: RequestStats::define(&host),
            host,
            config,
            negative: RefCell::new(negative),
            lookups_in_flight: Cell::new(0),
            stale: Cell::new(stale),
            store_age: RefCell::new(StoreAge::default()),
            leases: RefCell::new(Leases::default()),
            records: RefCell::new(RecordCache::new(RECORD_CACHE_ENTRIES)),
        }
    }

    /// The shared key store, read through this worker's host.
    pub fn store(&self) -> KeyStore<&H> {
        KeyStore::new(&self.host)
    }

    pub fn on_tick(&self) {
        self.stats.flush(&self.host);
        self.give_back_leases();
        self.sync_record_cache();
        self.check_staleness();
    }

    /// Drops the worker's record copies if the store moved since they were made.
    fn sync_record_cache(&self) {
        let generation = self.store().generation();
        if let Ok(mut records) = self.records.try_borrow_mut() {
            records.sync_with(generation);
        }
    }

    /// Unused rate-limit leases go back to the shared counters.
    fn give_back_leases(&self) {
        if let Ok(mut leases) = self.leases.try_borrow_mut() {
            local_rate_limit::give_back(&self.host, &mut leases, self.host.now_unix_secs());
        }
    }

    /// Is the store too stale to trust? Never confirmed counts as stale.
    fn check_staleness(&self) {
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
        }
    }

    pub fn may_start_lookup(&self) -> bool {
        self.config.miss_lookup.enabled
            && self.lookups_in_flight.get() < self.config.miss_lookup.max_in_flight
    }
}
