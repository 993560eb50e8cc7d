//! What the auth filter keeps per Envoy worker: its configuration, the host, batched
//! stats, the negative cache, the count of lookups in flight, its rate-limit leases, the
//! requests it parked, its copies of recently used records and its usage tally. Its
//! tick (every [`WORKER_TICK`]) keeps them honest.
//!
//! What the worker does is spread by concept: admission (`admission_step`), parked
//! requests (`parked_requests`), replies and forwarding (`replies`), judging keys
//! (`key_judgement`, `lookup`), trusting the store (`store_trust`) and metering
//! (`worker_metering`).

use crate::auth::admission::Parked;
use crate::auth::negative_cache::NegativeCache;
use crate::auth::record_cache::RecordCache;
use crate::config::AuthConfig;
use crate::host::Host;
use crate::limits::local_rate_limit::{self, Leases};
use crate::limits::quota::QuotaView;
use crate::readiness::Readiness;
use crate::stats::{Counter, RequestStats};
use crate::store::key_policy;
use crate::store::key_store::KeyStore;
use crate::store::store_age::StoreAge;
use crate::usage::counters::Tally;
use crate::usage::metering::Metering;
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// How often each worker flushes its request counters to Envoy's stats, gives back
/// unused rate-limit leases, decides parked requests, drops stale record copies and
/// checks staleness.
pub const WORKER_TICK: Duration = Duration::from_millis(250);

/// Records each worker keeps (about 100 bytes each).
const RECORD_CACHE_ENTRIES: usize = 10_000;

pub struct AuthWorker<H: Host> {
    pub host: H,
    pub config: AuthConfig,
    pub(super) stats: RequestStats,
    pub(super) negative: RefCell<NegativeCache>,
    pub(super) lookups_in_flight: Cell<u32>,
    /// Set on the tick when the store's data was last confirmed against PostgreSQL
    /// longer ago than `max_staleness` (or never); read per request at no host-call
    /// cost. A stale store is not trusted: keys are then asked of keysync, whose answers
    /// carry their own age.
    pub(super) stale: Cell<bool>,
    pub(super) store_age: RefCell<StoreAge>,
    /// Whether the store held a complete sync when last looked at (`ready_paths`).
    pub(super) readiness: Readiness,
    /// Local rate limiting: requests this worker took from shared counters, not used yet.
    pub(super) leases: RefCell<Leases>,
    /// Requests waiting for a tick to admit them (see `parked_requests`).
    pub(super) parked: RefCell<Vec<Parked<H::Request>>>,
    pub(super) records: RefCell<RecordCache>,
    /// Usage counted since the last tick (see `usage::counters`): in memory, no host call.
    pub(super) usage: RefCell<Tally>,
    pub(super) metering: Cell<Metering>,
    /// Ticks so far (wrapping): the period of `duration_sample`.
    pub(super) ticks: Cell<u32>,
    /// The subjects with a monthly quota (see `limits::quota`), re-read when their list
    /// changes.
    pub(super) quotas: RefCell<QuotaView>,
}

impl<H: Host> AuthWorker<H> {
    pub fn new(host: H, config: AuthConfig) -> Self {
        let negative = NegativeCache::new(
            config.miss_lookup.negative_cache_entries,
            u64::try_from(config.miss_lookup.negative_ttl.as_millis()).unwrap_or(u64::MAX),
        );
        // Until the first tick has looked, nothing is trusted.
        let stale = config.max_staleness.is_some();
        let tally = Tally::new(config.usage_max_endpoints);
        AuthWorker {
            stats: RequestStats::define(&host),
            host,
            config,
            negative: RefCell::new(negative),
            lookups_in_flight: Cell::new(0),
            stale: Cell::new(stale),
            store_age: RefCell::new(StoreAge::default()),
            readiness: Readiness::default(),
            leases: RefCell::new(Leases::default()),
            parked: RefCell::new(Vec::new()),
            records: RefCell::new(RecordCache::new(RECORD_CACHE_ENTRIES)),
            usage: RefCell::new(tally),
            metering: Cell::new(Metering::Unknown),
            ticks: Cell::new(0),
            quotas: RefCell::new(QuotaView::default()),
        }
    }

    /// The shared key store, read through this worker's host.
    pub fn store(&self) -> KeyStore<&H> {
        KeyStore::new(&self.host)
    }

    pub fn on_tick(&self) {
        self.ticks.set(self.ticks.get().wrapping_add(1));
        self.give_back_leases();
        self.decide_parked();
        self.merge_usage();
        if let Ok(mut quotas) = self.quotas.try_borrow_mut() {
            quotas.refresh(&self.host);
        }
        self.stats
            .add(Counter::BadPolicies, key_policy::take_defects());
        self.stats.flush(&self.host);
        self.sync_record_cache();
        self.check_staleness();
        if !self.readiness.seen_ready() {
            self.readiness.is_ready(&self.store());
        }
    }

    /// What a worker's finished requests owe, without the reads a tick makes (the store's
    /// generation and metadata, quotas, parked requests): their unused rate-limit leases
    /// given back, their usage merged into the shared counters and their stats flushed. A
    /// host whose ticks ride on requests (a native module's) settles each time its worker
    /// goes idle, which under load is every turn of Envoy's event loop, and ticks in full
    /// only when a tick is due.
    pub fn settle(&self) {
        self.give_back_leases();
        self.merge_usage();
        self.stats.flush(&self.host);
    }

    /// Whether requests are parked, waiting for a tick (see `parked_requests`). A host
    /// whose ticks are not timers of their own (a native module's ride on requests) asks,
    /// to know when a tick is owed to one that waits.
    pub fn has_parked(&self) -> bool {
        self.parked
            .try_borrow()
            .map_or(true, |parked| !parked.is_empty())
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
}
