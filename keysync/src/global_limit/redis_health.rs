//! How Redis is doing, as the rate-limit service sees it: every call and a light
//! periodic PING update `keysync_ratelimit_redis_up`; failures are counted, logged at
//! most once per [`LOG_PERIOD`], and make the service skip Redis for [`HOLD_OFF`] so
//! a Redis that times out does not slow every request down.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::counter::{CounterError, HitCounter};
use super::failure_mode::FailureMode;
use super::metrics::RateLimitMetrics;
use crate::log_throttle::{held_back_note, LogThrottle, LOG_PERIOD};

/// Period of the PING that keeps `keysync_ratelimit_redis_up` current when no requests
/// come, and notices a recovered Redis.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// After a failure, requests answer by the failure mode without asking Redis for this
/// long; the first request after it (or a PING) tries again.
pub const HOLD_OFF: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct RedisHealth {
    metrics: Arc<RateLimitMetrics>,
    failure_mode: FailureMode,
    errors: LogThrottle,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// `None` until the first call or PING has said.
    up: Option<bool>,
    hold_off_until: Option<Instant>,
}

impl RedisHealth {
    pub fn new(metrics: Arc<RateLimitMetrics>, failure_mode: FailureMode) -> Self {
        metrics.set_redis_up(false);
        RedisHealth {
            metrics,
            failure_mode,
            errors: LogThrottle::new(LOG_PERIOD),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a request may ask Redis at `now`, or should answer by the failure mode
    /// at once because Redis failed moments ago.
    pub fn may_call(&self, now: Instant) -> bool {
        self.state().hold_off_until.is_none_or(|until| now >= until)
    }

    /// Redis answered.
    pub fn record_success(&self) {
        self.metrics.set_redis_up(true);
        let was_up = {
            let mut state = self.state();
            state.hold_off_until = None;
            state.up.replace(true)
        };
        if was_up != Some(true) {
            info!("redis reachable: global rate limiting is counting requests");
        }
    }

    /// Redis failed at `now`.
    pub fn record_failure(&self, now: Instant, error: &CounterError) {
        self.metrics.record_redis_error();
        self.metrics.set_redis_up(false);
        {
            let mut state = self.state();
            state.up = Some(false);
            state.hold_off_until = Some(now + HOLD_OFF);
        }
        if let Some(held_back) = self.errors.admit(now) {
            warn!(
                "redis error: {error} ({}){}",
                self.failure_mode.consequence(),
                held_back_note(held_back)
            );
        }
    }
}

/// PINGs Redis now and every `interval` until `stop`, recording the outcome.
pub async fn run_pings<C: HitCounter>(
    counter: Arc<C>,
    health: Arc<RedisHealth>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let pinged = tokio::select! {
            _ = stop.cancelled() => return,
            pinged = counter.ping() => pinged,
        };
        match pinged {
            Ok(()) => health.record_success(),
            Err(error) => health.record_failure(Instant::now(), &error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::global_limit::counter::Hit;
    use crate::metrics::Metrics;

    fn health() -> (Arc<Metrics>, RedisHealth) {
        let metrics = Arc::new(Metrics::new());
        let health = RedisHealth::new(metrics.rate_limit.clone(), FailureMode::Open);
        (metrics, health)
    }

    #[test]
    fn a_failure_holds_calls_off_briefly_and_a_success_ends_it() {
        let (metrics, health) = health();
        let now = Instant::now();
        assert!(health.may_call(now));
        assert!(metrics.encode().contains("keysync_ratelimit_redis_up 0"));

        health.record_success();
        assert!(metrics.encode().contains("keysync_ratelimit_redis_up 1"));

        health.record_failure(now, &CounterError::Timeout(Duration::from_millis(250)));
        let text = metrics.encode();
        assert!(text.contains("keysync_ratelimit_redis_up 0"), "{text}");
        assert!(
            text.contains("keysync_ratelimit_redis_errors_total 1"),
            "{text}"
        );
        assert!(!health.may_call(now));
        assert!(!health.may_call(now + HOLD_OFF - Duration::from_millis(1)));
        assert!(health.may_call(now + HOLD_OFF));

        health.record_failure(now, &CounterError::Redis("refused".into()));
        assert!(!health.may_call(now));
        health.record_success();
        assert!(health.may_call(now));
        assert!(metrics
            .encode()
            .contains("keysync_ratelimit_redis_errors_total 2"));
    }

    /// Answers PING as told and counts the PINGs.
    struct Pinged {
        up: AtomicBool,
        pings: AtomicUsize,
    }

    impl HitCounter for Pinged {
        async fn add(&self, _hits: &[Hit]) -> Result<Vec<u64>, CounterError> {
            Err(CounterError::Reply("not used".into()))
        }

        async fn ping(&self) -> Result<(), CounterError> {
            self.pings.fetch_add(1, Ordering::SeqCst);
            if self.up.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(CounterError::Redis("connection refused".into()))
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn pings_keep_the_gauge_current() {
        let (metrics, health) = health();
        let health = Arc::new(health);
        let counter = Arc::new(Pinged {
            up: AtomicBool::new(true),
            pings: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        let pings = tokio::spawn(run_pings(
            counter.clone(),
            health.clone(),
            PING_INTERVAL,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(counter.pings.load(Ordering::SeqCst), 1);
        assert!(metrics.encode().contains("keysync_ratelimit_redis_up 1"));

        counter.up.store(false, Ordering::SeqCst);
        tokio::time::sleep(PING_INTERVAL).await;
        assert_eq!(counter.pings.load(Ordering::SeqCst), 2);
        let text = metrics.encode();
        assert!(text.contains("keysync_ratelimit_redis_up 0"), "{text}");
        assert!(
            text.contains("keysync_ratelimit_redis_errors_total 1"),
            "{text}"
        );

        counter.up.store(true, Ordering::SeqCst);
        tokio::time::sleep(PING_INTERVAL).await;
        assert!(metrics.encode().contains("keysync_ratelimit_redis_up 1"));

        stop.cancel();
        pings.await.unwrap();
    }
}
