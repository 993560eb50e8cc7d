//! The filter's Envoy stats, kept in process memory between flushes: the core's stats
//! (`keysync.*`, `keysync_filter_core::every_metric`) are defined once with Envoy by the sync
//! extension when Envoy loads it (Envoy takes definitions only then), and every thread adds
//! to them with an atomic instruction (no call into Envoy on the request path). The sync
//! extension's timer hands what accumulated to Envoy (`flush`), where they appear as
//! `dynamicmodulescustom.keysync.*`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use keysync_filter_core::MetricKind;

/// Where a flush sends the stats (Envoy through the sync extension's handle; a fake in tests).
pub trait MetricSink {
    fn add(&mut self, envoy_id: usize, delta: u64);
    fn set(&mut self, envoy_id: usize, value: u64);
}

struct Metric {
    name: &'static str,
    kind: MetricKind,
    /// Envoy's id, if Envoy took the definition.
    envoy_id: Option<usize>,
    /// A counter: added since the last flush. A gauge: the latest value.
    value: AtomicU64,
    /// A gauge was set since the last flush.
    dirty: AtomicBool,
}

pub struct MetricTable {
    metrics: Vec<Metric>,
}

static TABLE: OnceLock<MetricTable> = OnceLock::new();

impl MetricTable {
    /// Defines every stat of the core with `define` (Envoy's id, or `None` if refused).
    pub fn define(mut define: impl FnMut(MetricKind, &str) -> Option<usize>) -> MetricTable {
        MetricTable {
            metrics: keysync_filter_core::every_metric()
                .map(|(kind, name)| Metric {
                    name,
                    kind,
                    envoy_id: define(kind, name),
                    value: AtomicU64::new(0),
                    dirty: AtomicBool::new(false),
                })
                .collect(),
        }
    }

    /// Makes `table` the process's; false if there already is one (a second sync extension).
    pub fn install(table: MetricTable) -> bool {
        TABLE.set(table).is_ok()
    }

    /// The process's table, once the sync extension defined it.
    pub fn process() -> Option<&'static MetricTable> {
        TABLE.get()
    }

    /// The id the core uses for `name` (its place in the table).
    pub fn id(&self, kind: MetricKind, name: &str) -> Option<u32> {
        self.metrics
            .iter()
            .position(|metric| metric.kind == kind && metric.name == name)
            .and_then(|i| u32::try_from(i).ok())
    }

    fn metric(&self, id: u32) -> Option<&Metric> {
        usize::try_from(id).ok().and_then(|i| self.metrics.get(i))
    }

    pub fn add(&self, id: u32, delta: u64) {
        if let Some(metric) = self.metric(id) {
            metric.value.fetch_add(delta, Ordering::Relaxed);
        }
    }

    pub fn record(&self, id: u32, value: u64) {
        if let Some(metric) = self.metric(id) {
            metric.value.store(value, Ordering::Relaxed);
            metric.dirty.store(true, Ordering::Release);
        }
    }

    /// Hands what changed since the last flush to `sink`.
    pub fn flush(&self, sink: &mut impl MetricSink) {
        for metric in &self.metrics {
            let Some(envoy_id) = metric.envoy_id else {
                continue;
            };
            match metric.kind {
                MetricKind::Counter => {
                    let delta = metric.value.swap(0, Ordering::Relaxed);
                    if delta > 0 {
                        sink.add(envoy_id, delta);
                    }
                }
                MetricKind::Gauge => {
                    if metric.dirty.swap(false, Ordering::Acquire) {
                        sink.set(envoy_id, metric.value.load(Ordering::Relaxed));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen(Vec<(&'static str, usize, u64)>);

    impl MetricSink for Seen {
        fn add(&mut self, id: usize, delta: u64) {
            self.0.push(("add", id, delta));
        }
        fn set(&mut self, id: usize, value: u64) {
            self.0.push(("set", id, value));
        }
    }

    #[test]
    fn counters_hand_over_their_sums_and_gauges_their_latest_value_once() {
        let mut next = 100;
        let table = MetricTable::define(|_, _| {
            next += 1;
            Some(next)
        });
        let allowed = table.id(MetricKind::Counter, "keysync.allowed").unwrap();
        let connected = table
            .id(MetricKind::Gauge, "keysync.stream_connected")
            .unwrap();
        assert_eq!(table.id(MetricKind::Gauge, "keysync.allowed"), None);
        table.add(allowed, 2);
        table.add(allowed, 3);
        table.record(connected, 0);
        table.record(connected, 1);
        let mut seen = Seen::default();
        table.flush(&mut seen);
        let allowed_envoy = 101 + allowed as usize;
        let connected_envoy = 101 + connected as usize;
        assert_eq!(
            seen.0,
            vec![("add", allowed_envoy, 5), ("set", connected_envoy, 1)]
        );
        let mut again = Seen::default();
        table.flush(&mut again);
        assert!(again.0.is_empty(), "{:?}", again.0);
    }

    #[test]
    fn a_stat_envoy_refused_is_counted_nowhere() {
        let table = MetricTable::define(|_, _| None);
        let id = table.id(MetricKind::Counter, "keysync.invalid").unwrap();
        table.add(id, 1);
        let mut seen = Seen::default();
        table.flush(&mut seen);
        assert!(seen.0.is_empty());
    }
}
