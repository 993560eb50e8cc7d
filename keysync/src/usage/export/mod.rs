//! The optional export of events to Kafka: usage (one CloudEvent per grown counter of a
//! stored flush, see [`crate::usage::cloud_event`]) and anything else that calls
//! [`Exporter::publish`] (quota alerts, later).
//!
//! Kafka never slows the gateway down: publishing only appends to a bounded in-memory
//! [`backlog`] and never waits; what does not fit is dropped, counted
//! (`keysync_usage_export_dropped_total`) and logged. One producer task takes batches
//! from the backlog and sends them ([`kafka`]); a failed batch stays in the backlog
//! (still counted against its bound) and is sent again after a backoff, so delivery is
//! at least once while keysync runs, and a consumer drops repeats by their
//! deterministic ids. PostgreSQL's rollups stay the record: the export can lose events
//! (a full backlog, a keysync that stops with events still waiting), never the rollups.

pub mod backlog;
pub mod kafka;
pub mod metrics;
pub mod partitioner;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keysync_backoff::Backoff;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::backlog::Backlog;
use self::metrics::ExportMetrics;
use crate::log_throttle::{held_back_note, LogThrottle, LOG_PERIOD};
use crate::usage::cloud_event::CloudEvent;

/// Events the backlog holds unless `KEYSYNC_USAGE_EXPORT_BACKLOG` says otherwise: at
/// about 1 KB an event, 100 MB at most.
pub const DEFAULT_BACKLOG: usize = 100_000;
/// The topic unless `KEYSYNC_USAGE_EXPORT_TOPIC` says otherwise.
pub const DEFAULT_TOPIC: &str = "keysync.usage";
/// Most events in one batch (one produce request per partition): well under Kafka's
/// default 1 MB message limit at about 1 KB an event.
pub const MAX_BATCH: usize = 500;
/// Retry spacing after a failed batch.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// How long a stopping keysync keeps trying to publish what its backlog holds.
const DRAIN_ON_STOP: Duration = Duration::from_secs(5);

/// Where and how events are exported (`KEYSYNC_USAGE_EXPORT_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: Vec<String>,
    pub topic: String,
    /// Most events held in memory, waiting or being sent.
    pub backlog: usize,
}

/// Why a batch was not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("cannot reach Kafka: {0}")]
    Connect(String),
    #[error("topic {0} does not exist (keysync does not create it)")]
    NoTopic(String),
    #[error("producing to partition {partition} failed: {cause}")]
    Produce { partition: i32, cause: String },
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

/// Where batches go: Kafka ([`kafka::KafkaSink`]), or a fake in tests.
pub trait Sink: Send {
    /// Publishes every event of `batch`, or fails (some may have been published: they
    /// are sent again, at least once).
    fn send(
        &mut self,
        batch: &[CloudEvent],
    ) -> impl Future<Output = Result<(), ExportError>> + Send;
}

/// The handle that publishes events; cheap to clone.
#[derive(Debug, Clone)]
pub struct Exporter {
    backlog: Arc<Backlog>,
    metrics: Arc<ExportMetrics>,
    /// One line a period about dropped events.
    drops: Arc<LogThrottle>,
}

impl Exporter {
    pub fn new(backlog: usize, metrics: Arc<ExportMetrics>) -> Exporter {
        Exporter {
            backlog: Arc::new(Backlog::new(backlog)),
            metrics,
            drops: Arc::new(LogThrottle::new(LOG_PERIOD)),
        }
    }

    /// Queues `event` for export; never waits. `false`: the backlog was full and the
    /// event was dropped (counted and logged).
    pub fn publish(&self, event: CloudEvent) -> bool {
        self.publish_all([event]) == 0
    }

