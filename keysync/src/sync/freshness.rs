//! Whether change notifications keep the in-memory key set current: true while the
//! change listener is connected and caught up (the catch-up that follows its last
//! (re)connection succeeded) and the last catch-up, whoever asked for it, succeeded.
//! Every commit then reaches the key set within milliseconds of its notification, so a
//! lookup of a key the key set does not hold can be answered from memory
//! ([`crate::sync::miss`]); otherwise it asks for a catch-up. `/metrics` shows it as
//! `keysync_change_listener_up`.
//!
//! A connection can look alive to keysync while nothing reaches it (a blackholed
//! network): so notifications are trusted only while the key set was also confirmed
//! against PostgreSQL recently ([`Confirmation::is_current`]), when one is given.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::sync::confirmation::Confirmation;
use crate::sync::metrics::SyncMetrics;

/// Shared by the change listener, the catch-up worker and the lookups; cheap to clone.
#[derive(Debug, Clone)]
pub struct Freshness(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Both conditions, changed together with the gauge under this lock.
    state: Mutex<State>,
    /// Both at once, for the lookups to read without the lock.
    current: AtomicBool,
    metrics: Arc<SyncMetrics>,
    /// Notifications are trusted only while this is current too.
    confirmation: Option<Confirmation>,
}

#[derive(Debug)]
struct State {
    listening: bool,
    last_catch_up_ok: bool,
}

impl Freshness {
    /// Not current: nobody listens yet.
    pub fn new(metrics: Arc<SyncMetrics>) -> Self {
        Freshness::build(metrics, None)
    }

    /// As [`Freshness::new`], current only while `confirmation` is current too.
    pub fn confirmed_by(metrics: Arc<SyncMetrics>, confirmation: Confirmation) -> Self {
        Freshness::build(metrics, Some(confirmation))
    }

    fn build(metrics: Arc<SyncMetrics>, confirmation: Option<Confirmation>) -> Self {
        metrics.set_change_listener_up(false);
        Freshness(Arc::new(Inner {
            state: Mutex::new(State {
                listening: false,
                last_catch_up_ok: true,
            }),
            current: AtomicBool::new(false),
            metrics,
            confirmation,
        }))
    }

    /// True while notifications keep the key set current.
    pub fn is_current(&self) -> bool {
        self.0.current.load(Ordering::Acquire)
            && self
                .0
                .confirmation
                .as_ref()
                .is_none_or(Confirmation::is_current)
    }

    /// The change listener is connected and has caught up since (true), or has lost
    /// its connection (false).
    pub fn set_listening(&self, listening: bool) {
        self.update(|state| state.listening = listening);
        // A lost listener connection may be a lost database: confirm now rather than
        // at the next probe, so keysync stops serving within milliseconds if it is.
        if !listening {
            if let Some(confirmation) = &self.0.confirmation {
                confirmation.probe_soon();
            }
        }
    }

    /// A catch-up finished: while the last one failed, changes may be missing.
    pub fn record_catch_up(&self, ok: bool) {
        self.update(|state| state.last_catch_up_ok = ok);
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut state);
        let current = state.listening && state.last_catch_up_ok;
        self.0.current.store(current, Ordering::Release);
        self.0.metrics.set_change_listener_up(current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn gauge(metrics: &Metrics) -> bool {
        metrics.encode().contains("keysync_change_listener_up 1\n")
    }

    #[test]
    fn current_only_while_listening_and_the_last_catch_up_succeeded() {
        let metrics = Arc::new(Metrics::new());
        let freshness = Freshness::new(metrics.sync.clone());
        assert!(!freshness.is_current());
        assert!(!gauge(&metrics));

        freshness.set_listening(true);
        assert!(freshness.is_current());
        assert!(gauge(&metrics));

        freshness.record_catch_up(false);
        assert!(!freshness.clone().is_current());
        assert!(!gauge(&metrics));
        freshness.record_catch_up(true);
        assert!(freshness.is_current());

        freshness.set_listening(false);
        assert!(!freshness.is_current());
        assert!(!gauge(&metrics));
        freshness.record_catch_up(true);
        assert!(
            !freshness.is_current(),
            "a catch-up alone does not make it current"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn notifications_are_not_trusted_once_the_confirmation_is_overdue() {
        use crate::sync::confirmation::testing;
        use std::time::Duration;
        use tokio::time::Instant;

        let metrics = Arc::new(Metrics::new());
        let confirmation = testing::unconfirmed(testing::BOUNDS, &metrics);
        let freshness = Freshness::confirmed_by(metrics.sync.clone(), confirmation.clone());
        freshness.set_listening(true);
        assert!(!freshness.is_current(), "never confirmed");
        confirmation.confirm(Instant::now());
        assert!(freshness.is_current());
        // The listener still looks connected, but nothing confirmed the key set lately.
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(!freshness.is_current());
        confirmation.confirm(Instant::now());
        assert!(freshness.is_current());
    }
}
