//! The sync service: runs once per Envoy process (a singleton `envoy.bootstrap.wasm`
//! service sharing the filter's `vm_id`) and keeps the shared-data store in step with
//! keysync.
//!
//! Changes arrive on a `WatchKeys` stream that the service holds open to keysync: that
//! is how a revocation reaches every worker within a second. A full refresh runs at
//! start, every `refresh_interval` as a safety net that repairs drift, and whenever
//! keysync cannot replay what the stream missed. A broken stream is reopened with
//! backoff and resumes from the revision the store is complete up to.

use crate::clock;
use crate::config::SyncConfig;
use crate::key_store::{Change, KeyStore};
use crate::keysync_api;
use crate::local_rate_limit::{self, Subject};
use crate::record::KeyRecord;
use crate::refresh::{Progress, Refresh, Summary};
use crate::schedule::{millis, Backoff, Schedule};
use crate::shared_data::HostSharedData;
use crate::stats;
use crate::store_meta::StoreMeta;
use crate::watch::{Step, Watch};
use keysync_proto::v1 as proto;
use log::{info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashSet;
use std::time::Duration;

/// How often the service looks at its schedule.
pub const TICK: Duration = Duration::from_millis(250);

/// Ceiling of the stream's reconnect backoff: reopening a stream is cheap, and while it
/// is down changes wait for the next refresh.
const MAX_STREAM_BACKOFF: Duration = Duration::from_secs(5);

pub struct SyncService {
    config: SyncConfig,
    store: KeyStore<HostSharedData>,
    schedule: Schedule,
    running: Option<Running>,
    /// A refresh is wanted now (keysync asked for one, or the stream went wrong).
    resync_wanted: bool,
    /// Every change up to this revision is in the store; `None` before the first refresh.
    complete: Option<u64>,
    stream: Stream,
    stream_backoff: Backoff,
    /// Rate-limit subjects whose counters exist (see `local_rate_limit`).
    counters: HashSet<Subject>,
    metrics: Metrics,
}

struct Running {
    refresh: Refresh,
    /// The page request in flight.
    token: u32,
    sent_at_ms: u64,
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
    },
}

struct Metrics {
    refresh_ok: Option<u32>,
    refresh_failed: Option<u32>,
    keys_loaded: Option<u32>,
    store_revision: Option<u32>,
    stream_connected: Option<u32>,
    seconds_since_sync: Option<u32>,
    resyncs: Option<u32>,
    stream_changes: Option<u32>,
}

impl SyncService {
    pub fn new(config: SyncConfig) -> Self {
        let schedule = Schedule::new(config.refresh_interval, config.max_retry_interval);
        let stream_backoff = Backoff::new(config.max_retry_interval.min(MAX_STREAM_BACKOFF));
        SyncService {
            config,
            store: KeyStore::new(HostSharedData),
            schedule,
            running: None,
            resync_wanted: false,
            complete: None,
            stream: Stream::Down { retry_at_ms: 0 },
            stream_backoff,
            counters: HashSet::new(),
            metrics: Metrics {
                refresh_ok: stats::define(MetricType::Counter, stats::REFRESH_OK),
                refresh_failed: stats::define(MetricType::Counter, stats::REFRESH_FAILED),
                keys_loaded: stats::define(MetricType::Gauge, stats::KEYS_LOADED),
                store_revision: stats::define(MetricType::Gauge, stats::STORE_REVISION),
                stream_connected: stats::define(MetricType::Gauge, stats::STREAM_CONNECTED),
                seconds_since_sync: stats::define(MetricType::Gauge, stats::SECONDS_SINCE_SYNC),
                resyncs: stats::define(MetricType::Counter, stats::RESYNCS),
                stream_changes: stats::define(MetricType::Counter, stats::STREAM_CHANGES),
            },
        }
    }

    pub fn on_tick(&mut self) {
        let now = clock::now_unix_ms();
        self.tick_refresh(now);
        self.tick_stream(now);
        let silent = self.store.meta().silent_for(now / 1000);
        stats::record(self.metrics.seconds_since_sync, silent.unwrap_or(0));
    }

    fn tick_refresh(&mut self, now: u64) {
        if let Some(running) = &self.running {
            // Envoy answers every call, if only with a timeout; this is a last resort.
            let deadline = millis(self.config.request_timeout).saturating_mul(2);
            if now.saturating_sub(running.sent_at_ms) > deadline {
                let token = running.token;
                self.running = None;
                let _ = hostcalls::cancel_grpc_call(token);
                self.refresh_failed(now, "no answer from keysync");
            }
            return;
        }
        if self.resync_wanted || self.schedule.is_due(now) {
            self.resync_wanted = false;
            let refresh = Refresh::new(self.config.page_size);
            let request = refresh.first_request();
            let stream_up = self.stream_connected();
            self.send_page_request(refresh, &request, now, stream_up);
        }
    }

