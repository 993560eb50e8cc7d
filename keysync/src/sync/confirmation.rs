//! When keysync last *confirmed* its key set against PostgreSQL, as opposed to merely
//! being alive: a query that succeeded and showed the key set current (a full reload, a
//! catch-up reaching the database's revision, or a read of the revision counter equal to
//! the key set's). Every answer keysync gives carries the age of that moment
//! (`Provenance.confirmed_age_ms`), so a client can tell fresh data from data that is
//! only being served, and keysync judges itself by it:
//!
//! - older than `overdue` (a confirmation period plus a query timeout: one expected
//!   confirmation missed): the confirmation is *lost*. Logged once, and lookups of keys
//!   keysync does not hold no longer trust change notifications
//!   ([`crate::sync::freshness`]);
//! - older than `unready_after` (`KEYSYNC_MAX_UNCONFIRMED`), or since a confirmation
//!   attempt failed outright (PostgreSQL refused, reset or timed out) until the next one
//!   succeeds: keysync is not *serving*:
//!   `/readyz` answers 503, the gRPC health service says NOT_SERVING (so Envoy's health
//!   checking routes around it), open WatchKeys streams are closed and new ones refused;
//! - older than `max_staleness` (`KEYSYNC_MAX_STALENESS`): keysync's own decisions
//!   (ext_authz `Check`) answer "unavailable", like the filter does past its own bound.
//!
//! Ages are measured on the monotonic clock (tokio's, so tests can pause it), never on
//! the wall clock, which may jump.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::sync::metrics::SyncMetrics;

/// `last` before the first confirmation.
const NEVER: u64 = 0;

/// How often [`run_monitor`] looks at the age (the age itself is computed on demand).
pub const MONITOR_PERIOD: Duration = Duration::from_millis(500);

/// The three bounds (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// One expected confirmation missed: the confirmation is lost.
    pub overdue: Duration,
    /// Not serving past this (`KEYSYNC_MAX_UNCONFIRMED`).
    pub unready_after: Duration,
    /// ext_authz answers unavailable past this (`KEYSYNC_MAX_STALENESS`).
    pub max_staleness: Duration,
}

