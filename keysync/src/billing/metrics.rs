//! The metrics of invoicing: the closes `keysync serve` ran by result, and the invoices
//! it issued or could not make.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::metric_label::label_values;

/// How a close ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum CloseResult {
    /// Ran (whether or not it issued anything).
    Ok,
    /// Another keysync replica was closing: nothing done.
    Skipped,
    /// PostgreSQL failed: the batches committed before were published, the rest is
    /// closed next time.
    Failed,
}

label_values!(CloseResult { Ok => "ok", Skipped => "skipped", Failed => "failed" });

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    result: CloseResult,
}

/// The invoicing metrics; cheap to update from any task.
#[derive(Debug)]
pub struct BillingMetrics {
    closes: Family<CloseLabels, Counter>,
    issued: Counter,
    not_issued: Counter,
}

impl BillingMetrics {
    /// The metrics, registered in `registry`, every label combination at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = BillingMetrics {
            closes: Family::default(),
            issued: Counter::default(),
            not_issued: Counter::default(),
        };
        registry.register(
            "keysync_invoice_closes",
            "Closes of the last month's invoices by result (ok; skipped: another keysync \
             replica was closing; failed: PostgreSQL failed, tried again at the next check)",
            metrics.closes.clone(),
        );
        registry.register(
            "keysync_invoices_issued",
            "Invoices this keysync issued and published on the usage export (once per \
             organization and month across replicas)",
            metrics.issued.clone(),
        );
        registry.register(
            "keysync_invoices_not_issued",
            "Organizations whose month could not be priced at a close (logged; tried again \
             at the next check)",
            metrics.not_issued.clone(),
        );
        // The guards are only needed to create the series, not to hold them.
        for result in [CloseResult::Ok, CloseResult::Skipped, CloseResult::Failed] {
            drop(metrics.closes.get_or_create(&CloseLabels { result }));
        }
        metrics
    }

    pub fn record_close(&self, result: CloseResult) {
        self.closes.get_or_create(&CloseLabels { result }).inc();
    }

    pub fn record_issued(&self, count: usize) {
        self.issued.inc_by(count as u64);
    }

    pub fn record_not_issued(&self, count: usize) {
        self.not_issued.inc_by(count as u64);
    }
}
