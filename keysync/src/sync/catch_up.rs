//! On-demand incremental catch-ups, coalesced so the database load stays bounded.
//!
//! A lookup for an unknown key may be for a key created since the last catch-up, so,
//! unless change notifications already keep the key set current
//! ([`crate::sync::miss`]), it waits for a catch-up that *starts after it asked*, then
//! answers from the key set. One worker task runs the catch-ups: at most one is in
//! flight, every request waiting when one starts shares it, and starts are at least
//! `min_spacing` apart. However many unknown keys arrive, the database sees at most one
//! catch-up per `min_spacing`.
//!
//! Requests are numbered as they are queued, and the worker publishes the last number
//! each finished catch-up served, so a caller can also wait for the catch-ups already
//! asked for to finish without asking for one ([`CatchUp::settled`]).

use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Spacing used by `serve`: at most 20 lookup-driven catch-ups a second.
pub const DEFAULT_MIN_SPACING: Duration = Duration::from_millis(50);

/// Why a requested catch-up did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatchUpError {
    /// The catch-up ran and failed (the database is unreachable, say).
    #[error("catch-up failed: {0}")]
    Failed(String),
    /// The worker is gone: the server is shutting down.
    #[error("catch-up worker stopped")]
    Stopped,
}

/// One queued request: its number, and where its outcome goes.
#[derive(Debug)]
struct Waiter {
    ticket: u64,
    outcome: oneshot::Sender<Result<(), CatchUpError>>,
}

/// Handle to the catch-up worker; cheap to clone. The worker stops when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct CatchUp {
    /// The last ticket handed out. Held while queueing, so the queue is in ticket order.
    tickets: Arc<Mutex<u64>>,
    requests: mpsc::UnboundedSender<Waiter>,
    /// The last ticket served by a finished catch-up (whatever its outcome).
    served: watch::Receiver<u64>,
}

