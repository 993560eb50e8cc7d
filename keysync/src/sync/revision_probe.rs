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
use crate::metrics::{Metrics, ProbeResult};
use crate::sync::catch_up::CatchUp;
use crate::sync::loader::Loader;
use crate::sync::reload::{Probe, Reloader};

/// How often a failing confirmation may be logged.
pub const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(30);

/// Probes every `interval` until `stop`.
pub async fn run<L: Loader>(
    reloader: Arc<Reloader<L>>,
    catch_up: CatchUp,
    interval: Duration,
    metrics: Arc<Metrics>,
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
