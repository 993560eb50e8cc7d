//! The sync service: runs once per Envoy process (a singleton `envoy.bootstrap.wasm`
//! service sharing the filter's `vm_id`) and keeps the shared-data store in step with
//! keysync.
//!
//! Changes arrive on a `WatchKeys` stream that the service holds open to keysync: that
//! is how a revocation reaches every worker within a second. A full refresh runs at
//! start, every `refresh_interval` as a safety net that repairs drift, and whenever
//! keysync cannot replay what the stream missed. A broken stream is reopened with
//! backoff and resumes from the revision the store is complete up to.
//!
//! This file holds the service's state and its tick; the refresh half is
//! `service_refresh`, the stream half `service_stream`. The service also starts and
//! ticks usage reports (`usage::flush`) and quota claims (`limits::quota_sync`).

use crate::config::{PluginConfig, SyncConfig};
use crate::host::Host;
use crate::keysync_api::provenance::NEVER;
use crate::limits::local_rate_limit;
use crate::limits::quota_sync::QuotaSync;
use crate::steady_clock::SteadyClock;
use crate::store::key_policy;
use crate::store::key_store::KeyStore;
use crate::sync::full_refresh::Refresh;
use crate::sync::gateway_report::{GatewayIdentity, GatewayReport};
use crate::sync::refresh_schedule::RefreshSchedule;
use crate::sync::served_revision::ServedRevision;
use crate::sync::service_metrics::Metrics;
use crate::sync::sync_lease::{Standing, SyncLease, TAKEOVER_AFTER_MS};
use crate::sync::watch_client::Watch;
use crate::usage::flush::{new_instance_id, UsageFlush};
use crate::usage::metering::Meta;
use keysync_backoff::Backoff;
use log::{info, warn};
use std::time::Duration;

/// How often the service looks at its schedule.
pub const TICK: Duration = Duration::from_millis(250);

/// Shared-data key where the singleton leaves its configuration for a stand-by.
const SYNC_CONFIG_ENTRY: &str = "keysync.sync_config";

/// Ceiling of the stream's reconnect backoff: reopening a stream is cheap, and while it
/// is down changes wait for the next refresh.
const MAX_STREAM_BACKOFF: Duration = Duration::from_secs(5);
/// The stream's first reconnect delay (before jitter). Short: a keysync that stops
/// serving closes its streams, and until Envoy's health check marks it down (about a
/// second) a reconnect may land on it again; each quick retry is a new chance of the
/// healthy one, and revocations wait for the stream.
const FIRST_STREAM_RETRY: Duration = Duration::from_millis(250);

pub struct SyncService<H> {
    pub(super) host: H,
    pub(super) config: SyncConfig,
    /// Whether this VM is the one syncing (see `sync_lease`).
    lease: SyncLease,
    pub(super) active: bool,
    /// The service's time: schedules, timeouts and ages run on it, not on the wall
    /// clock, which may be stepped.
    pub(super) clock: SteadyClock,
    pub(super) schedule: RefreshSchedule,
    pub(super) running: Option<Running>,
    /// A refresh is wanted now (keysync asked for one, or the stream went wrong).
    pub(super) resync_wanted: bool,
    /// The next refresh replaces the store's revision baseline (see `Refresh::new`);
    /// cleared once one has.
    pub(super) reset_wanted: bool,
    /// When (on `clock`) keysync last confirmed, against PostgreSQL, data the store now
    /// holds in full; `None` before the first time.
    confirmed_at: Option<u64>,
    /// Moves on every tick, so workers can tell the service is alive (`StoreMeta`).
    beat: u64,
    /// Every change up to this revision is in the store; `None` before the first refresh.
    pub(super) complete: Option<u64>,
    pub(super) stream: Stream,
    pub(super) stream_backoff: Backoff,
    pub(super) metrics: Metrics,
    /// Usage reports to keysync; `None` while not syncing or with metering off.
    pub(super) usage: Option<UsageFlush>,
    pub(super) quota: Option<QuotaSync>,
    /// Who this gateway is, in its reports to keysync.
    identity: GatewayIdentity,
    /// The revision every worker's admission reflects (see `served_revision`).
    served: ServedRevision,
    /// Reports of `served` to keysync; `None` while not syncing.
    pub(super) report: Option<GatewayReport>,
}

/// A full refresh in progress.
pub(super) struct Running {
    pub(super) refresh: Refresh,
    /// The page request in flight.
    pub(super) token: u32,
    pub(super) sent_at_ms: u64,
    /// When (on the service's clock) keysync had confirmed the first page's data.
    pub(super) first_confirmed_at: Option<u64>,
    /// The stream was up from the start of this refresh to its end: anything the
    /// refresh repairs is drift the stream did not deliver.
    pub(super) stream_up_throughout: bool,
}

