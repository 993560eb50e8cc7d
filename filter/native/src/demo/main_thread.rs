//! Work a demonstration request hands to the main thread: a configuration's one-shot callout
//! or a configuration's streaming request to the cluster, whose outcome comes back to the
//! waiting request's worker through the request's scheduler.
//!
//! Locks are never held across a call into Envoy: Envoy may deliver a stream's reset from
//! inside `start_stream`, re-entering this module on the same thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::abi::{
    log, CalloutResponse, CalloutResult, FilterConfigHandle, FilterConfigScheduler, LogLevel,
    StreamResetReason, StreamScheduler,
};

/// What to do on the main thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    Callout,
    Stream,
    /// A stream reset by the module before it sends anything.
    StreamReset,
}

struct Pending {
    job: Job,
    /// Brings the outcome back to the request's worker.
    waiter: StreamScheduler,
    outcome: Option<String>,
    /// A stream's response so far: `:status` and body bytes.
    status: String,
    bytes: usize,
}

/// The jobs of one filter configuration.
pub struct MainThreadWork {
    scheduler: FilterConfigScheduler,
    next_id: AtomicU64,
    jobs: Mutex<HashMap<u64, Pending>>,
    /// Callout or stream id (Envoy's) to job id.
    requests: Mutex<HashMap<u64, u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MainThreadWork {
    pub fn new(scheduler: FilterConfigScheduler) -> MainThreadWork {
        MainThreadWork {
            scheduler,
            next_id: AtomicU64::new(1),
            jobs: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
        }
    }

    /// From a worker: queue `job` for the main thread; `waiter` gets the job id as its event
    /// when the outcome is ready ([`MainThreadWork::take_outcome`]).
    pub fn submit(&self, job: Job, waiter: StreamScheduler) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let pending = Pending {
            job,
            waiter,
            outcome: None,
            status: String::new(),
            bytes: 0,
        };
        lock(&self.jobs).insert(id, pending);
        self.scheduler.commit(id);
        id
    }

    /// From the worker, once woken: the outcome of job `id`.
    pub fn take_outcome(&self, id: u64) -> Option<String> {
        lock(&self.jobs)
            .remove(&id)
            .and_then(|pending| pending.outcome)
    }

    /// On the main thread: start job `id` against `cluster`.
    pub fn start(&self, config: &mut FilterConfigHandle<'_>, id: u64, cluster: &str) {
        let Some(job) = lock(&self.jobs).get(&id).map(|pending| pending.job) else {
            return;
        };
        let started = match job {
            Job::Callout => config
                .callout(
                    cluster,
                    &[
                        (":method", b"GET"),
                        (":path", b"/demo-main-callout"),
                        ("host", b"demo"),
                    ],
                    b"",
                    5_000,
                )
                .map(|callout_id| {
                    lock(&self.requests).insert(callout_id, id);
                }),
            Job::Stream | Job::StreamReset => {
                let headers: [(&str, &[u8]); 4] = [
                    (":method", b"POST"),
                    (":path", b"/demo-main-stream"),
                    ("host", b"demo"),
                    ("content-type", b"text/plain"),
                ];
                config
                    .start_stream(cluster, &headers, b"", false, 5_000)
                    .map(|stream_id| {
                        // Known before the data goes out: its answer may come at once.
                        lock(&self.requests).insert(stream_id, id);
                        if job == Job::StreamReset {
                            config.reset_stream(stream_id);
                        } else if !config.send_stream_data(stream_id, b"ping", true) {
                            log(
                                LogLevel::Warn,
                                "keysync-abi-demo: stream closed before its data",
                            );
                        }
                    })
            }
        };
        if let Err(error) = started {
            self.finish(id, format!("{job:?} not started: {error:?}"));
        }
    }

    pub fn callout_done(
        &self,
        callout_id: u64,
        result: CalloutResult,
        response: &CalloutResponse<'_>,
    ) {
        let Some(id) = lock(&self.requests).remove(&callout_id) else {
            return;
        };
        let status = response
            .header(":status")
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
            .into_owned();
        let outcome = match result {
            CalloutResult::Success => {
                format!("callout status={status} bytes={}", response.body().len())
            }
            other => format!("callout failed: {other:?}"),
        };
        self.finish(id, outcome);
    }

    pub fn stream_headers(&self, stream_id: u64, headers: &[(&[u8], &[u8])]) {
        let status = headers
            .iter()
            .find(|(name, _)| *name == b":status")
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned());
        self.with_stream(stream_id, |pending| {
            pending.status = status.unwrap_or_default();
        });
    }

    pub fn stream_data(&self, stream_id: u64, chunks: &[&[u8]]) {
        let bytes: usize = chunks.iter().map(|chunk| chunk.len()).sum();
        self.with_stream(stream_id, |pending| pending.bytes += bytes);
    }

    pub fn stream_complete(&self, stream_id: u64) {
        let Some(id) = lock(&self.requests).remove(&stream_id) else {
            return;
        };
        let outcome = lock(&self.jobs)
            .get(&id)
            .map(|pending| format!("stream status={} bytes={}", pending.status, pending.bytes));
        if let Some(outcome) = outcome {
            self.finish(id, outcome);
        }
    }

    pub fn stream_reset(&self, stream_id: u64, reason: StreamResetReason) {
        if let Some(id) = lock(&self.requests).remove(&stream_id) {
            self.finish(id, format!("stream reset: {reason:?}"));
        }
    }

    fn with_stream(&self, stream_id: u64, update: impl FnOnce(&mut Pending)) {
        let Some(id) = lock(&self.requests).get(&stream_id).copied() else {
            return;
        };
        if let Some(pending) = lock(&self.jobs).get_mut(&id) {
            update(pending);
        }
    }

    /// Records job `id`'s outcome and wakes its request.
    fn finish(&self, id: u64, outcome: String) {
        let mut jobs = lock(&self.jobs);
        if let Some(pending) = jobs.get_mut(&id) {
            pending.outcome = Some(outcome);
            // Only posts to the request's worker: safe under the lock.
            pending.waiter.commit(id);
        }
    }
}
