//! Periodic calls of every gateway of the fleet, from one task: gateway `i` calls every
//! `interval`, the gateways spread evenly over it (as independent Envoys drift apart),
//! calls in flight side by side, each bounded by a timeout as Envoy bounds its own.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::calls::CallLog;

/// How often the task looks for calls that are due.
const TICK: Duration = Duration::from_millis(5);

/// Calls `call(i)` for each of `gateways` gateways every `interval` until `stop`,
/// recording each outcome (a call over `timeout` is a failure) in `log`.
pub async fn every_gateway<F, Fut>(
    gateways: usize,
    interval: Duration,
    timeout: Duration,
    log: Arc<CallLog>,
    stop: CancellationToken,
    mut call: F,
) where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let spacing = (interval / gateways.max(1) as u32).max(Duration::from_nanos(1));
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut in_flight = FuturesUnordered::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {
                let due = (started.elapsed().as_nanos() / spacing.as_nanos()) as u64 + 1;
                while sent < due {
                    let gateway = (sent % gateways as u64) as usize;
                    let made = call(gateway);
                    in_flight.push(async move {
                        let began = Instant::now();
                        let outcome = match tokio::time::timeout(timeout, made).await {
                            Ok(outcome) => outcome,
                            Err(_) => Err(format!("no answer within {timeout:?}")),
                        };
                        (outcome, began.elapsed())
                    });
                    sent += 1;
                }
            }
            Some((outcome, took)) = in_flight.next(), if !in_flight.is_empty() => {
                log.record(outcome, took);
            }
        }
    }
}