impl CatchUp {
    /// Starts the worker on the current tokio runtime; `run` performs one catch-up.
    pub fn spawn<F, Fut, E>(min_spacing: Duration, run: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + 'static,
    {
        let (requests, receiver) = mpsc::unbounded_channel();
        let (served, served_receiver) = watch::channel(0);
        tokio::spawn(work(receiver, served, min_spacing, run));
        CatchUp {
            tickets: Arc::new(Mutex::new(0)),
            requests,
            served: served_receiver,
        }
    }

    /// Queues a request; the receiver gets the outcome of the catch-up that serves it.
    fn ask(&self) -> Result<oneshot::Receiver<Result<(), CatchUpError>>, CatchUpError> {
        let (outcome, receiver) = oneshot::channel();
        let mut last = self.tickets.lock().unwrap_or_else(PoisonError::into_inner);
        *last += 1;
        self.requests
            .send(Waiter {
                ticket: *last,
                outcome,
            })
            .map_err(|_| CatchUpError::Stopped)?;
        Ok(receiver)
    }

    /// Waits for a catch-up that starts after this call, and returns its outcome.
    pub async fn request(&self) -> Result<(), CatchUpError> {
        self.ask()?.await.map_err(|_| CatchUpError::Stopped)?
    }

    /// Asks for a catch-up that starts after this call without waiting for it (a change
    /// notification, a watcher ahead of the key set). Failures are the worker's to log.
    pub fn trigger(&self) {
        // A stopped worker means the server is shutting down: nothing left to do.
        let _ = self.ask();
    }

    /// Waits until every catch-up asked for before this call (queued or running) has
    /// finished, whatever its outcome, without asking for one: at once when none is.
    pub async fn settled(&self) -> Result<(), CatchUpError> {
        let asked = *self.tickets.lock().unwrap_or_else(PoisonError::into_inner);
        let mut served = self.served.clone();
        served
            .wait_for(|served| *served >= asked)
            .await
            .map(drop)
            .map_err(|_| CatchUpError::Stopped)
    }
}

async fn work<F, Fut, E>(
    mut requests: mpsc::UnboundedReceiver<Waiter>,
    served: watch::Sender<u64>,
    min_spacing: Duration,
    mut run: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let mut last_start: Option<Instant> = None;
    while let Some(first) = requests.recv().await {
        if let Some(last_start) = last_start {
            tokio::time::sleep_until(last_start + min_spacing).await;
        }
        // Everyone queued by now asked before this catch-up starts, so it serves them
        // all; later requests stay queued for the next one.
        let mut waiters = vec![first];
        while let Ok(waiter) = requests.try_recv() {
            waiters.push(waiter);
        }
        last_start = Some(Instant::now());
        let outcome = run()
            .await
            .map_err(|error| CatchUpError::Failed(error.to_string()));
        // Queued in ticket order: the last one is the highest.
        if let Some(last) = waiters.last() {
            served.send_replace(last.ticket);
        }
        for waiter in waiters {
            // A waiter that gave up (its client went away) no longer listens.
            let _ = waiter.outcome.send(outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A fake catch-up that records when each run started and takes `duration`.
    #[derive(Clone, Default)]
    struct Recorder {
        starts: Arc<Mutex<Vec<Instant>>>,
    }

    impl Recorder {
        fn spawn(&self, duration: Duration, fail_first: usize) -> CatchUp {
            let starts = self.starts.clone();
            CatchUp::spawn(DEFAULT_MIN_SPACING, move || {
                let starts = starts.clone();
                async move {
                    let run = {
                        let mut starts = starts.lock().unwrap();
                        starts.push(Instant::now());
                        starts.len()
                    };
                    tokio::time::sleep(duration).await;
                    if run <= fail_first {
                        Err(format!("database down (run {run})"))
                    } else {
                        Ok(())
                    }
                }
            })
        }

        fn starts(&self) -> Vec<Instant> {
            self.starts.lock().unwrap().clone()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_share_one_catch_up() {
        let recorder = Recorder::default();
        let catch_up = recorder.spawn(Duration::from_millis(10), 0);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..100 {
            let catch_up = catch_up.clone();
            tasks.spawn(async move { catch_up.request().await });
        }
        while let Some(outcome) = tasks.join_next().await {
            assert_eq!(outcome.unwrap(), Ok(()));
        }
        assert_eq!(recorder.starts().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn request_during_a_catch_up_waits_for_the_next_one() {
        let recorder = Recorder::default();
        let catch_up = recorder.spawn(Duration::from_millis(100), 0);
        let first = tokio::spawn({
            let catch_up = catch_up.clone();
            async move { catch_up.request().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(recorder.starts().len(), 1, "first catch-up is in flight");

        let asked = Instant::now();
        assert_eq!(catch_up.request().await, Ok(()));
        let starts = recorder.starts();
        assert_eq!(starts.len(), 2);
        assert!(
            starts[1] >= asked,
            "served by a catch-up started before it asked"
        );
        // At most one in flight: the second started after the first finished.
        assert!(starts[1] >= starts[0] + Duration::from_millis(100));
        assert_eq!(first.await.unwrap(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn catch_ups_are_spaced_however_fast_requests_come() {
        let recorder = Recorder::default();
        let catch_up = recorder.spawn(Duration::ZERO, 0);
        let began = Instant::now();
        for _ in 0..5 {
            catch_up.request().await.unwrap();
        }
        let starts = recorder.starts();
        assert_eq!(starts.len(), 5);
        assert_eq!(starts[0], began, "the first one does not wait");
        for pair in starts.windows(2) {
            assert!(pair[1] - pair[0] >= DEFAULT_MIN_SPACING, "{pair:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_coalesce_with_requests() {
        let recorder = Recorder::default();
        let catch_up = recorder.spawn(Duration::from_millis(10), 0);
        for _ in 0..10 {
            catch_up.trigger();
        }
        assert_eq!(catch_up.request().await, Ok(()));
        assert_eq!(recorder.starts().len(), 1, "one catch-up served them all");
    }

    #[tokio::test(start_paused = true)]
    async fn settled_with_nothing_asked_returns_at_once() {
        let recorder = Recorder::default();
        let catch_up = recorder.spawn(Duration::from_millis(10), 0);
        let asked = Instant::now();
        assert_eq!(catch_up.settled().await, Ok(()));
        assert_eq!(asked.elapsed(), Duration::ZERO);
        assert!(recorder.starts().is_empty(), "settling starts nothing");

        catch_up.request().await.unwrap();
        let asked = Instant::now();
        assert_eq!(catch_up.settled().await, Ok(()));
        assert_eq!(asked.elapsed(), Duration::ZERO);
        assert_eq!(recorder.starts().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn settled_waits_for_the_catch_up_in_flight_without_asking_for_another() {
        let recorder = Recorder::default();
        let catch_up = recorder.spawn(Duration::from_millis(100), 1);
        catch_up.trigger();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(recorder.starts().len(), 1, "in flight");
        // Its failure is not settled's to report.
        assert_eq!(catch_up.settled().await, Ok(()));
        assert_eq!(recorder.starts()[0].elapsed(), Duration::from_millis(100));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(recorder.starts().len(), 1, "no catch-up of its own");
    }

    #[tokio::test(start_paused = true)]
    async fn settled_waits_for_a_queued_catch_up_too() {
        let recorder = Recorder::default();
        let catch_up = recorder.spawn(Duration::from_millis(10), 0);
        catch_up.request().await.unwrap();
        // Queued behind the spacing: it will run, so settling waits for it.
        catch_up.trigger();
        assert_eq!(catch_up.settled().await, Ok(()));
        let starts = recorder.starts();
        assert_eq!(starts.len(), 2);
        assert_eq!(starts[1] - starts[0], DEFAULT_MIN_SPACING);
        assert_eq!(starts[1].elapsed(), Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn failure_reaches_every_waiter_and_the_next_request_retries() {
        let recorder = Recorder::default();
        let catch_up = recorder.spawn(Duration::from_millis(5), 1);
        let (a, b) = tokio::join!(catch_up.request(), catch_up.request());
        let expected = Err(CatchUpError::Failed("database down (run 1)".to_owned()));
        assert_eq!(a, expected);
        assert_eq!(b, expected);
        assert_eq!(catch_up.request().await, Ok(()));
        assert_eq!(recorder.starts().len(), 2);
    }
}