/// Shared by everything that confirms (the reloader) and everything that reports the
/// age (gRPC answers, the admin port, the monitor); cheap to clone.
#[derive(Debug, Clone)]
pub struct Confirmation(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// What `last` counts from.
    base: Instant,
    /// One more than the nanoseconds from `base` to the last confirmation, or [`NEVER`].
    last: AtomicU64,
    bounds: Bounds,
    /// What the last evaluation found, for logging transitions once.
    state: Mutex<State>,
    /// Whether keysync is serving (confirmed within `unready_after`, and the last
    /// attempt did not fail); watch streams close when it turns false.
    serving: watch::Sender<bool>,
    /// The last confirmation attempt failed, and none succeeded since.
    failing: std::sync::atomic::AtomicBool,
    /// Wakes the revision probe before its next tick.
    probe_wanted: tokio::sync::Notify,
    metrics: Arc<SyncMetrics>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct State {
    /// Confirmed at least once.
    confirmed_once: bool,
    lost: bool,
    unready: bool,
    stale: bool,
}

impl Confirmation {
    /// Never confirmed yet: not serving.
    pub fn new(bounds: Bounds, metrics: Arc<SyncMetrics>) -> Self {
        let (serving, _) = watch::channel(false);
        metrics.set_ready(false);
        Confirmation(Arc::new(Inner {
            base: Instant::now(),
            last: AtomicU64::new(NEVER),
            bounds,
            state: Mutex::new(State::default()),
            serving,
            failing: std::sync::atomic::AtomicBool::new(false),
            probe_wanted: tokio::sync::Notify::new(),
            metrics,
        }))
    }

    pub fn bounds(&self) -> Bounds {
        self.0.bounds
    }

    /// Records that the key set was current as of `at` (when the confirming query
    /// started). An older moment than one already recorded changes nothing.
    pub fn confirm(&self, at: Instant) {
        let nanos = u64::try_from(at.saturating_duration_since(self.0.base).as_nanos())
            .unwrap_or(u64::MAX - 1);
        // The newest of concurrent confirmations wins.
        self.0
            .last
            .fetch_max(nanos.saturating_add(1), Ordering::AcqRel);
        self.0.failing.store(false, Ordering::Release);
        self.evaluate();
    }

    /// A confirmation attempt failed: not serving until one succeeds, whatever the age.
    pub fn failed(&self) {
        self.0.failing.store(true, Ordering::Release);
        self.evaluate();
    }

    /// Asks the revision probe to confirm now (something suggests the database is
    /// gone: the change listener lost its connection).
    pub fn probe_soon(&self) {
        self.0.probe_wanted.notify_one();
    }

    /// Resolves when [`Confirmation::probe_soon`] was called (once per call, at most one
    /// call remembered while nobody waits).
    pub async fn probe_requested(&self) {
        self.0.probe_wanted.notified().await;
    }

    fn is_failing(&self) -> bool {
        self.0.failing.load(Ordering::Acquire)
    }

    /// Time since the last confirmation; `None` before the first.
    pub fn age(&self) -> Option<Duration> {
        let last = self.0.last.load(Ordering::Acquire);
        if last == NEVER {
            return None;
        }
        let at = self.0.base + Duration::from_nanos(last - 1);
        Some(Instant::now().saturating_duration_since(at))
    }

    /// The age in milliseconds as answers carry it; `u64::MAX` before the first
    /// confirmation (nothing is served then anyway).
    pub fn age_ms(&self) -> u64 {
        self.age().map_or(u64::MAX, |age| {
            u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
        })
    }

    /// Confirmed within `bound`.
    pub fn within(&self, bound: Duration) -> bool {
        self.age().is_some_and(|age| age <= bound)
    }

    /// Confirmed within `overdue`, and not failing: notifications may be trusted.
    pub fn is_current(&self) -> bool {
        !self.is_failing() && self.within(self.0.bounds.overdue)
    }

    /// Confirmed within `unready_after`, and not failing: `/readyz` 200, health SERVING.
    pub fn is_serving(&self) -> bool {
        !self.is_failing() && self.within(self.0.bounds.unready_after)
    }

    /// Not confirmed within `max_staleness`: keysync's own decisions are unavailable.
    pub fn is_stale(&self) -> bool {
        !self.within(self.0.bounds.max_staleness)
    }

    /// Follows [`Confirmation::is_serving`] as it changes (checked every
    /// [`MONITOR_PERIOD`] by [`run_monitor`], and at every confirmation).
    pub fn serving(&self) -> watch::Receiver<bool> {
        self.0.serving.subscribe()
    }

    /// Why keysync is not serving, for errors and `/readyz`.
    pub fn describe_unserving(&self) -> String {
        match self.age() {
            None => "key set not loaded from PostgreSQL yet".to_owned(),
            Some(age) if self.is_failing() => format!(
                "the last confirmation against PostgreSQL failed ({} since the last one \
                 that succeeded)",
                seconds(age)
            ),
            Some(age) => format!(
                "key set not confirmed against PostgreSQL for {} (limit {})",
                seconds(age),
                seconds(self.0.bounds.unready_after)
            ),
        }
    }

    /// Looks at the age: updates the gauges and the serving state, and logs each
    /// transition once.
    pub fn evaluate(&self) {
        let age = self.age();
        let bounds = self.0.bounds;
        // Before the first confirmation: not confirmed since keysync started.
        let shown = age.unwrap_or_else(|| self.0.base.elapsed());
        self.0.metrics.set_confirmed_age(shown.as_secs_f64());
        let beyond = |bound: Duration| age.is_none_or(|age| age > bound);
        let failing = self.is_failing();
        let now = State {
            confirmed_once: age.is_some(),
            lost: failing || beyond(bounds.overdue),
            unready: failing || beyond(bounds.unready_after),
            stale: beyond(bounds.max_staleness),
        };
        let before = {
            let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *state, now)
        };
        if before == now {
            return;
        }
        self.0.metrics.set_ready(!now.unready);
        self.0.serving.send_if_modified(|serving| {
            let changed = *serving == now.unready;
            *serving = !now.unready;
            changed
        });
        let Some(age) = age else { return };
        let age = seconds(age);
        // Before the first confirmation nothing was lost; the first load logs itself.
        if !before.confirmed_once {
            return;
        }
        if now.lost && !before.lost {
            warn!("confirmation lost: key set not confirmed against PostgreSQL for {age}");
        }
        if now.unready && !before.unready {
            let why = if failing {
                "a confirmation failed".to_owned()
            } else {
                format!("KEYSYNC_MAX_UNCONFIRMED {}", seconds(bounds.unready_after))
            };
            warn!(
                "not serving: key set not confirmed against PostgreSQL for {age} ({why}): \
                 /readyz 503, gRPC health NOT_SERVING, WatchKeys streams closed"
            );
        }
        if now.stale && !before.stale {
            warn!(
                "stale: key set not confirmed against PostgreSQL for {age} \
                 (KEYSYNC_MAX_STALENESS {}): ext_authz checks answered unavailable",
                seconds(bounds.max_staleness)
            );
        }
        if before.lost && !now.lost {
            info!(
                "confirmation regained: key set confirmed against PostgreSQL again{}",
                if before.unready {
                    "; serving again"
                } else {
                    ""
                }
            );
        }
    }
}

