//! The metrics of webhook deliveries: attempts by result, deliveries given up after the
//! retry window, events found for the outbox (key expiries), and attempts in progress.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metric_label::label_values;

/// How one attempt ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx answer: delivered.
    Delivered,
    /// Another status: retried.
    Rejected,
    /// No answer within `KEYSYNC_WEBHOOK_TIMEOUT`.
    Timeout,
    /// The connection or the exchange failed (refused, reset, TLS).
    Error,
    /// The host resolved to an address the webhook may not reach (or not at all).
    Address,
}

impl AttemptResult {
    pub const ALL: [AttemptResult; 5] = [
        AttemptResult::Delivered,
        AttemptResult::Rejected,
        AttemptResult::Timeout,
        AttemptResult::Error,
        AttemptResult::Address,
    ];
}

label_values!(AttemptResult {
    Delivered => "delivered",
    Rejected => "rejected",
    Timeout => "timeout",
    Error => "error",
    Address => "address",
});

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    result: AttemptResult,
}

/// The webhook metrics; cheap to update from any task.
#[derive(Debug)]
pub struct WebhookMetrics {
    attempts: Family<AttemptLabels, Counter>,
    failed: Counter,
    in_flight: Gauge,
    expiries: Counter,
}

impl WebhookMetrics {
    /// The metrics, registered in `registry`, every label combination at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = WebhookMetrics {
            attempts: Family::default(),
            failed: Counter::default(),
            in_flight: Gauge::default(),
            expiries: Counter::default(),
        };
        registry.register(
            "keysync_webhook_attempts",
            "Webhook delivery attempts by result (delivered: a 2xx answer; rejected: another \
             status; timeout; error: the connection failed; address: the host resolved to \
             an address the webhook may not reach, or to none)",
            metrics.attempts.clone(),
        );
        registry.register(
            "keysync_webhook_failed_deliveries",
            "Webhook deliveries given up: still failing when KEYSYNC_WEBHOOK_RETRY_FOR ran out",
            metrics.failed.clone(),
        );
        registry.register(
            "keysync_webhook_attempts_in_flight",
            "Webhook delivery attempts in progress in this keysync",
            metrics.in_flight.clone(),
        );
        registry.register(
            "keysync_webhook_key_expiries",
            "Key expiries this keysync found and announced (key.expired), once a key",
            metrics.expiries.clone(),
        );
        for result in AttemptResult::ALL {
            drop(metrics.attempts.get_or_create(&AttemptLabels { result }));
        }
        metrics
    }

    pub fn record_attempt(&self, result: AttemptResult) {
        self.attempts.get_or_create(&AttemptLabels { result }).inc();
    }

    pub fn record_given_up(&self) {
        self.failed.inc();
    }

    pub fn set_in_flight(&self, attempts: usize) {
        self.in_flight
            .set(i64::try_from(attempts).unwrap_or(i64::MAX));
    }

    pub fn record_expiries(&self, keys: u64) {
        self.expiries.inc_by(keys);
    }
}
