//! The metrics of the usage export to Kafka: events published and dropped, batches that
//! failed, and the backlog.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The usage export's metrics; cheap to update from any task.
#[derive(Debug)]
pub struct ExportMetrics {
    published: Counter,
    dropped: Counter,
    failed_batches: Counter,
    backlog: Gauge,
}

impl ExportMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ExportMetrics {
            published: Counter::default(),
            dropped: Counter::default(),
            failed_batches: Counter::default(),
            backlog: Gauge::default(),
        };
        registry.register(
            "keysync_usage_export_published",
            "Events published to Kafka by the usage export (a batch sent again after a \
             failure counts again)",
            metrics.published.clone(),
        );
        registry.register(
            "keysync_usage_export_dropped",
            "Events the usage export dropped because its backlog was full (Kafka slow or \
             down); the rollups in PostgreSQL still have them",
            metrics.dropped.clone(),
        );
        registry.register(
            "keysync_usage_export_failed_batches",
            "Batches the usage export failed to publish (each is sent again after a backoff)",
            metrics.failed_batches.clone(),
        );
        registry.register(
            "keysync_usage_export_backlog",
            "Events held by the usage export, waiting or being sent (at most \
             KEYSYNC_USAGE_EXPORT_BACKLOG)",
            metrics.backlog.clone(),
        );
        metrics
    }

    pub fn record_published(&self, events: usize) {
        self.published
            .inc_by(u64::try_from(events).unwrap_or(u64::MAX));
    }

    pub fn record_dropped(&self, events: usize) {
        self.dropped
            .inc_by(u64::try_from(events).unwrap_or(u64::MAX));
    }

    pub fn record_failed_batch(&self) {
        self.failed_batches.inc();
    }

    pub fn set_backlog(&self, events: usize) {
        self.backlog.set(i64::try_from(events).unwrap_or(i64::MAX));
    }
}
