//! The metrics of usage metering: `ReportUsage` flushes by result, the requests they
//! added to the rollup, the requests refused (by [`crate::usage::screening`]'s reason),
//! and how long storing them took.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::screening::{Refusal, Refused};
use crate::metric_label::label_values;

/// How a `ReportUsage` flush ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum UsageFlushResult {
    /// Stored (or nothing new in it).
    Ok,
    /// Refused as malformed (`INVALID_ARGUMENT`).
    Invalid,
    /// Not stored: PostgreSQL failed or could not be reached (`UNAVAILABLE`).
    Unavailable,
}

label_values!(UsageFlushResult { Ok => "ok", Invalid => "invalid", Unavailable => "unavailable" });

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UsageFlushLabels {
    result: UsageFlushResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: Refusal,
}

/// The usage metering metrics; cheap to update from any task.
#[derive(Debug)]
pub struct UsageMetrics {
    flushes: Family<UsageFlushLabels, Counter>,
    requests: Counter,
    refused: Family<RefusalLabels, Counter>,
    flush_duration: Histogram,
}

impl UsageMetrics {
    /// The metrics, registered in `registry`, every label combination at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = UsageMetrics {
            flushes: Family::default(),
            requests: Counter::default(),
            refused: Family::default(),
            // One transaction of a few statements: milliseconds, up to seconds for the
            // largest flushes.
            flush_duration: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
        };
        registry.register(
            "keysync_usage_flushes",
            "ReportUsage flushes by result (ok: stored; invalid: refused as malformed; \
             unavailable: PostgreSQL failed, nothing stored, the gateway sends it again)",
            metrics.flushes.clone(),
        );
        registry.register(
            "keysync_usage_requests",
            "Requests added to the usage rollup (the increments of stored flushes)",
            metrics.requests.clone(),
        );
        registry.register(
            "keysync_usage_refused_requests",
            "Requests of stored flushes that were not added to the usage rollup, by reason \
             (unknown_key: no such key; foreign_org: the key is another organization's; \
             over_ceiling: more than a gateway serves, KEYSYNC_GATEWAY_MAX_RATE)",
            metrics.refused.clone(),
        );
        registry.register(
            "keysync_usage_flush_duration_seconds",
            "Duration of ReportUsage flushes (checking and storing)",
            metrics.flush_duration.clone(),
        );
        for result in [
            UsageFlushResult::Ok,
            UsageFlushResult::Invalid,
            UsageFlushResult::Unavailable,
        ] {
            // The guard is only needed to create the series, not to hold it.
            drop(metrics.flushes.get_or_create(&UsageFlushLabels { result }));
        }
        for reason in Refusal::ALL {
            drop(metrics.refused.get_or_create(&RefusalLabels { reason }));
        }
        metrics
    }

    /// Records one `ReportUsage` flush that added `requests` to the rollup.
    pub fn record_flush(&self, result: UsageFlushResult, requests: u64, duration: Duration) {
        self.flushes
            .get_or_create(&UsageFlushLabels { result })
            .inc();
        self.requests.inc_by(requests);
        self.flush_duration.observe(duration.as_secs_f64());
    }

    /// Counts the requests a stored flush had refused.
    pub fn record_refused(&self, refused: &Refused) {
        for reason in Refusal::ALL {
            let requests = u64::try_from(refused.get(reason)).unwrap_or(0);
            if requests > 0 {
                self.refused
                    .get_or_create(&RefusalLabels { reason })
                    .inc_by(requests);
            }
        }
    }
}