/// A duration as log lines and errors show it: whole seconds, or milliseconds below
/// ten seconds.
fn seconds(duration: Duration) -> String {
    if duration < Duration::from_secs(10) {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}s", duration.as_secs())
    }
}

/// Re-evaluates the age every [`MONITOR_PERIOD`] until `stop`, so transitions that come
/// with time alone (no confirmation arriving) are noticed, and calls `on_serving` with
/// each new serving state (the gRPC health service follows it).
pub async fn run_monitor<F, Fut>(
    confirmation: Confirmation,
    mut on_serving: F,
    stop: CancellationToken,
) where
    F: FnMut(bool) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut serving = confirmation.serving();
    let mut reported = None;
    let mut tick = tokio::time::interval(MONITOR_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now_serving = *serving.borrow_and_update();
        if reported != Some(now_serving) {
            on_serving(now_serving).await;
            reported = Some(now_serving);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => confirmation.evaluate(),
            _ = serving.changed() => {}
        }
    }
}

/// What other modules' tests start from.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::metrics::Metrics;

    /// `serve`'s defaults: lost after 7 s, not serving after 30 s, stale after 15 min.
    pub const BOUNDS: Bounds = Bounds {
        overdue: Duration::from_secs(7),
        unready_after: Duration::from_secs(30),
        max_staleness: Duration::from_secs(900),
    };

    /// Never confirmed yet, within `bounds`.
    pub fn unconfirmed(bounds: Bounds, metrics: &Metrics) -> Confirmation {
        Confirmation::new(bounds, metrics.sync.clone())
    }

    /// Confirmed now, within `bounds`.
    pub fn confirmed(bounds: Bounds, metrics: &Metrics) -> Confirmation {
        let confirmation = unconfirmed(bounds, metrics);
        confirmation.confirm(Instant::now());
        confirmation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn bounds() -> Bounds {
        testing::BOUNDS
    }

    fn metric(metrics: &Metrics, sample: &str) -> String {
        let text = metrics.encode();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(sample)?
                    .strip_prefix(' ')
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no {sample} in {text}"))
    }

    #[tokio::test(start_paused = true)]
    async fn the_age_counts_from_the_start_of_the_last_confirming_query() {
        let metrics = Arc::new(Metrics::new());
        let confirmation = Confirmation::new(bounds(), metrics.sync.clone());
        assert_eq!(confirmation.age(), None);
        assert_eq!(confirmation.age_ms(), u64::MAX);
        assert!(!confirmation.is_serving());
        assert!(confirmation.is_stale());
        assert!(!*confirmation.serving().borrow());

        let started = Instant::now();
        tokio::time::advance(Duration::from_millis(300)).await;
        confirmation.confirm(started);
        assert_eq!(confirmation.age(), Some(Duration::from_millis(300)));
        assert_eq!(confirmation.age_ms(), 300);
        assert!(confirmation.is_current() && confirmation.is_serving());
        assert!(*confirmation.serving().borrow());
        assert_eq!(metric(&metrics, "keysync_ready"), "1");

        // An older moment does not move it back.
        confirmation.confirm(started - Duration::from_secs(1));
        assert_eq!(confirmation.age_ms(), 300);
    }

    #[tokio::test(start_paused = true)]
    async fn lost_then_unready_then_stale_and_back() {
        let metrics = Arc::new(Metrics::new());
        let confirmation = Confirmation::new(bounds(), metrics.sync.clone());
        confirmation.confirm(Instant::now());
        let mut serving = confirmation.serving();
        assert!(*serving.borrow_and_update());

        tokio::time::advance(Duration::from_secs(8)).await;
        confirmation.evaluate();
        assert!(!confirmation.is_current());
        assert!(confirmation.is_serving());
        assert_eq!(metric(&metrics, "keysync_confirmed_age_seconds"), "8.0");

        tokio::time::advance(Duration::from_secs(23)).await;
        confirmation.evaluate();
        assert!(!confirmation.is_serving());
        assert!(serving.has_changed().unwrap());
        assert!(!*serving.borrow_and_update());
        assert_eq!(metric(&metrics, "keysync_ready"), "0");
        assert!(!confirmation.is_stale());
        assert!(confirmation
            .describe_unserving()
            .contains("for 31s (limit 30s)"));

        tokio::time::advance(Duration::from_secs(900)).await;
        assert!(confirmation.is_stale());

        confirmation.confirm(Instant::now());
        assert!(confirmation.is_serving() && !confirmation.is_stale());
        assert!(*serving.borrow_and_update());
        assert_eq!(metric(&metrics, "keysync_ready"), "1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_confirmation_stops_serving_at_once_until_one_succeeds() {
        let metrics = Arc::new(Metrics::new());
        let confirmation = Confirmation::new(bounds(), metrics.sync.clone());
        confirmation.confirm(Instant::now());
        let mut serving = confirmation.serving();
        assert!(*serving.borrow_and_update());
        tokio::time::advance(Duration::from_millis(100)).await;
        confirmation.failed();
        assert!(
            !confirmation.is_serving(),
            "young, but PostgreSQL just failed"
        );
        assert!(!confirmation.is_current());
        assert!(!*serving.borrow_and_update());
        assert_eq!(metric(&metrics, "keysync_ready"), "0");
        assert!(confirmation.describe_unserving().contains("failed"));
        assert_eq!(confirmation.age_ms(), 100, "the age itself stays honest");
        confirmation.confirm(Instant::now());
        assert!(confirmation.is_serving());
        assert!(*serving.borrow_and_update());
    }

    #[tokio::test(start_paused = true)]
    async fn the_monitor_reports_serving_changes_that_come_with_time() {
        let metrics = Arc::new(Metrics::new());
        let confirmation = Confirmation::new(bounds(), metrics.sync.clone());
        let reports = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_monitor(
            confirmation.clone(),
            {
                let reports = reports.clone();
                move |serving| {
                    reports.lock().unwrap().push(serving);
                    async {}
                }
            },
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        confirmation.confirm(Instant::now());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*reports.lock().unwrap(), vec![false, true]);
        // Nothing confirms any more: after 30 s it is not serving, by time alone.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(*reports.lock().unwrap(), vec![false, true, false]);
        stop.cancel();
        task.await.unwrap();
    }
}
