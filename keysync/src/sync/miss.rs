//! What a lookup of a key the key set does not hold (`LookupKey`, ext_authz `Check`)
//! waits for before the key set answers it.
//!
//! While change notifications keep the key set current ([`Freshness`]), every key
//! committed before the lookup is in memory already, or on its way in the catch-up its
//! notification asked for. The lookup then waits at most for the catch-ups already
//! asked for to finish ([`CatchUp::settled`]: no query of its own) and the key set
//! answers, so a flood of unknown keys costs PostgreSQL nothing and answers at memory
//! speed. Otherwise (the change listener is down, has not caught up since it
//! (re)connected, or the last catch-up failed) it waits for a catch-up that starts
//! after it asked, shared with every other lookup waiting (one query per 50 ms at
//! most).
//!
//! The race: a key committed a moment before the lookup, whose notification keysync has
//! not received or processed yet, is neither in memory nor in a pending catch-up. So a
//! miss first waits a short grace ([`NOTIFY_GRACE`]) for such a notification to arrive
//! and start its catch-up (a client that just created a key and uses it at once is the
//! common case); only a key whose notification takes longer than that is reported
//! unknown once. The notification follows and its catch-up puts the key in the key set
//! and on every watch stream.
//! The wasm filter reads its own store before its negative cache, so its next request
//! with the key is allowed once the stream has delivered it; an ext_authz check asks
//! keysync again, which has it by then.

use std::sync::Arc;
use std::time::Duration;

use crate::sync::catch_up::{CatchUp, CatchUpError};
use crate::sync::freshness::Freshness;
use crate::sync::metrics::{MissAnswer, SyncMetrics};

/// How long a miss waits, while notifications keep the key set current, for the
/// notification of a key committed just before it (see the module documentation).
pub const NOTIFY_GRACE: Duration = Duration::from_millis(25);

/// Settles misses; cheap to clone.
#[derive(Debug, Clone)]
pub struct Misses {
    catch_up: CatchUp,
    freshness: Freshness,
    metrics: Arc<SyncMetrics>,
}

impl Misses {
    pub fn new(catch_up: CatchUp, freshness: Freshness, metrics: Arc<SyncMetrics>) -> Self {
        Misses {
            catch_up,
            freshness,
            metrics,
        }
    }

    /// Waits until the key set can answer for a key it did not hold, and says how that
    /// was settled (counted in `keysync_misses_total`). An error when the catch-up it
    /// needed failed: the key set may lack the key.
    pub async fn settle(&self) -> Result<MissAnswer, CatchUpError> {
        if self.freshness.is_current() {
            tokio::time::sleep(NOTIFY_GRACE).await;
            let settled = self.catch_up.settled().await;
            // The catch-up waited for may have failed, or the listener dropped meanwhile.
            if settled.is_ok() && self.freshness.is_current() {
                self.metrics.record_miss(MissAnswer::Store);
                return Ok(MissAnswer::Store);
            }
        }
        self.metrics.record_miss(MissAnswer::CatchUp);
        self.catch_up.request().await.map(|()| MissAnswer::CatchUp)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::metrics::Metrics;
    use crate::sync::catch_up::DEFAULT_MIN_SPACING;

    struct Fixture {
        misses: Misses,
        catch_up: CatchUp,
        freshness: Freshness,
        metrics: Arc<Metrics>,
        runs: Arc<AtomicUsize>,
    }

    /// Catch-ups that take 20 ms and fail while `fail` says so.
    fn fixture(fail: bool) -> Fixture {
        let runs = Arc::new(AtomicUsize::new(0));
        let metrics = Arc::new(Metrics::new());
        let freshness = Freshness::new(metrics.sync.clone());
        let catch_up = CatchUp::spawn(DEFAULT_MIN_SPACING, {
            let runs = runs.clone();
            let freshness = freshness.clone();
            move || {
                runs.fetch_add(1, Ordering::SeqCst);
                let freshness = freshness.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    freshness.record_catch_up(!fail);
                    if fail {
                        Err("database down")
                    } else {
                        Ok(())
                    }
                }
            }
        });
        Fixture {
            misses: Misses::new(catch_up.clone(), freshness.clone(), metrics.sync.clone()),
            catch_up,
            freshness,
            metrics,
            runs,
        }
    }

