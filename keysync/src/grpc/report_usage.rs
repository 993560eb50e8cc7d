//! `ReportUsage` on keysync's side: a gateway's usage flush checked
//! ([`crate::usage::flush`]), screened and stored ([`crate::usage::screening`],
//! [`crate::usage::store`]; what was refused is counted and logged) and, once committed,
//! handed to the usage export when there is one ([`crate::usage::export`], which never
//! makes the answer wait); the quota alerts the flush raised are told
//! ([`acquire_quota::announce`]) and exported as events.

use std::sync::Arc;
use std::time::Instant;

use keysync_proto::v1::{ReportUsageRequest, ReportUsageResponse};
use tonic::Status;
use tracing::{debug, warn};

use crate::database::describe_sqlx;
use crate::grpc::acquire_quota;
use crate::log_throttle::{held_back_note, LogThrottle, LOG_PERIOD};
use crate::quota::metrics::QuotaMetrics;
use crate::usage::cloud_event::usage_event;
use crate::usage::export::Exporter;
use crate::usage::flush::Flush;
use crate::usage::metrics::{UsageFlushResult, UsageMetrics};
use crate::usage::screening::Refused;
use crate::usage::store::UsageStore;

/// Takes usage flushes; cheap to clone, all state is shared.
#[derive(Debug, Clone)]
pub struct UsageReports {
    /// `None`: no database, every well-formed flush is `UNAVAILABLE`.
    storing: Option<Storing>,
    metrics: Arc<UsageMetrics>,
    /// Where the alerts a flush raised are counted.
    quota_metrics: Arc<QuotaMetrics>,
}

/// Where usage flushes go, and the log lines they may cause.
#[derive(Debug, Clone)]
struct Storing {
    store: UsageStore,
    /// Where the increments of stored flushes are exported, if anywhere.
    export: Option<Exporter>,
    /// One line a period for flushes that failed to store, for counters gone back, and
    /// for refused increments.
    failures: Arc<LogThrottle>,
    went_back: Arc<LogThrottle>,
    refusals: Arc<LogThrottle>,
}

impl UsageReports {
    /// Flushes are checked and counted, but not stored: see [`UsageReports::storing`].
    pub fn new(metrics: Arc<UsageMetrics>, quota_metrics: Arc<QuotaMetrics>) -> Self {
        UsageReports {
            storing: None,
            metrics,
            quota_metrics,
        }
    }

    /// Stores flushes in `store`.
    pub fn storing(mut self, store: UsageStore) -> Self {
        self.storing = Some(Storing {
            store,
            export: None,
            failures: Arc::new(LogThrottle::new(LOG_PERIOD)),
            went_back: Arc::new(LogThrottle::new(LOG_PERIOD)),
            refusals: Arc::new(LogThrottle::new(LOG_PERIOD)),
        });
        self
    }

    /// Hands the increments of stored flushes to `exporter` (after
    /// [`UsageReports::storing`]; without a store there is nothing to export).
    pub fn exporting(mut self, exporter: Exporter) -> Self {
        if let Some(storing) = &mut self.storing {
            storing.export = Some(exporter);
        }
        self
    }

    /// Answers one `ReportUsage` call, and counts it.
    pub async fn report(
        &self,
        request: &ReportUsageRequest,
    ) -> Result<ReportUsageResponse, Status> {
        let started = Instant::now();
        let (answer, result, requests) = self.check_and_store(request).await;
        self.metrics
            .record_flush(result, requests, started.elapsed());
        answer
    }

    /// Checks and stores one flush; the metric's result and the requests it added.
    async fn check_and_store(
        &self,
        request: &ReportUsageRequest,
    ) -> (Result<ReportUsageResponse, Status>, UsageFlushResult, u64) {
        let flush = match Flush::check(request, chrono::Utc::now()) {
            Ok(flush) => flush,
            Err(error) => {
                let status = Status::invalid_argument(error.to_string());
                return (Err(status), UsageFlushResult::Invalid, 0);
            }
        };
        let Some(usage) = &self.storing else {
            let status = Status::unavailable("usage metering has no database");
            return (Err(status), UsageFlushResult::Unavailable, 0);
        };
        match usage.store.record(&flush).await {
            Ok(recorded) => {
                if recorded.went_back > 0 {
                    if let Some(held_back) = usage.went_back.admit(Instant::now()) {
                        warn!(
                            "usage flush of instance {} has {} counters lower than already \
                             stored (a delayed flush, or an instance id used twice): nothing \
                             added for them{}",
                            flush.instance_id,
                            recorded.went_back,
                            held_back_note(held_back)
                        );
                    }
                }
                if recorded.refused.any() {
                    self.metrics.record_refused(&recorded.refused);
                    if let Some(held_back) = usage.refusals.admit(Instant::now()) {
                        let Refused {
                            unknown_key,
                            foreign_org,
                            over_ceiling,
                        } = recorded.refused;
                        warn!(
                            "usage flush of instance {}: requests refused: {unknown_key} of \
                             unknown keys, {foreign_org} under another organization than their \
                             key's, {over_ceiling} beyond what a gateway serves \
                             (KEYSYNC_GATEWAY_MAX_RATE){}",
                            flush.instance_id,
                            held_back_note(held_back)
                        );
                    }
                }
                acquire_quota::announce(&recorded.quota_crossings, &self.quota_metrics);
                if let Some(exporter) = &usage.export {
                    let now = chrono::Utc::now();
                    exporter.publish_all(
                        recorded
                            .quota_crossings
                            .iter()
                            .map(|crossing| acquire_quota::alert_event(crossing, now)),
                    );
                }
                debug!(
                    "usage flush: instance={} counters={} grown={} requests={}",
                    flush.instance_id, recorded.counters, recorded.grown, recorded.requests
                );
                // Committed: only now may the increments leave keysync. Never waits.
                if let Some(exporter) = &usage.export {
                    exporter.publish_all(recorded.increments.iter().map(|increment| {
                        usage_event(
                            flush.instance_id,
                            recorded.window_start,
                            recorded.window_end,
                            increment,
                            recorded
                                .external_ids
                                .get(&increment.org_id)
                                .map(String::as_str),
                        )
                    }));
                }
                let response = ReportUsageResponse {
                    accepted: u32::try_from(recorded.counters).unwrap_or(u32::MAX),
                };
                let requests = u64::try_from(recorded.requests).unwrap_or(0);
                (Ok(response), UsageFlushResult::Ok, requests)
            }
            Err(error) => {
                let cause = describe_sqlx(&error);
                if let Some(held_back) = usage.failures.admit(Instant::now()) {
                    warn!(
                        "usage flush not stored (the gateway sends it again): {cause}{}",
                        held_back_note(held_back)
                    );
                }
                // The cause stays in keysync's log: database text is not the caller's.
                let status =
                    Status::unavailable("cannot store usage now; send the counters again later");
                (Err(status), UsageFlushResult::Unavailable, 0)
            }
        }
    }
}