    /// Queues `events` in order, as many as fit; never waits. Returns how many were
    /// dropped (counted and logged).
    pub fn publish_all(&self, events: impl IntoIterator<Item = CloudEvent>) -> usize {
        let pushed = self.backlog.push(events);
        self.metrics.set_backlog(pushed.held);
        if pushed.dropped > 0 {
            self.metrics.record_dropped(pushed.dropped);
            if let Some(held_back) = self.drops.admit(Instant::now()) {
                warn!(
                    "usage export backlog full ({} events, Kafka slow or down): dropped {} \
                     events (the rollups in PostgreSQL keep them){}",
                    self.backlog.capacity(),
                    pushed.dropped,
                    held_back_note(held_back)
                );
            }
        }
        pushed.dropped
    }

    /// Sends the backlog's batches to `sink` until `stop`, retrying a failed batch with
    /// backoff; then tries for a few seconds more to send what is left.
    pub async fn run(&self, mut sink: impl Sink, stop: CancellationToken) {
        let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX, seed());
        let failures = LogThrottle::new(LOG_PERIOD);
        loop {
            let batch = tokio::select! {
                batch = self.backlog.take(MAX_BATCH) => batch,
                () = stop.cancelled() => break,
            };
            loop {
                let sent = tokio::select! {
                    sent = sink.send(&batch) => sent,
                    () = stop.cancelled() => return self.drain(&mut sink, batch).await,
                };
                match sent {
                    Ok(()) => {
                        self.published(batch.len());
                        if backoff.consecutive_failures() > 0 {
                            info!(
                                "usage export: publishing to Kafka again after {} failed \
                                 attempts",
                                backoff.consecutive_failures()
                            );
                            backoff.reset();
                            failures.reset();
                        }
                        break;
                    }
                    Err(error) => {
                        self.metrics.record_failed_batch();
                        let wait = backoff.failed();
                        if let Some(held_back) = failures.admit(Instant::now()) {
                            warn!(
                                "usage export: a batch of {} events not published ({error}); \
                                 retrying in {} ms, {} events held{}",
                                batch.len(),
                                wait.as_millis(),
                                self.backlog.held(),
                                held_back_note(held_back)
                            );
                        }
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = stop.cancelled() => {
                                return self.drain(&mut sink, batch).await;
                            }
                        }
                    }
                }
            }
        }
        self.drain(&mut sink, Vec::new()).await;
    }

    fn published(&self, count: usize) {
        let held = self.backlog.published(count);
        self.metrics.record_published(count);
        self.metrics.set_backlog(held);
    }

    /// On the way out: `batch` (taken, not yet published) and what is left, for at most
    /// [`DRAIN_ON_STOP`]; whatever is still held then is lost to the export (logged).
    async fn drain(&self, sink: &mut impl Sink, batch: Vec<CloudEvent>) {
        let drained = tokio::time::timeout(DRAIN_ON_STOP, async {
            let mut batch = batch;
            loop {
                if batch.is_empty() {
                    batch = self.backlog.try_take(MAX_BATCH);
                    if batch.is_empty() {
                        return Ok::<(), ExportError>(());
                    }
                }
                sink.send(&batch).await?;
                self.published(batch.len());
                batch = Vec::new();
            }
        })
        .await;
        let held = self.backlog.held();
        match drained {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(
                "usage export stopping: {held} events not published ({error}); the rollups \
                 in PostgreSQL keep them"
            ),
            Err(_) => warn!(
                "usage export stopping: {held} events not published within {DRAIN_ON_STOP:?}; \
                 the rollups in PostgreSQL keep them"
            ),
        }
    }
}