    fn counted(metrics: &Metrics, answered_by: &str, count: u32) -> bool {
        metrics.encode().contains(&format!(
            "keysync_misses_total{{answered_by=\"{answered_by}\"}} {count}\n"
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn while_current_misses_are_answered_from_memory_at_once() {
        let fixture = fixture(false);
        fixture.freshness.set_listening(true);
        let asked = Instant::now();
        for _ in 0..100 {
            assert_eq!(fixture.misses.settle().await, Ok(MissAnswer::Store));
        }
        assert_eq!(
            asked.elapsed(),
            NOTIFY_GRACE * 100,
            "the grace, nothing more"
        );
        assert_eq!(fixture.runs.load(Ordering::SeqCst), 0, "no query");
        assert!(counted(&fixture.metrics, "store", 100));
        assert!(counted(&fixture.metrics, "catch_up", 0));
    }

    #[tokio::test(start_paused = true)]
    async fn while_current_a_catch_up_in_flight_is_waited_for() {
        let fixture = fixture(false);
        fixture.freshness.set_listening(true);
        // A notification's catch-up, running when the miss arrives.
        fixture.catch_up.trigger();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let asked = Instant::now();
        assert_eq!(fixture.misses.settle().await, Ok(MissAnswer::Store));
        assert_eq!(asked.elapsed(), NOTIFY_GRACE, "done within the grace");
        assert_eq!(
            fixture.runs.load(Ordering::SeqCst),
            1,
            "only the notification's"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_notification_arriving_during_the_grace_is_waited_for() {
        let fixture = fixture(false);
        fixture.freshness.set_listening(true);
        let asked = Instant::now();
        let (settled, ()) = tokio::join!(fixture.misses.settle(), async {
            // The key was committed just before the lookup; its notification lands now.
            tokio::time::sleep(Duration::from_millis(10)).await;
            fixture.catch_up.trigger();
        });
        assert_eq!(settled, Ok(MissAnswer::Store));
        assert_eq!(
            asked.elapsed(),
            Duration::from_millis(30),
            "its catch-up (20 ms) ran out"
        );
        assert_eq!(fixture.runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_the_listener_a_miss_waits_for_a_catch_up_of_its_own() {
        let fixture = fixture(false);
        let asked = Instant::now();
        assert_eq!(fixture.misses.settle().await, Ok(MissAnswer::CatchUp));
        assert_eq!(asked.elapsed(), Duration::from_millis(20));
        assert_eq!(fixture.runs.load(Ordering::SeqCst), 1);
        assert!(counted(&fixture.metrics, "catch_up", 1));
        assert!(counted(&fixture.metrics, "store", 0));

        // Back to memory once the listener is caught up again.
        fixture.freshness.set_listening(true);
        assert_eq!(fixture.misses.settle().await, Ok(MissAnswer::Store));
        fixture.freshness.set_listening(false);
        assert_eq!(fixture.misses.settle().await, Ok(MissAnswer::CatchUp));
        assert_eq!(fixture.runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_catch_up_sends_misses_back_to_the_database() {
        let fixture = fixture(true);
        fixture.freshness.set_listening(true);
        // The in-flight catch-up fails: the miss asks for one of its own, which fails too.
        fixture.catch_up.trigger();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            fixture.misses.settle().await,
            Err(CatchUpError::Failed("database down".to_owned()))
        );
        assert_eq!(fixture.runs.load(Ordering::SeqCst), 2);
        assert!(!fixture.freshness.is_current());
        assert!(counted(&fixture.metrics, "catch_up", 1));
    }
}
