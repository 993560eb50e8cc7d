//! The metrics of the `keysync.v1.KeySync` calls and of the port's gate: calls and
//! their durations by method, `LookupKey` results, open `WatchKeys` streams, and calls
//! refused before reaching a service.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::metric_label::label_values;

/// How a `LookupKey` call ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum LookupResult {
    Found,
    NotFound,
    Error,
}

/// gRPC method names as they appear on the wire.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum GrpcMethod {
    ListKeys,
    LookupKey,
    /// Counted when a stream opens; its duration is the time to open it.
    WatchKeys,
}

/// Why a gRPC call was refused before reaching a service.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RefusalReason {
    /// No token, or a wrong one (`UNAUTHENTICATED`).
    Unauthenticated,
    /// A read-only token calling a method that needs a gateway token
    /// (`PERMISSION_DENIED`).
    PermissionDenied,
    /// Too many calls in flight (`RESOURCE_EXHAUSTED`).
    InFlight,
    /// Too many WatchKeys streams open (`RESOURCE_EXHAUSTED`).
    WatchStreams,
}

label_values!(LookupResult { Found => "found", NotFound => "not_found", Error => "error" });
label_values!(RefusalReason {
    Unauthenticated => "unauthenticated",
    PermissionDenied => "permission_denied",
    InFlight => "in_flight",
    WatchStreams => "watch_streams",
});

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: LookupResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: GrpcMethod,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: RefusalReason,
}

/// The gRPC metrics; cheap to update from any task.
#[derive(Debug)]
pub struct GrpcMetrics {
    lookups: Family<LookupLabels, Counter>,
    grpc_requests: Family<MethodLabels, Counter>,
    grpc_request_duration: Family<MethodLabels, Histogram>,
    watch_streams: Gauge,
    grpc_refused: Family<RefusalLabels, Counter>,
}

impl GrpcMetrics {
    /// The metrics, registered in `registry`, every label combination at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = GrpcMetrics {
            lookups: Family::default(),
            grpc_requests: Family::default(),
            // Answers come from memory (tens of microseconds) unless a lookup waits for
            // a catch-up.
            grpc_request_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_025, 2.0, 18))
            }),
            watch_streams: Gauge::default(),
            grpc_refused: Family::default(),
        };
        registry.register(
            "keysync_lookups",
            "LookupKey calls by result",
            metrics.lookups.clone(),
        );
        registry.register(
            "keysync_grpc_requests",
            "gRPC requests by method",
            metrics.grpc_requests.clone(),
        );
        registry.register(
            "keysync_grpc_request_duration_seconds",
            "gRPC request duration by method",
            metrics.grpc_request_duration.clone(),
        );
        registry.register(
            "keysync_watch_streams",
            "Open WatchKeys streams",
            metrics.watch_streams.clone(),
        );
        registry.register(
            "keysync_grpc_refused",
            "gRPC calls refused before reaching a service, by reason",
            metrics.grpc_refused.clone(),
        );
        metrics.create_series();
        metrics
    }

    /// Every label combination, so dashboards see zeros instead of missing series.
    fn create_series(&self) {
        for result in [
            LookupResult::Found,
            LookupResult::NotFound,
            LookupResult::Error,
        ] {
            drop(self.lookups.get_or_create(&LookupLabels { result }));
        }
        for method in [
            GrpcMethod::ListKeys,
            GrpcMethod::LookupKey,
            GrpcMethod::WatchKeys,
        ] {
            drop(self.grpc_requests.get_or_create(&MethodLabels { method }));
            drop(
                self.grpc_request_duration
                    .get_or_create(&MethodLabels { method }),
            );
        }
        for reason in [
            RefusalReason::Unauthenticated,
            RefusalReason::PermissionDenied,
            RefusalReason::InFlight,
            RefusalReason::WatchStreams,
        ] {
            drop(self.grpc_refused.get_or_create(&RefusalLabels { reason }));
        }
    }

    pub fn record_lookup(&self, result: LookupResult) {
        self.lookups.get_or_create(&LookupLabels { result }).inc();
    }

    pub fn record_grpc(&self, method: GrpcMethod, duration: Duration) {
        let labels = MethodLabels { method };
        self.grpc_requests.get_or_create(&labels).inc();
        self.grpc_request_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    pub fn record_refusal(&self, reason: RefusalReason) {
        self.grpc_refused
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }

    /// Counts an open WatchKeys stream until the returned guard is dropped.
    pub fn watch_stream(self: &Arc<Self>) -> WatchStreamGuard {
        self.watch_streams.inc();
        WatchStreamGuard(self.clone())
    }
}

/// Holds one count in `keysync_watch_streams` while a stream is open.
#[derive(Debug)]
pub struct WatchStreamGuard(Arc<GrpcMetrics>);

impl Drop for WatchStreamGuard {
    fn drop(&mut self) {
        self.0.watch_streams.dec();
    }
}