    fn tick_stream(&mut self, now: u64) {
        if !self.config.watch {
            return;
        }
        match &self.stream {
            Stream::Open {
                token,
                last_message_ms,
                ..
            } => {
                let idle = now.saturating_sub(*last_message_ms);
                if idle > millis(self.config.watch_idle_timeout) {
                    keysync_api::cancel_stream(*token);
                    self.stream_down(now, &format!("no message for {}s", idle / 1000));
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

    pub fn on_response(&mut self, token: u32, status: u32, size: usize) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        if running.token != token {
            self.running = Some(running);
            return;
        }
        let now = clock::now_unix_ms();
        let page = match keysync_api::response::<proto::ListKeysResponse>(status, size) {
            Ok(page) => page,
            Err(e) => return self.refresh_failed(now, &e.to_string()),
        };
        let records: Vec<KeyRecord> = page
            .keys
            .iter()
            .filter_map(|k| KeyRecord::from_proto(k).ok())
            .collect();
        self.ensure_counters(&records);
        match running.refresh.apply(&self.store, page, now / 1000) {
            Ok(Progress::More(request)) => {
                let stream_up = running.stream_up_throughout;
                self.send_page_request(running.refresh, &request, now, stream_up)
            }
            Ok(Progress::Done(summary)) => {
                self.refresh_succeeded(now, &running, summary);
            }
            Err(e) => self.refresh_failed(now, &e.to_string()),
        }
    }

    fn send_page_request(
        &mut self,
        refresh: Refresh,
        request: &proto::ListKeysRequest,
        now: u64,
        stream_up_throughout: bool,
    ) {
        match keysync_api::dispatch(
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
        self.touch_meta(now);
        stats::increment(self.metrics.refresh_ok);
        stats::record(self.metrics.keys_loaded, summary.total);
        stats::record(self.metrics.store_revision, self.store.meta().revision);
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
        stats::increment(self.metrics.refresh_failed);
    }

    // ---- watch stream ----

    fn open_stream(&mut self, after: u64, now: u64) {
        let request = proto::WatchKeysRequest {
            after_revision: after,
        };
        match keysync_api::open_stream(
            &self.config.keysync_cluster,
            keysync_api::WATCH_KEYS,
            &request,
        ) {
            Ok(token) => {
                self.stream = Stream::Open {
                    token,
                    watch: Watch::new(after),
                    last_message_ms: now,
                    connected: false,
                };
            }
            Err(e) => self.stream_down(now, &e.to_string()),
        }
    }

    pub fn on_stream_message(&mut self, token: u32, size: usize) {
        let now = clock::now_unix_ms();
        let Stream::Open {
            token: open,
            watch,
            last_message_ms,
            connected,
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
            stats::record(self.metrics.stream_connected, 1);
        }
        let step = keysync_api::stream_message::<proto::KeyChanges>(size)
            .map_err(|e| e.to_string())
            .and_then(|message| watch.on_message(message).map_err(|e| e.to_string()));
        let complete = watch.complete();
        match step {
            Ok(Step::Apply { revision, changes }) => {
                self.apply(revision, &changes, now);
                self.complete = Some(complete);
            }
            Ok(Step::Heartbeat) => {
                self.complete = Some(complete);
                self.touch_meta(now);
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

    /// Counters exist before workers can see the keys that count on them.
    fn ensure_counters(&mut self, records: &[KeyRecord]) {
        for (subject, _) in records.iter().filter_map(Subject::of) {
            if self.counters.contains(&subject) {
                continue;
            }
            match local_rate_limit::ensure_counter(&HostSharedData, &subject) {
                Ok(()) => {
                    self.counters.insert(subject);
                }
                Err(e) => warn!("cannot create a rate-limit counter: {e:?}"),
            }
        }
    }

    fn apply(&mut self, revision: u64, changes: &[Change], now: u64) {
        let upserts: Vec<KeyRecord> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Upsert(record) => Some(*record),
                Change::Remove(_) => None,
            })
            .collect();
        self.ensure_counters(&upserts);
        // Announce the revision before touching buckets (see `KeyStore::cache_lookup`).
        let mut meta = self.store.meta();
        meta.revision = meta.revision.max(revision);
        meta.heard_at = now / 1000;
        if let Err(e) = self.store.write_meta(&meta) {
            warn!("cannot write the store metadata: {e}");
        }
        match self.store.apply_changes(changes) {
            Ok(diff) => {
                info!(
                    "watch applied revision {revision}: updated={}, removed={}",
                    diff.updated, diff.removed
                );
                stats::add(self.metrics.stream_changes, changes.len() as u64);
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
        stats::record(self.metrics.store_revision, meta.revision);
    }

    pub fn on_stream_close(&mut self, token: u32, status: u32) {
        if matches!(self.stream, Stream::Open { token: open, .. } if open == token) {
            let now = clock::now_unix_ms();
            self.stream_down(now, &format!("closed with gRPC status {status}"));
        }
    }

    fn resync(&mut self, token: u32, now: u64) {
        keysync_api::cancel_stream(token);
        stats::increment(self.metrics.resyncs);
        self.stream = Stream::Down { retry_at_ms: now };
        stats::record(self.metrics.stream_connected, 0);
        self.resync_wanted = true;
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
        stats::record(self.metrics.stream_connected, 0);
        if let Some(running) = &mut self.running {
            running.stream_up_throughout = false;
        }
    }

    /// Records that keysync was heard from: workers judge staleness by it.
    fn touch_meta(&self, now: u64) {
        let meta = StoreMeta {
            heard_at: now / 1000,
            ..self.store.meta()
        };
        if let Err(e) = self.store.write_meta(&meta) {
            warn!("cannot write the store metadata: {e}");
        }
    }
}
