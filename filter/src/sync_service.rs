//! The sync service: runs once per Envoy process (a singleton `envoy.bootstrap.wasm`
//! service sharing the filter's `vm_id`) and keeps the shared-data store in step with
//! keysync through periodic full refreshes.

use crate::clock;
use crate::config::SyncConfig;
use crate::key_store::KeyStore;
use crate::keysync_api::{self, ApiError};
use crate::refresh::{Progress, Refresh, Summary};
use crate::schedule::Schedule;
use crate::shared_data::HostSharedData;
use crate::stats;
use keysync_proto::v1 as proto;
use log::{info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::time::Duration;

/// How often the service looks at its schedule.
pub const TICK: Duration = Duration::from_millis(250);

pub struct SyncService {
    config: SyncConfig,
    store: KeyStore<HostSharedData>,
    schedule: Schedule,
    running: Option<Running>,
    metrics: Metrics,
}

struct Running {
    refresh: Refresh,
    /// The page request in flight.
    token: u32,
    sent_at_ms: u64,
}

struct Metrics {
    refresh_ok: Option<u32>,
    refresh_failed: Option<u32>,
    keys_loaded: Option<u32>,
    store_revision: Option<u32>,
}

impl SyncService {
    pub fn new(config: SyncConfig) -> Self {
        let schedule = Schedule::new(config.refresh_interval, config.max_retry_interval);
        SyncService {
            config,
            store: KeyStore::new(HostSharedData),
            schedule,
            running: None,
            metrics: Metrics {
                refresh_ok: stats::define(MetricType::Counter, stats::REFRESH_OK),
                refresh_failed: stats::define(MetricType::Counter, stats::REFRESH_FAILED),
                keys_loaded: stats::define(MetricType::Gauge, stats::KEYS_LOADED),
                store_revision: stats::define(MetricType::Gauge, stats::STORE_REVISION),
            },
        }
    }

    pub fn on_tick(&mut self) {
        let now = clock::now_unix_ms();
        if let Some(running) = &self.running {
            // Envoy answers every call, if only with a timeout; this is a last resort.
            let deadline = millis(self.config.request_timeout).saturating_mul(2);
            if now.saturating_sub(running.sent_at_ms) > deadline {
                let token = running.token;
                self.running = None;
                let _ = hostcalls::cancel_grpc_call(token);
                self.fail(now, "no answer from keysync");
            }
            return;
        }
        if self.schedule.is_due(now) {
            let refresh = Refresh::new(self.config.page_size);
            let request = refresh.first_request();
            self.send(refresh, &request, now);
        }
    }

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
            Err(e) => return self.fail(now, &e.to_string()),
        };
        match running.refresh.apply(&self.store, page, now / 1000) {
            Ok(Progress::More(request)) => self.send(running.refresh, &request, now),
            Ok(Progress::Done(summary)) => self.succeeded(now, summary),
            Err(e) => self.fail(now, &e.to_string()),
        }
    }

    fn send(&mut self, refresh: Refresh, request: &proto::ListKeysRequest, now: u64) {
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
                })
            }
            Err(e @ ApiError::Dispatch(_)) => self.fail(now, &e.to_string()),
            Err(e) => self.fail(now, &e.to_string()),
        }
    }

    fn succeeded(&mut self, now: u64, summary: Summary) {
        info!(
            "cache refresh complete: updated={}, removed={}, total={}",
            summary.updated, summary.removed, summary.total
        );
        self.schedule.succeeded(now);
        stats::increment(self.metrics.refresh_ok);
        stats::record(self.metrics.keys_loaded, summary.total);
        stats::record(self.metrics.store_revision, self.store.meta().revision);
    }

    fn fail(&mut self, now: u64, reason: &str) {
        let delay = self.schedule.failed(now);
        warn!(
            "cache refresh failed: {reason}; retry {} in {}s; the last known keys keep serving",
            self.schedule.consecutive_failures(),
            delay.as_secs_f32()
        );
        stats::increment(self.metrics.refresh_failed);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
