//! A steady request load that remembers every outcome: threads on keep-alive
//! connections send `GET /` with keys from a list (or random keys nobody issued) at a
//! fixed total rate, and note when each request was sent, which key it carried and what
//! came back. Fault tests then judge every decision against what the key was at that
//! moment, which a load tool's summary (wrk's) cannot do.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::Connection;
use crate::seeded::Seeded;

/// Which key a request carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carried {
    /// `keys[n]`.
    Listed(usize),
    /// A well-formed key nobody issued.
    Unknown,
}

/// One request and what came back.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// When it was sent, since the load started.
    pub sent: Duration,
    /// How long the answer took.
    pub took: Duration,
    pub key: Carried,
    /// The status, or `None` when no answer came (connection refused or reset, timeout).
    pub status: Option<u16>,
}

/// How the load picks its keys and paces itself.
#[derive(Clone, Debug)]
pub struct LoadShape {
    /// Requests a second over all threads; `None` sends as fast as the gateway answers.
    pub rate: Option<u32>,
    pub threads: usize,
    /// Percent of requests with a random unknown key instead of a listed one.
    pub unknown_percent: usize,
    pub seed: u64,
}

/// A running load; [`PacedLoad::finish`] stops it and returns every outcome.
pub struct PacedLoad {
    started: Instant,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Outcome>>>,
}

impl PacedLoad {
    pub fn start(target: SocketAddr, keys: Arc<Vec<String>>, shape: &LoadShape) -> PacedLoad {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..shape.threads.max(1))
            .map(|n| {
                let keys = keys.clone();
                let stop = stop.clone();
                let shape = shape.clone();
                std::thread::Builder::new()
                    .name(format!("paced-load-{n}"))
                    .spawn(move || run_thread(target, &keys, &shape, n, started, &stop))
                    .expect("start a load thread")
            })
            .collect();
        PacedLoad {
            started,
            stop,
            threads,
        }
    }

    /// When the load started: `Outcome::sent` counts from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops the load and returns every outcome, ordered by sending time.
    pub fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        let mut outcomes: Vec<Outcome> = self
            .threads
            .into_iter()
            .flat_map(|thread| thread.join().expect("a load thread panicked"))
            .collect();
        outcomes.sort_by_key(|outcome| outcome.sent);
        outcomes
    }
}

fn run_thread(
    target: SocketAddr,
    keys: &[String],
    shape: &LoadShape,
    n: usize,
    started: Instant,
    stop: &AtomicBool,
) -> Vec<Outcome> {
    let mut random = Seeded::new(shape.seed ^ (n as u64).wrapping_mul(0x9e37_79b9));
    let mut connection = Connection::new(target);
    let interval = shape
        .rate
        .map(|rate| Duration::from_secs_f64(shape.threads.max(1) as f64 / f64::from(rate.max(1))));
    let mut outcomes = Vec::new();
    let mut next = started;
    while !stop.load(Ordering::Relaxed) {
        if let Some(interval) = interval {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += interval;
        }
        let (key, secret) = if keys.is_empty() || random.percent(shape.unknown_percent) {
            (
                Carried::Unknown,
                format!("sk_live_{}", random.alphanumeric(32)),
            )
        } else {
            let index = random.below(keys.len());
            (Carried::Listed(index), keys[index].clone())
        };
        let request =
            format!("GET / HTTP/1.1\r\nhost: load\r\nauthorization: Bearer {secret}\r\n\r\n");
        let sent = Instant::now();
        let status = connection
            .exchange(request.as_bytes())
            .ok()
            .map(|response| response.status);
        outcomes.push(Outcome {
            sent: sent - started,
            took: sent.elapsed(),
            key,
            status,
        });
    }
    outcomes
}
