//! The periodic confirmation: every `KEYSYNC_CONFIRM_INTERVAL` (2 s by default) keysync
//! reads the revision counter (one cheap query, bounded by `KEYSYNC_DB_TIMEOUT`). Equal
//! to the key set's revision: the key set is confirmed as of that read. Ahead: a
//! catch-up is asked for, whose success confirms. Another history: everything is
//! reloaded ([`Reloader::probe`]). A failure or a timeout confirms nothing, so a silent
//! database shows as a growing `confirmed_age_ms` within one interval plus one timeout,
//! whatever the change listener believes.
//!
//! Failures are logged as `database error: confirmation failed: ...`, at most once every
//! [`FAILURE_LOG_PERIOD`] while they last.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::log_throttle::{held_back_note, LogThrottle};
use crate::sync::catch_up::CatchUp;
use crate::sync::loader::Loader;
use crate::sync::metrics::{ProbeResult, SyncMetrics};
use crate::sync::reload::{Probe, Reloader};

/// How often a failing confirmation may be logged.
pub const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(30);

/// Probes every `interval` until `stop`.
pub async fn run<L: Loader>(
    reloader: Arc<Reloader<L>>,
    catch_up: CatchUp,
    interval: Duration,
    metrics: Arc<SyncMetrics>,
    stop: CancellationToken,
) {
    let failures = LogThrottle::new(FAILURE_LOG_PERIOD);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // A probe that took longer than the interval is followed by the next one at once.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
            () = reloader.confirmation().probe_requested() => {}
        }
        let probed = tokio::select! {
            _ = stop.cancelled() => return,
            probed = reloader.probe() => probed,
        };
        let result = match probed {
            Ok(Probe::Current) => ProbeResult::Current,
            Ok(Probe::Behind) => {
                catch_up.trigger();
                ProbeResult::Behind
            }
            Ok(Probe::HistoryChanged) => ProbeResult::HistoryChanged,
            Err(cause) => {
                // PostgreSQL answered with an error (or not at all): stop serving now
                // rather than when the age crosses KEYSYNC_MAX_UNCONFIRMED, so Envoy's
                // health check and the filters move to a keysync that can confirm.
                reloader.confirmation().failed();
                if let Some(held_back) = failures.admit(std::time::Instant::now()) {
                    error!(
                        "database error: confirmation failed: {cause}{}",
                        held_back_note(held_back)
                    );
                }
                ProbeResult::Error
            }
        };
        if result != ProbeResult::Error {
            failures.reset();
        }
        metrics.record_probe(result);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use tokio::time::Instant;

    use super::*;
    use crate::key_set::change_feed::ChangeFeed;
    use crate::key_set::changes::Changes;
    use crate::key_set::key_entry::KeyEntry;
    use crate::key_set::position::Position;
    use crate::key_set::SharedKeySet;
    use crate::metrics::Metrics;
    use crate::sync::confirmation::{testing, Confirmation};
    use crate::sync::freshness::Freshness;
    use crate::sync::loader::{DatabaseState, LoadError};
    use crate::sync::reload::spawn_catch_up;

    /// A database without keys whose revision counter the test moves.
    #[derive(Default)]
    struct Counter {
        revision: AtomicU64,
        down: AtomicBool,
    }

    impl Counter {
        fn state_now(&self) -> Result<DatabaseState, LoadError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(LoadError::Timeout(Duration::from_secs(5)));
            }
            Ok(DatabaseState {
                position: Position {
                    epoch: 1,
                    revision: self.revision.load(Ordering::SeqCst),
                },
                history_id: 1,
            })
        }
    }

    impl Loader for Arc<Counter> {
        async fn full_snapshot_into<S: FnMut(KeyEntry) + Send>(
            &self,
            _sink: S,
        ) -> Result<DatabaseState, LoadError> {
            self.state_now()
        }

        async fn changes_since(&self, _: u64) -> Result<(DatabaseState, Changes), LoadError> {
            let state = self.state_now()?;
            let changes = Changes {
                revision: state.position.revision,
                ..Changes::default()
            };
            Ok((state, changes))
        }

        async fn state(&self) -> Result<DatabaseState, LoadError> {
            self.state_now()
        }

        async fn renew_history(&self, _: i64) -> Result<bool, LoadError> {
            Ok(false)
        }
    }

    fn probes(metrics: &Metrics, result: &str) -> u64 {
        let text = metrics.encode();
        let sample = format!("keysync_revision_probes_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(sample.as_str())?.parse().ok())
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn probes_confirm_catch_up_when_behind_and_let_the_age_grow_when_failing() {
        let database = Arc::new(Counter::default());
        let metrics = Arc::new(Metrics::new());
        let confirmation: Confirmation = testing::unconfirmed(testing::BOUNDS, &metrics);
        let key_set = SharedKeySet::new();
        let reloader = Arc::new(Reloader::new(
            database.clone(),
            key_set.clone(),
            Arc::new(ChangeFeed::new(10)),
            metrics.sync.clone(),
            confirmation.clone(),
        ));
        reloader.full_reload().await.unwrap();
        let catch_up = spawn_catch_up(reloader.clone(), Freshness::new(metrics.sync.clone()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            reloader,
            catch_up,
            Duration::from_secs(1),
            metrics.sync.clone(),
            stop.clone(),
        ));

        // Nothing changes: every probe confirms.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(probes(&metrics, "current"), 3);
        assert!(confirmation.age().unwrap() <= Duration::from_millis(500));

        // The database moved on: a catch-up follows the probe that saw it.
        database.revision.store(5, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(probes(&metrics, "behind"), 1);
        assert_eq!(key_set.read().revision(), 5);

        // Silent: probes fail and confirm nothing.
        database.down.store(true, Ordering::SeqCst);
        let silent_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(probes(&metrics, "error"), 10);
        assert!(confirmation.age().unwrap() >= silent_at.elapsed());
        assert!(!confirmation.is_current());

        database.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(confirmation.is_current());
        stop.cancel();
        task.await.unwrap();
    }
}