/// The `WatchKeys` stream.
pub(super) enum Stream {
    Down {
        retry_at_ms: u64,
    },
    Open {
        token: u32,
        watch: Watch,
        last_message_ms: u64,
        connected: bool,
        /// When the split change set now arriving began; a set that does not finish
        /// within `watch_idle_timeout` is as bad as a silent stream.
        partial_since_ms: Option<u64>,
    },
}

impl<H: Host> SyncService<H> {
    /// The sync service of the singleton bootstrap VM: the designated holder of the
    /// lease. It shares its configuration with the workers, which stand by.
    pub fn singleton(host: H, config: SyncConfig, raw_config: &[u8]) -> Self {
        if let Err(e) = host.set(SYNC_CONFIG_ENTRY, raw_config, 0) {
            warn!("cannot share the sync configuration with the workers: {e:?}");
        }
        SyncService::new(host, config, true)
    }

    /// A worker's stand-by sync service: it syncs only if the singleton's renewals stop
    /// (its VM died), with the singleton's configuration, or the defaults for `cluster`
    /// when there is none.
    pub fn standby(host: H, cluster: &str) -> Option<Self> {
        let shared = host.get(SYNC_CONFIG_ENTRY).value;
        let config = shared
            .and_then(|raw| match PluginConfig::parse(&raw) {
                Ok(PluginConfig::Sync(config)) => Some(config),
                _ => None,
            })
            .or_else(|| SyncConfig::defaults(cluster))?;
        Some(SyncService::new(host, config, false))
    }

    fn new(host: H, config: SyncConfig, designated: bool) -> Self {
        // The clock differs between Envoys started together only by milliseconds, which
        // is all the jitter needs: the seed is scrambled.
        let seed = host.now_unix_ms();
        let lease_id = host.random_u64();
        let schedule =
            RefreshSchedule::new(config.refresh_interval, config.max_retry_interval, seed);
        let stream_backoff = Backoff::new(
            FIRST_STREAM_RETRY,
            config.max_retry_interval.min(MAX_STREAM_BACKOFF),
            seed.rotate_left(17),
        );
        SyncService {
            metrics: Metrics::define(&host),
            host,
            config,
            lease: SyncLease::new(lease_id, designated),
            active: false,
            clock: SteadyClock::default(),
            schedule,
            running: None,
            resync_wanted: false,
            reset_wanted: false,
            confirmed_at: None,
            beat: 0,
            complete: None,
            stream: Stream::Down { retry_at_ms: 0 },
            stream_backoff,
            usage: None,
            quota: None,
            identity: GatewayIdentity::default(),
            served: ServedRevision::default(),
            report: None,
        }
    }

    /// Names the gateway in its reports to keysync (the wasm filter by default).
    pub fn reporting_as(mut self, identity: GatewayIdentity) -> Self {
        self.identity = identity;
        self
    }

    pub(super) fn store(&self) -> KeyStore<&H> {
        KeyStore::new(&self.host)
    }

    /// The service's time now.
    pub(super) fn now(&mut self) -> u64 {
        self.clock.read(self.host.now_unix_ms())
    }

    pub fn on_tick(&mut self) {
        let now = self.now();
        match (self.lease.tick(&self.host, now), self.active) {
            (Standing::Holding, true) => {}
            (Standing::Holding, false) => self.take_over(now),
            (Standing::Standby, true) => return self.stand_down(),
            (Standing::Standby, false) => return,
        }
        self.tick_refresh(now);
        self.tick_stream(now);
        self.beat(now);
        self.report_served(now);
        self.prune_lookups();
        if let Some(usage) = &mut self.usage {
            usage.on_tick(&self.host, &self.config.keysync_cluster, now);
        }
        if let Some(quota) = &mut self.quota {
            let wall = self.host.now_unix_ms();
            quota.on_tick(&self.host, &self.config.keysync_cluster, now, wall);
        }
        // Found while decoding pages and stream messages since the last tick.
        let bad_policies = key_policy::take_defects();
        if bad_policies > 0 {
            self.metrics.bad_policies.add(&self.host, bad_policies);
        }
    }

