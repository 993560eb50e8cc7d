//! What the auth filter keeps per Envoy worker: its configuration, the store handle,
//! batched stats, the negative cache and the count of lookups in flight.

use crate::config::AuthConfig;
use crate::key_store::KeyStore;
use crate::negative_cache::NegativeCache;
use crate::shared_data::HostSharedData;
use crate::stats::RequestStats;
use std::cell::{Cell, RefCell};

pub struct AuthWorker {
    pub config: AuthConfig,
    pub store: KeyStore<HostSharedData>,
    pub stats: RequestStats,
    pub negative: RefCell<NegativeCache>,
    pub lookups_in_flight: Cell<u32>,
}

impl AuthWorker {
    pub fn new(config: AuthConfig) -> Self {
        let negative = NegativeCache::new(
            config.miss_lookup.negative_cache_entries,
            u64::try_from(config.miss_lookup.negative_ttl.as_millis()).unwrap_or(u64::MAX),
        );
        AuthWorker {
            config,
            store: KeyStore::new(HostSharedData),
            stats: RequestStats::define(),
            negative: RefCell::new(negative),
            lookups_in_flight: Cell::new(0),
        }
    }

    pub fn may_start_lookup(&self) -> bool {
        self.config.miss_lookup.enabled
            && self.lookups_in_flight.get() < self.config.miss_lookup.max_in_flight
    }
}
