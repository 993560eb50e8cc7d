//! The sync service: runs once per Envoy process (a singleton `envoy.bootstrap.wasm`
//! service sharing the filter's `vm_id`) and keeps the shared-data store in step with
//! keysync.
//!
//! Changes arrive on a `WatchKeys` stream that the service holds open to keysync: that
//! is how a revocation reaches every worker within a second. A full refresh runs at
//! start, every `refresh_interval` as a safety net that repairs drift, and whenever
//! keysync cannot replay what the stream missed. A broken stream is reopened with
//! backoff and resumes from the revision the store is complete up to.

use crate::config::{PluginConfig, SyncConfig};
use crate::full_refresh::{Page, Progress, Refresh, Summary};
use crate::host::{Host, MetricKind};
use crate::key_store::{Change, KeyStore};
use crate::keysync_api::{self, Reply};
use crate::local_rate_limit;
use crate::provenance::Provenance;
use crate::quota_sync::{QuotaStats, QuotaSync};
use crate::schedule::{millis, Schedule};
use crate::staleness::SteadyClock;
use crate::stats::{self, Stat};
use crate::store_meta::NEVER;
use crate::sync_lease::{Standing, SyncLease, TAKEOVER_AFTER_MS};
use crate::usage_flush::UsageFlush;
use crate::watch_client::{Step, Watch};
use keysync_backoff::Backoff;
use keysync_proto::v1 as proto;
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
    host: H,
    config: SyncConfig,
    /// Whether this VM is the one syncing (see `sync_lease`).
    lease: SyncLease,
    active: bool,
    /// The service's time: schedules, timeouts and ages run on it, not on the wall
    /// clock, which may be stepped.
    clock: SteadyClock,
    schedule: Schedule,
    running: Option<Running>,
    /// A refresh is wanted now (keysync asked for one, or the stream went wrong).
    resync_wanted: bool,
    /// The next refresh replaces the store's revision baseline (see `Refresh::new`);
    /// cleared once one has.
    reset_wanted: bool,
    /// When (on `clock`) keysync last confirmed, against PostgreSQL, data the store now
    /// holds in full; `None` before the first time.
    confirmed_at: Option<u64>,
    /// Moves on every tick, so workers can tell the service is alive (`StoreMeta`).
    beat: u64,
    /// Every change up to this revision is in the store; `None` before the first refresh.
    complete: Option<u64>,
    stream: Stream,
    stream_backoff: Backoff,
    metrics: Metrics,
    /// Usage reports to keysync; `None` while not syncing or with metering off.
    usage: Option<UsageFlush>,
    quota: Option<QuotaSync>,
}

struct Running {
    refresh: Refresh,
    /// The page request in flight.
    token: u32,
    sent_at_ms: u64,
    /// When (on the service's clock) keysync had confirmed the first page's data.
    first_confirmed_at: Option<u64>,
    /// The stream was up from the start of this refresh to its end: anything the
    /// refresh repairs is drift the stream did not deliver.
    stream_up_throughout: bool,
}