    /// This VM now syncs: from the store as it is, aged by the silence before.
    fn take_over(&mut self, now: u64) {
        let meta = self.store().meta();
        if meta.beat != 0 {
            warn!(
                "keysync sync service taken over: the previous one stopped renewing its lease \
                 for {}s (its VM died?)",
                TAKEOVER_AFTER_MS / 1000
            );
            if meta.confirmed_age_ms != NEVER {
                let silent = meta.confirmed_age_ms.saturating_add(TAKEOVER_AFTER_MS);
                self.confirmed_at = Some(now.saturating_sub(silent));
            }
            self.beat = meta.beat;
            self.metrics.takeovers.add(&self.host, 1);
        }
        // The rate-limit slots exist before workers count in them (workers never create
        // one: two creating it at once could lose a count).
        if let Err(e) = local_rate_limit::ensure_slots(&self.host) {
            warn!("cannot create the rate-limit counters: {e:?}");
        }
        // Likewise the usage slots; the instance (and its counters) outlives this VM.
        self.usage = UsageFlush::start(
            &self.host,
            self.config.usage_flush_interval,
            self.config.request_timeout,
            now,
            (
                self.metrics.usage_flushes_ok,
                self.metrics.usage_flush_failed,
            ),
        );
        // Quotas are reconciled with the usage flushes: without metering, none.
        self.quota = self.usage.as_ref().and_then(|usage| {
            QuotaSync::start(
                &self.host,
                usage.instance_id(),
                self.config.request_timeout,
                now,
                self.metrics.quota,
            )
        });
        if self.quota.is_none() {
            info!("quotas are not enforced: usage metering is off");
        }
        // The usage instance is the gateway's identity, metering on or off.
        let instance_id = Meta::read(&self.host)
            .map_or_else(|| new_instance_id(&self.host), |meta| meta.instance_id);
        self.report = Some(GatewayReport::new(
            self.identity.clone(),
            instance_id,
            self.config.request_timeout,
        ));
        self.active = true;
    }

    /// Another VM took the lease (this one was too slow to renew it): stop writing.
    fn stand_down(&mut self) {
        warn!("keysync sync service standing down: another VM holds the sync lease now");
        if let Some(running) = self.running.take() {
            self.host.cancel_grpc(running.token);
        }
        if let Stream::Open { token, .. } = self.stream {
            self.host.cancel_grpc_stream(token);
        }
        self.stream = Stream::Down { retry_at_ms: 0 };
        if let Some(mut usage) = self.usage.take() {
            usage.stop(&self.host);
        }
        if let Some(mut quota) = self.quota.take() {
            quota.stop(&self.host);
        }
        if let Some(mut report) = self.report.take() {
            report.stop(&self.host);
        }
        self.served.clear();
        self.complete = None;
        self.confirmed_at = None;
        self.active = false;
    }

    /// Tells the workers how old the store's data is, and that this service lives.
    fn beat(&mut self, now: u64) {
        let age = self.confirmed_at.map_or(NEVER, |at| now.saturating_sub(at));
        self.beat = self.beat.wrapping_add(1);
        let store = self.store();
        let mut meta = store.meta();
        meta.confirmed_age_ms = age;
        meta.beat = self.beat;
        if let Err(e) = store.write_meta(&meta) {
            warn!("cannot write the store metadata: {e}");
        }
        let seconds = if age == NEVER { 0 } else { age / 1000 };
        self.metrics.seconds_since_sync.record(&self.host, seconds);
    }

    /// Samples what the store is complete up to, and reports the revision every worker
    /// serves (see `served_revision`) to keysync.
    fn report_served(&mut self, now: u64) {
        let epoch = self.store().meta().epoch;
        self.served.sample(epoch, self.complete, now);
        if let Some(report) = &mut self.report {
            let served = self.served.served();
            report.on_tick(&self.host, &self.config.keysync_cluster, now, served);
        }
    }

    /// Forgets the miss path's lookups that the store now holds by its own sync (the
    /// store is complete past their revision): the ledger only matters until then.
    fn prune_lookups(&self) {
        let Some(complete) = self.complete else {
            return;
        };
        let store = self.store();
        if let Err(e) = store.prune_lookups(store.meta().epoch, Some(complete)) {
            warn!("cannot prune the lookup ledger: {e}");
        }
    }

    /// keysync confirmed, `age_ms` before `now`, data the store now holds in full.
    pub(super) fn confirmed(&mut self, now: u64, age_ms: u64) {
        if age_ms == NEVER {
            return;
        }
        let at = now.saturating_sub(age_ms);
        self.confirmed_at = Some(self.confirmed_at.map_or(at, |c| c.max(at)));
        // Workers see it now, not at the next tick: a request right after the first
        // sync must not find the store unconfirmed.
        self.beat(now);
    }

    /// Whether the store holds a complete sync ([`StoreMeta::synced`]): the gateway's
    /// readiness. A native host holds Envoy's init (no traffic) until it does.
    ///
    /// [`StoreMeta::synced`]: crate::store::store_meta::StoreMeta
    pub fn store_synced(&self) -> bool {
        self.store().meta().synced
    }

    pub(super) fn resync_pending(&self) -> bool {
        self.resync_wanted
            || self
                .running
                .as_ref()
                .is_some_and(|r| !r.stream_up_throughout)
    }

    pub(super) fn stream_connected(&self) -> bool {
        matches!(
            self.stream,
            Stream::Open {
                connected: true,
                ..
            }
        )
    }
}
