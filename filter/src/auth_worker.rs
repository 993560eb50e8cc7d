//! What the auth filter keeps per Envoy worker: its configuration, the host, batched
//! stats, the negative cache, the count of lookups in flight, its rate-limit leases and
//! its copies of recently used records. The worker's tick keeps them honest.

use crate::config::AuthConfig;
use crate::host::Host;
use crate::key_store::KeyStore;
use crate::local_rate_limit::{self, Leases};
use crate::negative_cache::NegativeCache;
use crate::record_cache::RecordCache;
use crate::stats::RequestStats;
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
    /// Set on the tick when keysync has been silent past `max_staleness`; read per
    /// request at no host-call cost.
    pub stale: Cell<bool>,
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
        AuthWorker {
            stats: RequestStats::define(&host),
            host,
            config,
            negative: RefCell::new(negative),
            lookups_in_flight: Cell::new(0),
            stale: Cell::new(false),
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

    /// Is the store too stale to trust? Never synced counts as stale.
    fn check_staleness(&self) {
        let Some(max) = self.config.max_staleness else {
            return;
        };
        let silent = self.store().meta().silent_for(self.host.now_unix_secs());
        let stale = silent.is_none_or(|secs| secs > max.as_secs());
        if stale != self.stale.get() {
            if stale {
                warn!(
                    "no word from keysync for over {}s (max_staleness): requests with keys get 503",
                    max.as_secs()
                );
            } else {
                info!("keysync heard from again: serving keys from the store");
            }
            self.stale.set(stale);
        }
    }

    pub fn may_start_lookup(&self) -> bool {
        self.config.miss_lookup.enabled
            && self.lookups_in_flight.get() < self.config.miss_lookup.max_in_flight
    }
}