enum Stream {
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

struct Metrics {
    refresh_ok: Stat,
    refresh_failed: Stat,
    keys_loaded: Stat,
    store_revision: Stat,
    stream_connected: Stat,
    seconds_since_sync: Stat,
    resyncs: Stat,
    stream_changes: Stat,
    takeovers: Stat,
    bad_policies: Stat,
    usage_flushes_ok: Stat,
    usage_flush_failed: Stat,
    quota: QuotaStats,
}

impl Metrics {
    fn define<H: Host>(host: &H) -> Self {
        let counter = |name| Stat::define(host, MetricKind::Counter, name);
        let gauge = |name| Stat::define(host, MetricKind::Gauge, name);
        Metrics {
            refresh_ok: counter(stats::REFRESH_OK),
            refresh_failed: counter(stats::REFRESH_FAILED),
            keys_loaded: gauge(stats::KEYS_LOADED),
            store_revision: gauge(stats::STORE_REVISION),
            stream_connected: gauge(stats::STREAM_CONNECTED),
            seconds_since_sync: gauge(stats::SECONDS_SINCE_SYNC),
            resyncs: counter(stats::RESYNCS),
            stream_changes: counter(stats::STREAM_CHANGES),
            takeovers: counter(stats::SYNC_TAKEOVERS),
            bad_policies: counter(stats::BAD_POLICIES),
            usage_flushes_ok: counter(stats::USAGE_FLUSHES_OK),
            usage_flush_failed: counter(stats::USAGE_FLUSH_FAILED),
            quota: QuotaStats {
                ok: counter(stats::QUOTA_CLAIMS_OK),
                failed: counter(stats::QUOTA_CLAIMS_FAILED),
                revision: gauge(stats::QUOTA_REVISION),
            },
        }
    }
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
        let schedule = Schedule::new(config.refresh_interval, config.max_retry_interval, seed);
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
        }
    }

    fn store(&self) -> KeyStore<&H> {
        KeyStore::new(&self.host)
    }

    /// The service's time now.
    fn now(&mut self) -> u64 {
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
        if let Some(usage) = &mut self.usage {
            usage.on_tick(&self.host, &self.config.keysync_cluster, now);
        }
        if let Some(quota) = &mut self.quota {
            let wall = self.host.now_unix_ms();
            quota.on_tick(&self.host, &self.config.keysync_cluster, now, wall);
        }
        // Found while decoding pages and stream messages since the last tick.
        let bad_policies = crate::policy::take_defects();
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

    /// keysync confirmed, `age_ms` before `now`, data the store now holds in full.
    fn confirmed(&mut self, now: u64, age_ms: u64) {
        if age_ms == NEVER {
            return;
        }
        let at = now.saturating_sub(age_ms);
        self.confirmed_at = Some(self.confirmed_at.map_or(at, |c| c.max(at)));
        // Workers see it now, not at the next tick: a request right after the first
        // sync must not find the store unconfirmed.
        self.beat(now);
    }

    fn tick_refresh(&mut self, now: u64) {
        if let Some(running) = &self.running {
            // Envoy answers every call, if only with a timeout; this is a last resort.
            let deadline = millis(self.config.request_timeout).saturating_mul(2);
            if now.saturating_sub(running.sent_at_ms) > deadline {
                let token = running.token;
                self.running = None;
                self.host.cancel_grpc(token);
                self.refresh_failed(now, "no answer from keysync");
            }
            return;
        }
        if self.resync_wanted || self.schedule.is_due(now) {
            self.resync_wanted = false;
            let refresh = Refresh::new(self.config.page_size, self.reset_wanted);
            let request = refresh.first_request();
            let stream_up = self.stream_connected();
            self.send_page_request(refresh, &request, now, stream_up);
        }
    }

    fn tick_stream(&mut self, now: u64) {
        if !self.config.watch {
            return;
        }
        let timeout = millis(self.config.watch_idle_timeout);
        match &self.stream {
            Stream::Open {
                token,
                last_message_ms,
                partial_since_ms,
                watch,
                ..
            } => {
                let token = *token;
                let idle = now.saturating_sub(*last_message_ms);
                if idle > timeout {
                    self.host.cancel_grpc_stream(token);
                    self.stream_down(now, &format!("no message for {}s", idle / 1000));
                } else if partial_since_ms.is_some_and(|since| now.saturating_sub(since) > timeout)
                {
                    warn!(
                        "watch stream: a split change set after revision {} did not complete \
                         within {}s; resyncing, the current keys keep serving",
                        watch.complete(),
                        timeout / 1000
                    );
                    self.resync(token, now);
                }
            }
            Stream::Down { retry_at_ms } => {
                // Without a complete store there is nothing to resume from: the refresh
                // in progress opens the stream when it completes.
                if let Some(after) = self.complete {
                    if now >= *retry_at_ms && !self.resync_pending() {
                        self.open_stream(after, now);
                    }
                }
            }
        }
    }

    fn resync_pending(&self) -> bool {
        self.resync_wanted
            || self
                .running
                .as_ref()
                .is_some_and(|r| !r.stream_up_throughout)
    }

    fn stream_connected(&self) -> bool {
        matches!(
            self.stream,
            Stream::Open {
                connected: true,
                ..
            }
        )
    }

    // ---- full refresh ----

    /// A `ListKeys` page or a `ReportUsage` answer arrived (or its call failed).
    pub fn on_response(&mut self, token: u32, reply: Reply) {
        if !self.active {
            return;
        }
        if let Some(usage) = self.usage.as_mut().filter(|usage| usage.owns(token)) {
            let now = self.clock.read(self.host.now_unix_ms());
            usage.on_response(&self.host, &self.config.keysync_cluster, now, token, reply);
            return;
        }
        if let Some(quota) = self.quota.as_mut().filter(|quota| quota.owns(token)) {
            quota.on_response(&self.host, token, reply);
            return;
        }
        let Some(mut running) = self.running.take() else {
            return;
        };
        if running.token != token {
            self.running = Some(running);
            return;
        }
        let now = self.now();
        let page = match keysync_api::decode::<proto::ListKeysResponse>(reply)
            .map_err(|e| e.to_string())
            .and_then(|page| Page::decode(page).map_err(|e| e.to_string()))
        {
            Ok(page) => page,
            Err(reason) => return self.refresh_failed(now, &reason),
        };
        if running.refresh.is_first_page() {
            if let Some(reason) = self.behind_the_store(&page) {
                return self.refresh_failed(now, &reason);
            }
            let age = page.provenance.confirmed_age_ms;
            running.first_confirmed_at = (age != NEVER).then(|| now.saturating_sub(age));
        }
        let applied = running.refresh.apply(&self.store(), page);
        match applied {
            Ok(Progress::More(request)) => {
                let stream_up = running.stream_up_throughout;
                let confirmed = running.first_confirmed_at;
                self.send_page_request(running.refresh, &request, now, stream_up);
                if let Some(next) = &mut self.running {
                    next.first_confirmed_at = confirmed;
                }
            }
            Ok(Progress::Done(summary)) => {
                self.refresh_succeeded(now, &running, summary);
            }
            Err(e) => self.refresh_failed(now, &e.to_string()),
        }
    }

    /// A periodic refresh must not take a snapshot older than what the store already
    /// holds (a keysync lagging behind another, or cut off from PostgreSQL): its pages
    /// would undo newer changes. A resync takes keysync's word (see `Refresh::new`).
    fn behind_the_store(&self, first: &Page) -> Option<String> {
        let complete = self.complete?;
        let meta = self.store().meta();
        (!self.reset_wanted && first.provenance.epoch == meta.epoch && first.revision < complete)
            .then(|| {
                format!(
                    "keysync is behind the store (revision {} < {complete}); not taking its pages",
                    first.revision
                )
            })
    }

    fn send_page_request(
        &mut self,
        refresh: Refresh,
        request: &proto::ListKeysRequest,
        now: u64,
        stream_up_throughout: bool,
    ) {
        match keysync_api::dispatch(
            &self.host,
            &self.config.keysync_cluster,
            keysync_api::LIST_KEYS,
            request,
            self.config.request_timeout,
        ) {
            Ok(token) => {
                self.running = Some(Running {
                    refresh,
                    token,
                    sent_at_ms: now,
                    first_confirmed_at: None,
                    stream_up_throughout,
                })
            }
            Err(e) => self.refresh_failed(now, &e.to_string()),
        }
    }

    fn refresh_succeeded(&mut self, now: u64, running: &Running, summary: Summary) {
        info!(
            "cache refresh complete: updated={}, removed={}, total={}",
            summary.updated, summary.removed, summary.total
        );
        if running.stream_up_throughout && summary.updated + summary.removed > 0 {
            warn!(
                "cache refresh repaired drift the watch stream had not delivered: updated={}, removed={}",
                summary.updated, summary.removed
            );
        }
        self.schedule.succeeded(now);
        self.metrics.refresh_ok.add(&self.host, 1);
        self.metrics.keys_loaded.record(&self.host, summary.total);
        let revision = self.store().meta().revision;
        self.metrics.store_revision.record(&self.host, revision);
        if let Some(at) = running.first_confirmed_at {
            // Not behind the store (checked at the first page), so the store now holds
            // everything keysync had confirmed then.
            self.confirmed(now, now.saturating_sub(at));
        }
        if running.refresh.replaces_baseline() {
            // A new baseline: what the store was complete up to before no longer counts.
            self.reset_wanted = false;
            self.complete = running.refresh.first_revision();
            if let (true, Stream::Down { .. }, Some(after)) =
                (self.config.watch, &self.stream, self.complete)
            {
                self.open_stream(after, now);
            }
            return;
        }
        // With the stream down, the store is now complete up to the refresh's first page;
        // the stream resumes from there. With it up, it already tracks completeness.
        if !self.stream_connected() {
            // The stream may have delivered more than the pages before it dropped.
            if let Some(first) = running.refresh.first_revision() {
                self.complete = Some(self.complete.map_or(first, |c| c.max(first)));
            }
            if let (true, Stream::Down { .. }, Some(after)) =
                (self.config.watch, &self.stream, self.complete)
            {
                self.open_stream(after, now);
            }
        }
    }

    fn refresh_failed(&mut self, now: u64, reason: &str) {
        let delay = self.schedule.failed(now);
        warn!(
            "cache refresh failed: {reason}; retry {} in {}s; the last known keys keep serving",
            self.schedule.consecutive_failures(),
            delay.as_secs_f32()
        );
        self.metrics.refresh_failed.add(&self.host, 1);
    }

    // ---- watch stream ----

    fn open_stream(&mut self, after: u64, now: u64) {
        let epoch = self.store().meta().epoch;
        let request = proto::WatchKeysRequest {
            after_revision: after,
            epoch,
        };
        match keysync_api::open_stream(
            &self.host,
            &self.config.keysync_cluster,
            keysync_api::WATCH_KEYS,
            &request,
        ) {
            Ok(token) => {
                self.stream = Stream::Open {
                    token,
                    watch: Watch::new(epoch, after),
                    last_message_ms: now,
                    connected: false,
                    partial_since_ms: None,
                };
            }
            Err(e) => self.stream_down(now, &e.to_string()),
        }
    }

    /// A message arrived on the watch stream `token` (or could not be read).
    pub fn on_stream_message(&mut self, token: u32, reply: Reply) {
        if !self.active {
            return;
        }
        let now = self.now();
        let Stream::Open {
            token: open,
            watch,
            last_message_ms,
            connected,
            partial_since_ms,
        } = &mut self.stream
        else {
            return;
        };
        if *open != token {
            return;
        }
        *last_message_ms = now;
        if !*connected {
            *connected = true;
            info!(
                "watch stream connected: resuming after revision {}",
                watch.complete()
            );
            self.stream_backoff.reset();
            self.metrics.stream_connected.record(&self.host, 1);
        }
        let step = keysync_api::decode::<proto::KeyChanges>(reply)
            .map_err(|e| e.to_string())
            .and_then(|message| watch.on_message(message).map_err(|e| e.to_string()));
        let complete = watch.complete();
        let in_partial = watch.in_partial();
        *partial_since_ms = match (in_partial, *partial_since_ms) {
            (false, _) => None,
            (true, since) => since.or(Some(now)),
        };
        match step {
            Ok(Step::Apply {
                revision,
                changes,
                provenance,
            }) => {
                self.apply(revision, &changes);
                self.complete = Some(complete);
                self.stream_confirmed(token, now, provenance, in_partial);
            }
            Ok(Step::Heartbeat { provenance }) => {
                self.complete = Some(complete);
                self.stream_confirmed(token, now, provenance, in_partial);
            }
            Ok(Step::Resync) => {
                info!("keysync cannot replay the changes after revision {complete}: full resync");
                self.resync(token, now);
            }
            Err(reason) => {
                warn!("watch stream: {reason}; resyncing, the current keys keep serving");
                self.resync(token, now);
            }
        }
    }

    /// What a stream message says of keysync's confirmation. A stream whose keysync has
    /// not confirmed anything for `max_unconfirmed` (cut off from PostgreSQL) is as good
    /// as a silent one: it is reopened, perhaps to a keysync that is not cut off.
    fn stream_confirmed(&mut self, token: u32, now: u64, provenance: Provenance, in_partial: bool) {
        let age = provenance.confirmed_age_ms;
        if age > millis(self.config.max_unconfirmed) {
            self.host.cancel_grpc_stream(token);
            let reason = if age == NEVER {
                "keysync has never confirmed its keys against PostgreSQL".to_string()
            } else {
                format!(
                    "keysync has not confirmed its keys against PostgreSQL for {}s",
                    age / 1000
                )
            };
            self.stream_down(now, &reason);
        } else if !in_partial {
            self.confirmed(now, age);
        }
    }

    fn apply(&mut self, revision: u64, changes: &[Change]) {
        // Announce the revision before touching buckets (see `KeyStore::cache_lookup`).
        let store = self.store();
        let mut meta = store.meta();
        meta.revision = meta.revision.max(revision);
        if let Err(e) = store.write_meta(&meta) {
            warn!("cannot write the store metadata: {e}");
        }
        match store.apply_changes(changes) {
            Ok(diff) => {
                info!(
                    "watch applied revision {revision}: updated={}, removed={}",
                    diff.updated, diff.removed
                );
                self.metrics
                    .stream_changes
                    .add(&self.host, changes.len() as u64);
            }
            Err(e) => {
                warn!("cannot apply revision {revision}: {e}; resyncing");
                self.resync_wanted = true;
            }
        }
        if let Some(running) = &mut self.running {
            for change in changes {
                running.refresh.note(change);
            }
        }
        self.metrics
            .store_revision
            .record(&self.host, meta.revision);
    }

    /// The watch stream `token` ended.
    pub fn on_stream_close(&mut self, token: u32, status: u32) {
        if matches!(self.stream, Stream::Open { token: open, .. } if open == token) {
            let now = self.now();
            self.stream_down(now, &format!("closed with gRPC status {status}"));
        }
    }

    fn resync(&mut self, token: u32, now: u64) {
        self.host.cancel_grpc_stream(token);
        self.metrics.resyncs.add(&self.host, 1);
        self.stream = Stream::Down { retry_at_ms: now };
        self.metrics.stream_connected.record(&self.host, 0);
        self.resync_wanted = true;
        self.reset_wanted = true;
    }

    fn stream_down(&mut self, now: u64, reason: &str) {
        let delay = self.stream_backoff.failed();
        warn!(
            "watch stream down ({reason}); reconnecting in {}s",
            delay.as_secs_f32()
        );
        self.stream = Stream::Down {
            retry_at_ms: now.saturating_add(millis(delay)),
        };
        self.metrics.stream_connected.record(&self.host, 0);
        if let Some(running) = &mut self.running {
            running.stream_up_throughout = false;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The sync service's transitions, driven tick by tick against a fake host.

    use super::*;
    use crate::config::PluginConfig;
    use crate::fake_host::{logged_line, Call, FakeHost};
    use crate::key_hash::KeyHash;
    use crate::keysync_api::ApiError;

    const NOW_MS: u64 = 1_700_000_000_000;
    const EPOCH: u64 = 0xe90c;

    /// What a healthy keysync says of its data: confirmed 300 ms ago.
    fn fresh() -> Option<proto::Provenance> {
        Some(proto::Provenance {
            epoch: EPOCH,
            confirmed_age_ms: 300,
        })
    }

    fn service(config: &str) -> SyncService<FakeHost> {
        let PluginConfig::Sync(config) = PluginConfig::parse(config.as_bytes()).unwrap() else {
            panic!("not a sync configuration: {config}");
        };
        SyncService::singleton(FakeHost::at(NOW_MS), config, b"")
    }

    fn key(n: u8) -> proto::KeyRecord {
        proto::KeyRecord {
            key_hash: KeyHash::of_key(&[n]).0.to_vec(),
            key_id: vec![n; 16],
            org_id: vec![0xab; 16],
            expires_at: 0,
            rate_limit: None,
            ..Default::default()
        }
    }

    fn hash(n: u8) -> KeyHash {
        KeyHash::of_key(&[n])
    }

    fn known(service: &SyncService<FakeHost>, n: u8) -> bool {
        service.store().find(&hash(n)).unwrap().is_some()
    }

    /// keysync's answer to a `ListKeys` call: `keys` sorted by hash, in pages as asked.
    fn page_for(call: &Call, keys: &[proto::KeyRecord], revision: u64) -> Reply {
        let request: proto::ListKeysRequest = call.decode();
        let mut sorted = keys.to_vec();
        sorted.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
        let rest: Vec<_> = sorted
            .into_iter()
            .filter(|k| k.key_hash > request.after_hash)
            .collect();
        let size = request.page_size as usize;
        Ok(prost::Message::encode_to_vec(&proto::ListKeysResponse {
            more: rest.len() > size,
            keys: rest.into_iter().take(size).collect(),
            revision,
            provenance: fresh(),
        }))
    }

    /// The last `ListKeys` call (quota polls go out beside them).
    fn last_list_call(service: &SyncService<FakeHost>) -> Option<Call> {
        let calls = service.host.calls.borrow();
        calls
            .iter()
            .rev()
            .find(|c| c.method == keysync_api::LIST_KEYS)
            .cloned()
    }

    fn list_calls(service: &SyncService<FakeHost>) -> usize {
        service
            .host
            .calls
            .borrow()
            .iter()
            .filter(|c| c.method == keysync_api::LIST_KEYS)
            .count()
    }

    /// Answers `ListKeys` calls until the refresh in progress completes.
    fn serve_refresh(
        service: &mut SyncService<FakeHost>,
        keys: &[proto::KeyRecord],
        revision: u64,
    ) {
        for _ in 0..100 {
            let Some(running) = &service.running else {
                return;
            };
            let token = running.token;
            let call = service
                .host
                .calls
                .borrow()
                .iter()
                .find(|c| c.token == token)
                .cloned()
                .unwrap();
            service.on_response(token, page_for(&call, keys, revision));
        }
        panic!("the refresh never completed");
    }

    fn tick_after(service: &mut SyncService<FakeHost>, by: Duration) {
        service.host.advance(by);
        service.on_tick();
    }

    /// Lets `by` pass in 5 s ticks while keysync heartbeats, as it does on a quiet stream.
    fn quiet_for(service: &mut SyncService<FakeHost>, by: Duration) {
        let mut passed = Duration::ZERO;
        while passed < by {
            if let Some(token) = stream_token(service) {
                let revision = service.complete.unwrap_or(0);
                service.on_stream_message(token, changes(revision, &[], &[]));
            }
            tick_after(service, Duration::from_secs(5));
            passed += Duration::from_secs(5);
        }
    }

    fn stream_token(service: &SyncService<FakeHost>) -> Option<u32> {
        match service.stream {
            Stream::Open { token, .. } => Some(token),
            Stream::Down { .. } => None,
        }
    }

    fn changes(revision: u64, upserts: &[u8], removals: &[u8]) -> Reply {
        Ok(prost::Message::encode_to_vec(&proto::KeyChanges {
            revision,
            upserts: upserts.iter().map(|n| key(*n)).collect(),
            removals: removals.iter().map(|n| hash(*n).0.to_vec()).collect(),
            resync_required: false,
            partial: false,
            provenance: fresh(),
        }))
    }

    fn partial(revision: u64, upserts: &[u8]) -> Reply {
        let mut message: proto::KeyChanges =
            prost::Message::decode(changes(revision, upserts, &[]).unwrap().as_slice()).unwrap();
        message.partial = true;
        Ok(prost::Message::encode_to_vec(&message))
    }

    /// A service that completed its first refresh at revision 10 and whose stream is up.
    fn running_with_stream(config: &str, keys: &[proto::KeyRecord]) -> SyncService<FakeHost> {
        let mut service = service(config);
        service.on_tick();
        serve_refresh(&mut service, keys, 10);
        let token = stream_token(&service).expect("the stream opens after the refresh");
        service.on_stream_message(token, changes(10, &[], &[]));
        assert!(service.stream_connected());
        service
    }

    #[test]
    fn the_first_tick_loads_everything_then_opens_the_stream_after_it() {
        let mut service = service(r#"{"role":"sync","page_size":2}"#);
        service.on_tick();
        let first = last_list_call(&service).unwrap();
        assert_eq!(first.method, keysync_api::LIST_KEYS);
        assert_eq!(first.timeout, Some(Duration::from_secs(10)));
        let keys: Vec<_> = (1..=5).map(key).collect();
        serve_refresh(&mut service, &keys, 10);
        assert_eq!(list_calls(&service), 3, "five keys in pages of two");
        assert!((1..=5).all(|n| known(&service, n)));
        let meta = service.store().meta();
        assert!(meta.synced);
        assert_eq!((meta.revision, meta.keys), (10, 5));
        assert!(logged_line("cache refresh complete: updated=5, removed=0, total=5").is_some());
        assert_eq!(service.host.metric(stats::REFRESH_OK), Some(1));

        let stream = service.host.last_stream().expect("a watch stream");
        assert_eq!(stream.method, keysync_api::WATCH_KEYS);
        let request: proto::WatchKeysRequest = stream.decode();
        assert_eq!(request.after_revision, 10);
    }

    #[test]
    fn stream_changes_reach_the_store_and_heartbeats_keep_it_fresh() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1), key(2)]);
        assert_eq!(service.host.metric(stats::STREAM_CONNECTED), Some(1));
        let token = stream_token(&service).unwrap();
        service.on_stream_message(token, changes(11, &[3], &[1]));
        assert!(!known(&service, 1), "revoked");
        assert!(known(&service, 3), "created");
        assert_eq!(service.complete, Some(11));
        assert_eq!(service.store().meta().revision, 11);

        tick_after(&mut service, Duration::from_secs(5));
        assert!(service.store().meta().confirmed_age_ms >= 5_000);
        service.on_stream_message(token, changes(11, &[], &[]));
        service.on_tick();
        assert_eq!(
            service.store().meta().confirmed_age_ms,
            300,
            "a heartbeat says when keysync last confirmed"
        );
    }

    #[test]
    fn a_closed_stream_is_reopened_after_backoff_from_the_complete_revision() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        service.on_stream_message(token, changes(12, &[2], &[]));
        service.on_stream_close(token, 14);
        assert!(stream_token(&service).is_none());
        assert_eq!(service.host.metric(stats::STREAM_CONNECTED), Some(0));
        assert!(logged_line("watch stream down (closed with gRPC status 14)").is_some());

        let streams = service.host.streams.borrow().len();
        tick_after(&mut service, Duration::from_millis(100));
        assert_eq!(
            service.host.streams.borrow().len(),
            streams,
            "not before the backoff (at least 125 ms)"
        );
        tick_after(&mut service, Duration::from_millis(200));
        let reopened = service.host.last_stream().unwrap();
        assert_eq!(service.host.streams.borrow().len(), streams + 1);
        let request: proto::WatchKeysRequest = reopened.decode();
        assert_eq!(
            request.after_revision, 12,
            "resumes after what the store holds"
        );
    }

    #[test]
    fn a_silent_stream_is_presumed_dead() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        for _ in 0..64 {
            tick_after(&mut service, Duration::from_millis(250));
        }
        assert!(service.host.cancelled.borrow().contains(&token));
        // Given up, and (its backoff being short) already reopened as a new stream.
        assert_ne!(stream_token(&service), Some(token));
        assert!(logged_line("no message for 15s").is_some());
    }

    #[test]
    fn a_failed_page_backs_off_and_the_last_keys_keep_serving() {
        let mut service = running_with_stream(
            r#"{"role":"sync","refresh_interval":"60s","max_retry_interval":"8s"}"#,
            &[key(1)],
        );
        let mut delays = Vec::new();
        quiet_for(&mut service, Duration::from_secs(60));
        for _ in 0..5 {
            let call = last_list_call(&service).unwrap();
            service.on_response(call.token, Err(ApiError::Grpc(14, "unavailable".into())));
            assert!(known(&service, 1), "the store keeps serving");
            // Tick in 100 ms steps until the retry goes out.
            let calls = list_calls(&service);
            let mut waited = Duration::ZERO;
            while list_calls(&service) == calls {
                tick_after(&mut service, Duration::from_millis(100));
                waited += Duration::from_millis(100);
                assert!(waited < Duration::from_secs(20), "no retry");
            }
            delays.push(waited);
        }
        assert_eq!(service.host.metric(stats::REFRESH_FAILED), Some(5));
        for (delay, nominal) in delays.iter().zip([1, 2, 4, 8, 8]) {
            let nominal = Duration::from_secs(nominal);
            assert!(
                *delay >= nominal / 2 && *delay <= nominal + Duration::from_millis(100),
                "{delays:?}"
            );
        }
        assert!(
            logged_line("cache refresh failed: gRPC status 14: unavailable; retry 5").is_some()
        );
        serve_refresh(&mut service, &[key(1), key(2)], 11);
        assert!(known(&service, 2), "a later refresh succeeds");
    }

    #[test]
    fn a_refresh_nobody_answers_is_abandoned() {
        let mut service = service(r#"{"role":"sync","request_timeout":"1s"}"#);
        service.on_tick();
        let token = last_list_call(&service).unwrap().token;
        tick_after(&mut service, Duration::from_millis(2100));
        assert!(service.host.cancelled.borrow().contains(&token));
        assert_eq!(service.host.metric(stats::REFRESH_FAILED), Some(1));
    }

    #[test]
    fn a_revision_going_backwards_is_not_applied_and_forces_a_resync() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        let lists = list_calls(&service);
        service.on_stream_message(token, changes(5, &[7], &[]));
        assert!(!known(&service, 7), "not applied");
        assert!(service.host.cancelled.borrow().contains(&token));
        assert_eq!(service.host.metric(stats::RESYNCS), Some(1));
        assert!(logged_line("revision went backwards").is_some());
        service.on_tick();
        assert_eq!(
            list_calls(&service),
            lists + 1,
            "a full refresh starts at once"
        );
        assert!(stream_token(&service).is_none(), "the stream waits for it");
        serve_refresh(&mut service, &[key(1)], 10);
        assert!(stream_token(&service).is_some(), "then reopens");
    }

    #[test]
    fn keysync_asking_for_a_resync_gets_one() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        let message = proto::KeyChanges {
            revision: 99,
            resync_required: true,
            ..Default::default()
        };
        service.on_stream_message(token, Ok(prost::Message::encode_to_vec(&message)));
        service.on_tick();
        assert_eq!(
            last_list_call(&service).unwrap().method,
            keysync_api::LIST_KEYS
        );
        assert!(logged_line("full resync").is_some());
    }

    #[test]
    fn a_split_change_set_completes_on_its_last_part() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        service.on_stream_message(token, partial(11, &[2]));
        assert!(known(&service, 2), "parts apply as they come");
        assert_eq!(
            service.complete,
            Some(10),
            "but the revision is not complete yet"
        );
        service.on_stream_message(token, changes(11, &[3], &[]));
        assert_eq!(service.complete, Some(11));
    }

    #[test]
    fn a_split_change_set_that_never_ends_forces_a_resync() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        // A rogue keeps the stream busy with parts of one change set and never ends it.
        for n in 0..4 {
            service.on_stream_message(token, partial(11, &[20 + n]));
            tick_after(&mut service, Duration::from_secs(5));
        }
        assert!(service.host.cancelled.borrow().contains(&token));
        assert!(logged_line("did not complete within 15s").is_some());
        assert_eq!(service.complete, Some(10));
        assert_eq!(service.host.metric(stats::RESYNCS), Some(1));
    }

    #[test]
    fn undecodable_messages_and_bad_records_force_a_resync() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        service.on_stream_message(token, Ok(b"\xff\xff\xff not protobuf".to_vec()));
        assert!(logged_line("watch stream: cannot decode").is_some());
        assert!(stream_token(&service).is_none());

        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        let mut bad = key(5);
        bad.org_id = vec![1, 2, 3];
        let message = proto::KeyChanges {
            revision: 11,
            upserts: vec![bad],
            provenance: fresh(),
            ..Default::default()
        };
        service.on_stream_message(token, Ok(prost::Message::encode_to_vec(&message)));
        assert!(!known(&service, 5));
        assert!(logged_line("bad key record").is_some());
    }

    #[test]
    fn the_periodic_refresh_repairs_drift_the_stream_missed() {
        let mut service = running_with_stream(
            r#"{"role":"sync","refresh_interval":"60s"}"#,
            &[key(1), key(2)],
        );
        // keysync dropped key 2 and the stream never said so.
        quiet_for(&mut service, Duration::from_secs(60));
        assert!(service.running.is_some(), "the periodic refresh is due");
        serve_refresh(&mut service, &[key(1)], 10);
        assert!(!known(&service, 2));
        let line = logged_line("repaired drift").expect("drift is reported");
        assert!(line.contains("removed=1"), "{line}");
    }

    #[test]
    fn changes_during_a_refresh_are_not_undone_by_its_older_pages() {
        let mut service = running_with_stream(
            r#"{"role":"sync","refresh_interval":"60s","page_size":1}"#,
            &[key(1), key(2), key(3)],
        );
        quiet_for(&mut service, Duration::from_secs(60));
        let token = stream_token(&service).unwrap();
        // The stream revokes every key while the refresh pages out the old set.
        service.on_stream_message(token, changes(11, &[], &[1, 2, 3]));
        serve_refresh(&mut service, &[key(1), key(2), key(3)], 10);
        assert!(
            (1..=3).all(|n| !known(&service, n)),
            "no revoked key comes back"
        );
    }

    #[test]
    fn rate_limit_slots_exist_once_the_service_syncs() {
        let mut service = service(r#"{"role":"sync"}"#);
        service.on_tick();
        assert_eq!(
            (0..local_rate_limit::SLOTS)
                .filter(|i| service
                    .host
                    .shared
                    .value(&format!("keysync.rl.{i:04x}"))
                    .is_some())
                .count(),
            usize::from(local_rate_limit::SLOTS)
        );
    }

    fn heartbeat_with(revision: u64, epoch: u64, confirmed_age_ms: u64) -> Reply {
        Ok(prost::Message::encode_to_vec(&proto::KeyChanges {
            revision,
            provenance: Some(proto::Provenance {
                epoch,
                confirmed_age_ms,
            }),
            ..Default::default()
        }))
    }

    fn watch_after(service: &SyncService<FakeHost>) -> (u64, u64) {
        let request: proto::WatchKeysRequest = service.host.last_stream().unwrap().decode();
        (request.after_revision, request.epoch)
    }

    #[test]
    fn a_revision_that_jumped_ahead_is_repaired_by_a_resync_that_resets_the_baseline() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        // One corrupt heartbeat claims a huge revision, then keysync goes on as before.
        service.on_stream_message(token, heartbeat_with(u64::MAX / 2, EPOCH, 300));
        assert_eq!(service.complete, Some(u64::MAX / 2));
        service.on_stream_message(token, changes(11, &[2], &[]));
        assert!(logged_line("revision went backwards").is_some());
        service.on_tick();
        serve_refresh(&mut service, &[key(1), key(2)], 11);
        assert_eq!(
            service.complete,
            Some(11),
            "the baseline is keysync's again"
        );
        assert_eq!(service.store().meta().revision, 11);
        assert_eq!(watch_after(&service), (11, EPOCH));
        assert!(known(&service, 2));
    }

    #[test]
    fn a_new_revision_history_replaces_the_store_whatever_its_revisions() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1), key(2)]);
        let token = stream_token(&service).unwrap();
        // keysync's database was restored from an older dump: a new epoch, revision 4.
        service.on_stream_message(token, heartbeat_with(4, EPOCH + 1, 300));
        assert!(logged_line("revision history changed").is_some());
        assert!(service.host.cancelled.borrow().contains(&token));
        service.on_tick();
        let call = last_list_call(&service).unwrap();
        let request: proto::ListKeysRequest = call.decode();
        let page = proto::ListKeysResponse {
            keys: vec![key(1)],
            more: false,
            revision: 4,
            provenance: Some(proto::Provenance {
                epoch: EPOCH + 1,
                confirmed_age_ms: 100,
            }),
        };
        assert!(request.after_hash.is_empty());
        service.on_response(call.token, Ok(prost::Message::encode_to_vec(&page)));
        let meta = service.store().meta();
        assert_eq!((meta.epoch, meta.revision), (EPOCH + 1, 4));
        assert!(
            !known(&service, 2),
            "the restored database does not have it"
        );
        assert_eq!(watch_after(&service), (4, EPOCH + 1));
    }

    #[test]
    fn a_periodic_refresh_from_a_keysync_behind_the_store_is_refused() {
        let mut service =
            running_with_stream(r#"{"role":"sync","refresh_interval":"60s"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        service.on_stream_message(token, changes(15, &[], &[1]));
        quiet_for(&mut service, Duration::from_secs(60));
        // Another keysync, lagging at revision 12, answers the refresh.
        let call = last_list_call(&service).unwrap();
        service.on_response(call.token, page_for(&call, &[key(1)], 12));
        assert!(!known(&service, 1), "the revocation is not undone");
        assert!(logged_line("keysync is behind the store (revision 12 < 15)").is_some());
        assert_eq!(service.host.metric(stats::REFRESH_FAILED), Some(1));
    }

    #[test]
    fn a_stream_whose_keysync_stopped_confirming_is_reopened() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        service.on_stream_message(token, heartbeat_with(10, EPOCH, 4_000));
        assert!(
            stream_token(&service).is_some(),
            "within max_unconfirmed (5 s)"
        );
        service.on_stream_message(token, heartbeat_with(10, EPOCH, 6_000));
        assert!(service.host.cancelled.borrow().contains(&token));
        assert!(logged_line("has not confirmed its keys against PostgreSQL for 6s").is_some());
        assert!(stream_token(&service).is_none());
    }

    #[test]
    fn every_tick_tells_the_workers_how_old_the_store_is() {
        let mut service = service(r#"{"role":"sync"}"#);
        service.on_tick();
        let meta = service.store().meta();
        assert_eq!(meta.confirmed_age_ms, NEVER, "nothing confirmed yet");
        let beat = meta.beat;
        serve_refresh(&mut service, &[key(1)], 10);
        service.on_tick();
        let meta = service.store().meta();
        assert_eq!(meta.confirmed_age_ms, 300);
        assert!(meta.beat > beat);
        for _ in 0..8 {
            tick_after(&mut service, Duration::from_millis(250));
        }
        // The stream opened but nothing arrived on it: the age grows.
        assert_eq!(service.store().meta().confirmed_age_ms, 300 + 2_000);
        assert_eq!(service.host.metric(stats::SECONDS_SINCE_SYNC), Some(2));
    }

    #[test]
    fn a_wall_clock_stepped_back_an_hour_does_not_stop_the_sync() {
        let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
        let token = stream_token(&service).unwrap();
        service.on_stream_close(token, 14);
        let now = service.host.now_ms.get();
        service.host.now_ms.set(now - 3_600_000);
        let streams = service.host.streams.borrow().len();
        for _ in 0..8 {
            tick_after(&mut service, Duration::from_millis(250));
        }
        assert_eq!(
            service.host.streams.borrow().len(),
            streams + 1,
            "the stream is reopened after its backoff, not an hour later"
        );
        let confirmed = service.store().meta().confirmed_age_ms;
        // 300 ms at the heartbeat, then seven ticks of 250 ms: the step back counts 0.
        assert_eq!(confirmed, 300 + 7 * 250);
    }

    #[test]
    fn a_worker_takes_over_a_sync_service_that_died_and_the_store_keeps_up() {
        let host = FakeHost::at(NOW_MS);
        let PluginConfig::Sync(config) =
            PluginConfig::parse(br#"{"role":"sync","page_size":50}"#).unwrap()
        else {
            panic!("sync");
        };
        let mut singleton =
            SyncService::singleton(&host, config, br#"{"role":"sync","page_size":50}"#);
        let mut standby = SyncService::standby(&host, "keysync").unwrap();
        assert_eq!(
            standby.config.page_size, 50,
            "the singleton's configuration"
        );
        singleton.on_tick();
        standby.on_tick();
        let token = singleton.running.as_ref().unwrap().token;
        let call = host
            .calls
            .borrow()
            .iter()
            .find(|c| c.token == token)
            .cloned()
            .unwrap();
        singleton.on_response(token, page_for(&call, &[key(1)], 10));
        let calls = host.calls.borrow().len();
        for _ in 0..40 {
            host.advance(Duration::from_millis(250));
            singleton.on_tick();
            standby.on_tick();
        }
        assert_eq!(
            host.calls.borrow().len(),
            calls,
            "the stand-by sends nothing"
        );
        assert!(!standby.active);

        // The singleton's VM dies: it ticks no more. Within the takeover delay and a
        // tick or two, the stand-by syncs in its place.
        let mut waited = Duration::ZERO;
        while standby.running.is_none() {
            host.advance(Duration::from_millis(250));
            standby.on_tick();
            waited += Duration::from_millis(250);
            assert!(waited < Duration::from_secs(7), "no takeover");
        }
        assert!(waited >= Duration::from_millis(TAKEOVER_AFTER_MS));
        assert!(logged_line("sync service taken over").is_some());
        let token = standby.running.as_ref().unwrap().token;
        let call = host
            .calls
            .borrow()
            .iter()
            .find(|c| c.token == token)
            .cloned()
            .unwrap();
        standby.on_response(token, page_for(&call, &[key(2)], 11));
        assert!(standby.store().find(&hash(2)).unwrap().is_some());
        assert!(standby.store().find(&hash(1)).unwrap().is_none());
        assert_eq!(host.metric(stats::SYNC_TAKEOVERS), Some(1));

        // A singleton that was only stalled comes back and stands down.
        singleton.on_tick();
        assert!(!singleton.active);
        assert!(logged_line("standing down").is_some());
    }

    // ---- usage flush ----

    use crate::usage::{self, Counts, Meta, Tally, UsageKey};

    fn usage_key(n: u16, outcome: u8) -> UsageKey {
        let mut key = [0u8; 16];
        key[..2].copy_from_slice(&n.to_le_bytes());
        UsageKey {
            org: keysync_contract::id::Id([0xab; 16]),
            key: keysync_contract::id::Id(key),
            outcome,
        }
    }

    /// A worker's tick adds `requests` requests of each of `keys`, and one unattributed.
    fn worker_counts(host: &FakeHost, keys: std::ops::Range<u16>, requests: u64) {
        let mut tally = Tally::default();
        for n in keys {
            for _ in 0..requests {
                tally.record(usage_key(n, 2), Counts::one(Some(20_000), 10, 20));
            }
        }
        tally.unattributed();
        usage::merge(host, &mut tally);
    }

    fn usage_calls(service: &SyncService<FakeHost>) -> Vec<Call> {
        service
            .host
            .calls
            .borrow()
            .iter()
            .filter(|c| c.method == keysync_api::REPORT_USAGE)
            .cloned()
            .collect()
    }

    fn usage_ok(accepted: u32) -> Reply {
        Ok(prost::Message::encode_to_vec(&proto::ReportUsageResponse {
            accepted,
        }))
    }

    /// Lets the flush interval pass, keysync answering the refresh.
    fn until_flush(service: &mut SyncService<FakeHost>) -> Call {
        let before = usage_calls(service).len();
        for _ in 0..100 {
            serve_refresh(service, &[key(1)], 10);
            tick_after(service, Duration::from_secs(1));
            if let Some(call) = usage_calls(service).get(before) {
                return call.clone();
            }
        }
        panic!("no usage flush");
    }

    #[test]
    fn the_flush_reports_cumulative_counters_and_totals() {
        let mut service = service(r#"{"role":"sync"}"#);
        service.on_tick();
        worker_counts(&service.host, 0..3, 2);
        let call = until_flush(&mut service);
        assert_eq!(call.cluster, "keysync");
        let request: proto::ReportUsageRequest = call.decode();
        let meta = Meta::read(&service.host).unwrap();
        assert!(meta.enabled);
        assert_eq!(request.instance_id, meta.instance_id.to_vec());
        assert_eq!(request.instance_id.len(), 16);
        assert!(request.cut_at_ms >= i64::try_from(NOW_MS).unwrap() + 10_000);
        assert_eq!(request.counters.len(), 3);
        let counter = &request.counters[0];
        assert_eq!(counter.org_id, vec![0xab; 16]);
        assert_eq!(counter.outcome, 2);
        assert_eq!(counter.requests, 2);
        assert_eq!(counter.duration_us, 40_000);
        assert_eq!(counter.duration_buckets, [0, 2, 0, 0]);
        assert_eq!((counter.request_bytes, counter.response_bytes), (20, 40));
        assert_eq!(request.unattributed_requests, 1);
        assert_eq!(request.dropped_requests, 0);
        service.on_response(call.token, usage_ok(3));
        assert_eq!(service.host.metric(stats::USAGE_FLUSHES_OK), Some(1));

        // Counters only grow: the next flush carries the new totals, not the increments.
        worker_counts(&service.host, 0..1, 5);
        let call = until_flush(&mut service);
        let request: proto::ReportUsageRequest = call.decode();
        let first = request
            .counters
            .iter()
            .find(|c| c.key_id == usage_key(0, 2).key.0.to_vec())
            .unwrap();
        assert_eq!(first.requests, 7);
        assert_eq!(request.unattributed_requests, 2);
    }

    #[test]
    fn a_failed_flush_is_retried_at_the_next_interval_with_the_newer_totals() {
        let mut service = service(r#"{"role":"sync","usage_flush_interval":"10s"}"#);
        service.on_tick();
        worker_counts(&service.host, 0..1, 1);
        let call = until_flush(&mut service);
        let sent_at = service.host.now_ms.get();
        service.on_response(call.token, Err(ApiError::Grpc(14, "unavailable".into())));
        assert_eq!(service.host.metric(stats::USAGE_FLUSH_FAILED), Some(1));
        assert!(logged_line("usage flush failed").is_some());
        worker_counts(&service.host, 0..1, 1);
        let retry = until_flush(&mut service);
        assert!(
            service.host.now_ms.get() >= sent_at + 10_000,
            "not before the next interval"
        );
        let request: proto::ReportUsageRequest = retry.decode();
        assert_eq!(request.counters[0].requests, 2, "nothing lost");
        assert_eq!(request.unattributed_requests, 2);

        // A call nobody answers is abandoned and counted as failed.
        for _ in 0..25 {
            tick_after(&mut service, Duration::from_secs(1));
        }
        assert!(service.host.cancelled.borrow().contains(&retry.token));
        assert_eq!(service.host.metric(stats::USAGE_FLUSH_FAILED), Some(2));
    }

    #[test]
    fn a_large_flush_is_sent_as_several_complete_calls() {
        let mut service = service(r#"{"role":"sync"}"#);
        service.on_tick();
        service.usage.as_mut().unwrap().set_max_per_call(50);
        worker_counts(&service.host, 0..200, 1);
        let first = until_flush(&mut service);
        let mut calls = vec![first];
        loop {
            let last = calls.last().unwrap().clone();
            service.on_response(last.token, usage_ok(1));
            let all = usage_calls(&service);
            if all.len() == calls.len() {
                break;
            }
            calls.push(all.last().unwrap().clone());
        }
        assert!(calls.len() >= 4, "{} calls", calls.len());
        let requests: Vec<proto::ReportUsageRequest> = calls.iter().map(Call::decode).collect();
        assert!(requests.iter().all(|r| r.counters.len() <= 50));
        assert!(requests
            .iter()
            .all(|r| r.cut_at_ms == requests[0].cut_at_ms));
        assert!(requests.iter().all(|r| r.unattributed_requests == 1));
        let mut keys: Vec<Vec<u8>> = requests
            .iter()
            .flat_map(|r| r.counters.iter().map(|c| c.key_id.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 200, "every counter, once");
        assert_eq!(service.host.metric(stats::USAGE_FLUSHES_OK), Some(1));
    }

    #[test]
    fn nothing_counted_nothing_sent() {
        let mut service = service(r#"{"role":"sync"}"#);
        service.on_tick();
        for _ in 0..30 {
            serve_refresh(&mut service, &[key(1)], 10);
            tick_after(&mut service, Duration::from_secs(1));
        }
        assert!(usage_calls(&service).is_empty());
    }

    #[test]
    fn metering_off_sends_nothing_and_tells_the_workers() {
        let mut service = service(r#"{"role":"sync","usage_flush_interval":"off"}"#);
        service.on_tick();
        worker_counts(&service.host, 0..3, 1);
        for _ in 0..30 {
            serve_refresh(&mut service, &[key(1)], 10);
            tick_after(&mut service, Duration::from_secs(1));
        }
        assert!(usage_calls(&service).is_empty());
        assert!(!Meta::read(&service.host).unwrap().enabled);
        assert!(
            service.host.shared.value(&usage::slot_name(0)).is_none(),
            "no slots either"
        );
    }

    #[test]
    fn a_reloaded_vm_is_the_same_instance_with_the_same_counters() {
        let host = FakeHost::at(NOW_MS);
        let PluginConfig::Sync(config) = PluginConfig::parse(br#"{"role":"sync"}"#).unwrap() else {
            panic!("sync");
        };
        let mut first = SyncService::singleton(&host, config.clone(), b"");
        first.on_tick();
        worker_counts(&host, 0..1, 3);
        let instance = Meta::read(&host).unwrap().instance_id;
        // The VM crashes (FAIL_RELOAD): a new one, with new memory, same shared data.
        drop(first);
        let mut reloaded = SyncService::singleton(&host, config, b"");
        let mut call = None;
        for _ in 0..40 {
            host.advance(Duration::from_secs(1));
            reloaded.on_tick();
            if let Some(running) = &reloaded.running {
                let token = running.token;
                let page = host
                    .calls
                    .borrow()
                    .iter()
                    .find(|c| c.token == token)
                    .cloned();
                if let Some(page) = page {
                    reloaded.on_response(token, page_for(&page, &[key(1)], 10));
                }
            }
            call = host
                .calls
                .borrow()
                .iter()
                .find(|c| c.method == keysync_api::REPORT_USAGE)
                .cloned();
            if call.is_some() {
                break;
            }
        }
        let request: proto::ReportUsageRequest = call.expect("a flush").decode();
        assert_eq!(request.instance_id, instance.to_vec());
        assert_eq!(request.counters[0].requests, 3);
    }
}
