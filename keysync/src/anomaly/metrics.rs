//! The metrics of anomaly detection: evaluations by result, how long they took, and the
//! alerts this keysync raised, by kind.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::kind::AnomalyKind;
use crate::metric_label::label_values;

/// How an evaluation ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum EvaluationResult {
    /// Judged (whether or not it raised anything).
    Ok,
    /// Another keysync replica was evaluating: nothing done.
    Skipped,
    /// PostgreSQL failed: nothing stored; the next period tries again.
    Failed,
}

label_values!(EvaluationResult { Ok => "ok", Skipped => "skipped", Failed => "failed" });

// A kind's label is its name.
impl EncodeLabelValue for AnomalyKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvaluationLabels {
    result: EvaluationResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    kind: AnomalyKind,
}

/// The anomaly metrics; cheap to update from any task.
#[derive(Debug)]
pub struct AnomalyMetrics {
    evaluations: Family<EvaluationLabels, Counter>,
    duration: Histogram,
    alerts: Family<AlertLabels, Counter>,
}

impl AnomalyMetrics {
    /// The metrics, registered in `registry`, every label combination at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = AnomalyMetrics {
            evaluations: Family::default(),
            // One statement over every organization: milliseconds to a second.
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            alerts: Family::default(),
        };
        registry.register(
            "keysync_anomaly_evaluations",
            "Anomaly evaluations by result (ok; skipped: another keysync replica was \
             evaluating; failed: PostgreSQL failed, tried again next period)",
            metrics.evaluations.clone(),
        );
        registry.register(
            "keysync_anomaly_evaluation_duration_seconds",
            "Duration of anomaly evaluations that judged (reading the rollup, judging, \
             storing the alerts)",
            metrics.duration.clone(),
        );
        registry.register(
            "keysync_anomaly_alerts",
            "Anomaly alerts this keysync raised, by kind (once per organization, kind and \
             hour across replicas)",
            metrics.alerts.clone(),
        );
        // The guards are only needed to create the series, not to hold them.
        for result in [
            EvaluationResult::Ok,
            EvaluationResult::Skipped,
            EvaluationResult::Failed,
        ] {
            drop(
                metrics
                    .evaluations
                    .get_or_create(&EvaluationLabels { result }),
            );
        }
        for kind in AnomalyKind::ALL {
            drop(metrics.alerts.get_or_create(&AlertLabels { kind }));
        }
        metrics
    }

    /// Records one evaluation; the duration of those that judged.
    pub fn record_evaluation(&self, result: EvaluationResult, duration: Duration) {
        self.evaluations
            .get_or_create(&EvaluationLabels { result })
            .inc();
        if result == EvaluationResult::Ok {
            self.duration.observe(duration.as_secs_f64());
        }
    }

    pub fn record_alert(&self, kind: AnomalyKind) {
        self.alerts.get_or_create(&AlertLabels { kind }).inc();
    }
}
