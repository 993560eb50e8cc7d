//! The metrics of the global rate limit: `ShouldRateLimit` calls by result and their
//! durations, and whether Redis answers.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::metric_label::label_values;

/// How a `ShouldRateLimit` call ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RateLimitResult {
    /// Counted, within every budget (or nothing to count).
    Ok,
    /// Counted, over a budget.
    OverLimit,
    /// Not counted: Redis failed (or failed moments ago); answered by the failure mode.
    Error,
}

label_values!(RateLimitResult { Ok => "ok", OverLimit => "over_limit", Error => "error" });

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    result: RateLimitResult,
}

/// The global rate limit's metrics; cheap to update from any task.
#[derive(Debug)]
pub struct RateLimitMetrics {
    requests: Family<RateLimitLabels, Counter>,
    redis_errors: Counter,
    redis_up: Gauge,
    duration: Histogram,
}

impl RateLimitMetrics {
    /// The metrics, registered in `registry`, every label combination at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = RateLimitMetrics {
            requests: Family::default(),
            redis_errors: Counter::default(),
            redis_up: Gauge::default(),
            // A Redis round trip on loopback is ~100 us; calls are cut at 250 ms.
            duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        };
        registry.register(
            "keysync_ratelimit_requests",
            "ShouldRateLimit calls by result (error: Redis failed, answered by the failure mode)",
            metrics.requests.clone(),
        );
        registry.register(
            "keysync_ratelimit_redis_errors",
            "Failed Redis calls and PINGs of the rate-limit service",
            metrics.redis_errors.clone(),
        );
        registry.register(
            "keysync_ratelimit_redis_up",
            "1 when the last Redis call or PING of the rate-limit service succeeded",
            metrics.redis_up.clone(),
        );
        registry.register(
            "keysync_ratelimit_duration_seconds",
            "Duration of ShouldRateLimit calls",
            metrics.duration.clone(),
        );
        for result in [
            RateLimitResult::Ok,
            RateLimitResult::OverLimit,
            RateLimitResult::Error,
        ] {
            // The guard is only needed to create the series, not to hold it.
            drop(metrics.requests.get_or_create(&RateLimitLabels { result }));
        }
        metrics
    }

    /// Records one `ShouldRateLimit` call.
    pub fn record_call(&self, result: RateLimitResult, duration: Duration) {
        self.requests
            .get_or_create(&RateLimitLabels { result })
            .inc();
        self.duration.observe(duration.as_secs_f64());
    }

    pub fn record_redis_error(&self) {
        self.redis_errors.inc();
    }

    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }
}
