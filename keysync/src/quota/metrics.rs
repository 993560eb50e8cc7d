//! The metrics of monthly quotas: `AcquireQuota` calls by result, the requests granted
//! in leases, the requests claims asked for and were refused (by reason), and the alerts
//! raised as use crosses 80% and 100%.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::metric_label::label_values;

/// How an `AcquireQuota` call ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum QuotaCallResult {
    Ok,
    /// Refused as malformed (`INVALID_ARGUMENT`).
    Invalid,
    /// PostgreSQL failed (`UNAVAILABLE`): nothing granted.
    Unavailable,
}

/// Why part of a claim was refused.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ClaimRefusal {
    /// No organization or key with the claim's id: nothing to grant.
    UnknownSubject,
    /// More than one gateway could admit in a lease's life (`KEYSYNC_GATEWAY_MAX_RATE`):
    /// asked for less.
    OverCeiling,
}

impl ClaimRefusal {
    pub const ALL: [ClaimRefusal; 2] = [ClaimRefusal::UnknownSubject, ClaimRefusal::OverCeiling];
}

/// A quota alert's threshold, in percent.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum QuotaThreshold {
    Eighty,
    Hundred,
}

label_values!(QuotaCallResult { Ok => "ok", Invalid => "invalid", Unavailable => "unavailable" });
label_values!(QuotaThreshold { Eighty => "80", Hundred => "100" });
label_values!(ClaimRefusal {
    UnknownSubject => "unknown_subject",
    OverCeiling => "over_ceiling",
});

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClaimRefusalLabels {
    reason: ClaimRefusal,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaCallLabels {
    result: QuotaCallResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaAlertLabels {
    threshold: QuotaThreshold,
}

/// The quota metrics; cheap to update from any task.
#[derive(Debug)]
pub struct QuotaMetrics {
    calls: Family<QuotaCallLabels, Counter>,
    granted: Counter,
    refused: Family<ClaimRefusalLabels, Counter>,
    alerts: Family<QuotaAlertLabels, Counter>,
}

impl QuotaMetrics {
    /// The metrics, registered in `registry`, every label combination at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = QuotaMetrics {
            calls: Family::default(),
            granted: Counter::default(),
            refused: Family::default(),
            alerts: Family::default(),
        };
        registry.register(
            "keysync_quota_calls",
            "AcquireQuota calls by result (ok; invalid: refused as malformed; unavailable: \
             PostgreSQL failed, nothing granted)",
            metrics.calls.clone(),
        );
        registry.register(
            "keysync_quota_granted_requests",
            "Requests granted to gateways in quota leases",
            metrics.granted.clone(),
        );
        registry.register(
            "keysync_quota_refused_requests",
            "Requests AcquireQuota claims asked for and were refused, by reason \
             (unknown_subject: no such organization or key; over_ceiling: more than a \
             gateway admits in a lease's life, KEYSYNC_GATEWAY_MAX_RATE)",
            metrics.refused.clone(),
        );
        registry.register(
            "keysync_quota_alerts",
            "Organizations and keys whose use crossed 80% or 100% of their quota (once a \
             period each)",
            metrics.alerts.clone(),
        );
        // The guards are only needed to create the series, not to hold them.
        for result in [
            QuotaCallResult::Ok,
            QuotaCallResult::Invalid,
            QuotaCallResult::Unavailable,
        ] {
            drop(metrics.calls.get_or_create(&QuotaCallLabels { result }));
        }
        for reason in ClaimRefusal::ALL {
            drop(
                metrics
                    .refused
                    .get_or_create(&ClaimRefusalLabels { reason }),
            );
        }
        for threshold in [QuotaThreshold::Eighty, QuotaThreshold::Hundred] {
            drop(
                metrics
                    .alerts
                    .get_or_create(&QuotaAlertLabels { threshold }),
            );
        }
        metrics
    }

    /// Records one `AcquireQuota` call that granted `granted` requests.
    pub fn record_call(&self, result: QuotaCallResult, granted: u64) {
        self.calls.get_or_create(&QuotaCallLabels { result }).inc();
        self.granted.inc_by(granted);
    }

    /// Counts `requests` of claims refused for `reason`.
    pub fn record_refused(&self, reason: ClaimRefusal, requests: u64) {
        if requests > 0 {
            self.refused
                .get_or_create(&ClaimRefusalLabels { reason })
                .inc_by(requests);
        }
    }

    pub fn record_alert(&self, threshold: QuotaThreshold) {
        self.alerts
            .get_or_create(&QuotaAlertLabels { threshold })
            .inc();
    }
}
