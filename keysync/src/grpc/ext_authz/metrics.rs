//! The metrics of ext_authz `Check` calls: how each ended, and how long it took.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::metric_label::label_values;

/// How an ext_authz `Check` ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ExtAuthzResult {
    /// Forwarded with the key's identity.
    Allowed,
    /// Refused: no credential (401).
    Missing,
    /// Refused: unknown, revoked, expired or malformed key (403).
    Invalid,
    /// Refused: a valid key that lacks a scope the route requires (403).
    InsufficientScope,
    /// Refused: a valid key used from outside its allowlist (403).
    IpNotAllowed,
    /// Not decided: no key snapshot yet (`UNAVAILABLE`; Envoy answers 503).
    Unavailable,
    /// A readiness check (the gateway's `/health`, its probe port's `/ready`) answered:
    /// the key snapshot is loaded. One before is counted `Unavailable`.
    Ready,
}

label_values!(ExtAuthzResult {
    Allowed => "allowed",
    Missing => "missing",
    Invalid => "invalid",
    InsufficientScope => "insufficient_scope",
    IpNotAllowed => "ip_not_allowed",
    Unavailable => "unavailable",
    Ready => "ready",
});

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExtAuthzLabels {
    result: ExtAuthzResult,
}

/// The ext_authz metrics; cheap to update from any task.
#[derive(Debug)]
pub struct ExtAuthzMetrics {
    checks: Family<ExtAuthzLabels, Counter>,
    duration: Histogram,
}

impl ExtAuthzMetrics {
    /// The metrics, registered in `registry`, every label combination at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ExtAuthzMetrics {
            checks: Family::default(),
            // From memory in tens of microseconds; a new key waits for a catch-up (up
            // to 300 ms).
            duration: Histogram::new(exponential_buckets(0.000_025, 2.0, 16)),
        };
        registry.register(
            "keysync_ext_authz_checks",
            "ext_authz Check calls by result (unavailable: no key snapshot yet; ready: a readiness check answered)",
            metrics.checks.clone(),
        );
        registry.register(
            "keysync_ext_authz_duration_seconds",
            "Duration of ext_authz Check calls",
            metrics.duration.clone(),
        );
        for result in [
            ExtAuthzResult::Allowed,
            ExtAuthzResult::Missing,
            ExtAuthzResult::Invalid,
            ExtAuthzResult::InsufficientScope,
            ExtAuthzResult::IpNotAllowed,
            ExtAuthzResult::Unavailable,
            ExtAuthzResult::Ready,
        ] {
            // The guard is only needed to create the series, not to hold it.
            drop(metrics.checks.get_or_create(&ExtAuthzLabels { result }));
        }
        metrics
    }

    /// Records one ext_authz `Check` call.
    pub fn record_check(&self, result: ExtAuthzResult, duration: Duration) {
        self.checks.get_or_create(&ExtAuthzLabels { result }).inc();
        self.duration.observe(duration.as_secs_f64());
    }
}
