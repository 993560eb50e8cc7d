//! Telling the world about the alerts an evaluation stored: one log line each, the
//! metric, and, with the usage export on, an `io.keysync.anomaly.v1` CloudEvent each on
//! Kafka. Only stored alerts come here, so each is told once, whichever replica raised
//! it.
//!
//! Webhooks (issue 25) are one more destination here: like the export, they must never
//! hold up the evaluation (queue, then deliver), and the event's deterministic id lets a
//! receiver drop a repeat.

use std::sync::Arc;

use tracing::info;

use super::alert::Alert;
use super::event::anomaly_event;
use super::metrics::AnomalyMetrics;
use crate::usage::export::Exporter;

/// Where alerts go; cheap to clone.
#[derive(Debug, Clone)]
pub struct Announcer {
    metrics: Arc<AnomalyMetrics>,
    /// The usage export, when it is on.
    export: Option<Exporter>,
}

impl Announcer {
    pub fn new(metrics: Arc<AnomalyMetrics>, export: Option<Exporter>) -> Announcer {
        Announcer { metrics, export }
    }

    /// Logs, counts and publishes `alerts`; never waits (the export only queues).
    pub fn announce(&self, alerts: &[Alert]) {
        for alert in alerts {
            self.metrics.record_alert(alert.kind);
            info!("{}", alert.describe());
        }
        if let Some(export) = &self.export {
            export.publish_all(alerts.iter().map(anomaly_event));
        }
    }
}