/// Jitter that differs between processes.
fn seed() -> u64 {
    u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_nanos() as u64)
            .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::sync::Mutex;

    fn event(n: usize) -> CloudEvent {
        CloudEvent {
            specversion: "1.0",
            id: n.to_string(),
            source: "keysync/test".into(),
            event_type: "io.keysync.test".into(),
            subject: "org".into(),
            time: "2026-12-01T14:00:05.250Z".into(),
            datacontenttype: "application/json",
            data: serde_json::json!({ "n": n }),
            partition_key: "org".into(),
        }
    }

    /// Fails while `down`, else records the batches.
    #[derive(Clone, Default)]
    struct FakeSink {
        down: Arc<std::sync::atomic::AtomicBool>,
        batches: Arc<Mutex<Vec<Vec<String>>>>,
        attempts: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Sink for FakeSink {
        async fn send(&mut self, batch: &[CloudEvent]) -> Result<(), ExportError> {
            use std::sync::atomic::Ordering;
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(ExportError::Connect("down".into()));
            }
            self.batches
                .lock()
                .unwrap()
                .push(batch.iter().map(|event| event.id.clone()).collect());
            Ok(())
        }
    }

    impl FakeSink {
        fn published(&self) -> Vec<String> {
            self.batches.lock().unwrap().concat()
        }
    }

    fn metric(metrics: &Metrics, name: &str) -> f64 {
        let text = metrics.encode();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} "))?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_full_backlog_drops_and_counts_and_a_failed_batch_is_sent_again() {
        use std::sync::atomic::Ordering;
        let metrics = Arc::new(Metrics::new());
        let exporter = Exporter::new(4, metrics.usage_export.clone());
        let sink = FakeSink::default();
        sink.down.store(true, Ordering::SeqCst);
        let stop = CancellationToken::new();
        let running = tokio::spawn({
            let (exporter, sink, stop) = (exporter.clone(), sink.clone(), stop.clone());
            async move { exporter.run(sink, stop).await }
        });

        assert_eq!(exporter.publish_all((0..3).map(event)), 0);
        eventually("a failed attempt", || {
            sink.attempts.load(Ordering::SeqCst) >= 1
        })
        .await;
        // The failing batch still counts: one more fits, then drops.
        assert!(exporter.publish(event(3)));
        assert!(!exporter.publish(event(4)));
        assert_eq!(exporter.publish_all((5..7).map(event)), 2);
        assert_eq!(metric(&metrics, "keysync_usage_export_dropped_total"), 3.0);
        assert_eq!(metric(&metrics, "keysync_usage_export_backlog"), 4.0);
        assert_eq!(
            metric(&metrics, "keysync_usage_export_published_total"),
            0.0
        );

        sink.down.store(false, Ordering::SeqCst);
        eventually("everything published", || sink.published().len() == 4).await;
        assert_eq!(sink.published(), ["0", "1", "2", "3"]);
        assert!(metric(&metrics, "keysync_usage_export_failed_batches_total") >= 1.0);
        assert_eq!(
            metric(&metrics, "keysync_usage_export_published_total"),
            4.0
        );
        assert_eq!(metric(&metrics, "keysync_usage_export_backlog"), 0.0);

        // Room again.
        assert_eq!(exporter.publish_all((7..9).map(event)), 0);
        eventually("later events published", || sink.published().len() == 6).await;
        stop.cancel();
        running.await.unwrap();
    }

    #[tokio::test]
    async fn batches_are_bounded_and_keep_the_order() {
        let metrics = Arc::new(Metrics::new());
        let exporter = Exporter::new(10_000, metrics.usage_export.clone());
        let sink = FakeSink::default();
        assert_eq!(exporter.publish_all((0..1_200).map(event)), 0);
        let stop = CancellationToken::new();
        let running = tokio::spawn({
            let (exporter, sink, stop) = (exporter.clone(), sink.clone(), stop.clone());
            async move { exporter.run(sink, stop).await }
        });
        eventually("all published", || sink.published().len() == 1_200).await;
        let batches = sink.batches.lock().unwrap().clone();
        assert!(batches.iter().all(|batch| batch.len() <= MAX_BATCH));
        assert_eq!(batches.len(), 3);
        let expected: Vec<String> = (0..1_200).map(|n| n.to_string()).collect();
        assert_eq!(sink.published(), expected);
        stop.cancel();
        running.await.unwrap();
    }

    #[tokio::test]
    async fn a_stopping_exporter_sends_what_is_left() {
        let metrics = Arc::new(Metrics::new());
        let exporter = Exporter::new(100, metrics.usage_export.clone());
        let sink = FakeSink::default();
        let stop = CancellationToken::new();
        stop.cancel();
        assert_eq!(exporter.publish_all((0..3).map(event)), 0);
        exporter.run(sink.clone(), stop).await;
        assert_eq!(sink.published(), ["0", "1", "2"]);
    }
}
