//! keysync kill loop: a steady load over many keys while keysync is killed (`kill -9`,
//! then started again on the same port) and frozen (`SIGSTOP` for a while, then
//! `SIGCONT`) again and again, and a tenth of the keys are revoked in the database as
//! it goes. Every answer is judged against what its key was when the request was sent:
//! it must show no wrong decision (a revoked key admitted after the promised bound, or
//! a valid key refused while the store could decide), and the revocation latencies
//! during the faults.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::figures::{duration, statuses, Figures, Latencies, Verdict};
use super::{time_until_status, Scale, HEALTHY_BOUND};
use crate::gateway::{Gateway, GatewayOptions};
use crate::key_population::KeyPopulation;
use crate::keysync::{self, Keysync};
use crate::paced_load::{Carried, LoadShape, PacedLoad};
use crate::poll::DEADLINE;
use crate::postgres::database_of;
use crate::process::Signal;
use crate::stack::Backend;
use crate::TestPostgres;

/// How long after a fault ends the system counts as recovering: keysync is up, but the
/// gateway's stream may wait for its reconnect backoff (at most 5 s) before it hears of
/// changes again.
const RECOVERY: Duration = Duration::from_secs(6);
/// The promise's hard bound (`max_staleness`'s default).
const MAX_STALENESS: Duration = Duration::from_secs(15 * 60);
/// Pause between two faults.
const GAP: Duration = Duration::from_secs(2);

/// A revocation, as it happened.
#[derive(Clone, Copy)]
struct Revocation {
    /// When the SQL was sent (from here a refusal is right).
    started: Instant,
    /// When it returned (committed).
    done: Instant,
    /// Whether a fault overlapped its first second, or the recovery after one.
    during_fault: bool,
    /// Time from `done` to the gateway's first 403 for the key.
    latency: Option<Duration>,
}

pub fn run(scale: Scale) -> Figures {
    let (rate, key_count, kills, stops) = scale.pick((300, 200, 2, 2), (2_000, 1_000, 20, 20));
    let stop_for = scale.pick(Duration::from_secs(5), Duration::from_secs(10));
    let revocations = key_count / 10;

    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    keysync::migrate(&database_url);
    let org = keysync::create_org(&database_url, "kill-loop");
    let population = KeyPopulation::new(&postgres, database_of(&database_url), &org, "kill");
    population.insert(0..key_count);
    let mut keysync = Keysync::start(&database_url, &[]);
    let grpc = keysync.grpc.to_string();
    let backend = Backend::start();
    let mut options = GatewayOptions::new(keysync.grpc, backend.backend_urls());
    // The shipped defaults: a full refresh every 15 minutes, the stream does the work.
    options.sync_config = super::SHIPPED_SYNC.into();
    let gateway = Gateway::start(options);
    let secrets: Arc<Vec<String>> =
        Arc::new((0..key_count).map(|n| population.secret(n)).collect());
    gateway.wait_for_status("/", &secrets[0], 200, DEADLINE);
    gateway.wait_for_status("/", &secrets[key_count - 1], 200, DEADLINE);
    gateway.wait_until_synced(DEADLINE);

    let load = PacedLoad::start(
        gateway.addr,
        secrets.clone(),
        &LoadShape {
            rate: Some(rate),
            threads: scale.pick(4, 16),
            unknown_percent: 0,
            seed: 0x6b69_6c6c,
        },
    );
    let faults: Mutex<Vec<(Instant, Instant)>> = Mutex::default();
    let planned = (GAP + Duration::from_secs(3)) * kills as u32 + (GAP + stop_for) * stops as u32;
    let mut ready_after = Latencies::new();
    let revoked = std::thread::scope(|scope| {
        let revoker = scope.spawn(|| {
            revoke_during(revocations, planned, &secrets, gateway.addr, &faults, |n| {
                population.revoke(n);
            })
        });
        for round in 0..kills.max(stops) {
            if round < kills {
                let started = Instant::now();
                keysync.process.kill();
                keysync = Keysync::start_on(&database_url, &grpc, &[]);
                ready_after.push(started.elapsed());
                faults
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((started, Instant::now()));
                std::thread::sleep(GAP);
            }
            if round < stops {
                let started = Instant::now();
                keysync.process.signal(Signal::Stop);
                std::thread::sleep(stop_for);
                keysync.process.signal(Signal::Cont);
                faults
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((started, Instant::now()));
                std::thread::sleep(GAP);
            }
        }
        revoker.join().expect("the revoker panicked")
    });
    let started = load.started();
    let outcomes = load.finish();
    let took = outcomes.last().map_or(Duration::ZERO, |o| o.sent);

    // Judge every answer by what its key was when the request was sent.
    let mut wrong: Vec<String> = Vec::new();
    let mut admitted_late = 0;
    let mut valid_refused = 0;
    for outcome in &outcomes {
        let Carried::Listed(n) = outcome.key else {
            continue;
        };
        let sent = started + outcome.sent;
        let revocation = revoked.get(n).copied().flatten();
        let verdict = match revocation {
            Some(r) if sent >= r.started => {
                let bound = if r.during_fault {
                    MAX_STALENESS
                } else {
                    HEALTHY_BOUND
                };
                (outcome.status == Some(200) && sent > r.done + bound).then(|| {
                    admitted_late += 1;
                    format!("key {n} admitted {:?} after its revocation", sent - r.done)
                })
            }
            _ => (outcome.status != Some(200)).then(|| {
                valid_refused += 1;
                format!(
                    "valid key {n} got {:?} at {:.1}s",
                    outcome.status,
                    outcome.sent.as_secs_f64()
                )
            }),
        };
        if let Some(what) = verdict {
            if wrong.len() < 20 {
                wrong.push(what);
            }
        }
    }
    let mut healthy = Latencies::new();
    let mut during = Latencies::new();
    let mut never = 0;
    for r in revoked.iter().flatten() {
        match (r.latency, r.during_fault) {
            (Some(latency), false) => healthy.push(latency),
            (Some(latency), true) => during.push(latency),
            (None, _) => never += 1,
        }
    }

    let mut figures = Figures::new("keysync kill loop");
    figures.add(
        "load",
        format!(
            "{rate} req/s planned over {key_count} keys, {} threads",
            scale.pick(4, 16)
        ),
    );
    figures.add(
        "requests",
        format!(
            "{} in {} ({:.0}/s)",
            outcomes.len(),
            duration(took),
            outcomes.len() as f64 / took.as_secs_f64().max(0.001)
        ),
    );
    figures.add("answers", statuses(outcomes.iter().map(|o| o.status)));
    figures.add(
        "faults",
        format!(
            "{kills} kill -9 + restart, {stops} SIGSTOP for {}",
            duration(stop_for)
        ),
    );
    figures.add("keysync restart to snapshot loaded", ready_after.summary());
    figures.add(
        "revocations",
        format!(
            "{} ({} while healthy, {} during a fault or its recovery)",
            revoked.iter().flatten().count(),
            healthy.len(),
            during.len() + never
        ),
    );
    figures.add("revoke -> first 403, healthy", healthy.summary());
    figures.add("revoke -> first 403, during faults", during.summary());
    figures.add(
        "revocation p99 during faults",
        duration(during.percentile(99.0)),
    );
    figures.add("revocations never refused within 60 s", never);
    figures.add(
        "revoked keys admitted after the bound (must be 0)",
        admitted_late,
    );
    figures.add("valid keys refused (must be 0)", valid_refused);
    super::operator_figures(&mut figures, &gateway, Some(&keysync));
    figures.print();

    let mut verdict = Verdict::new();
    verdict.check(wrong.is_empty(), "0 wrong decisions", || wrong.join("\n"));
    verdict.check(never == 0, "every revocation is refused in the end", || {
        format!("{never} revocations were still admitted after 60 s")
    });
    verdict.check(
        healthy.max() <= HEALTHY_BOUND,
        "a revocation is refused within 1 s while healthy",
        || healthy.summary(),
    );
    verdict.finish("keysync kill loop");
    figures
}

/// Revokes keys `0..count` evenly over `planned`, each followed by a probe for its
/// first 403; notes whether a fault overlapped it.
fn revoke_during(
    count: usize,
    planned: Duration,
    secrets: &[String],
    target: std::net::SocketAddr,
    faults: &Mutex<Vec<(Instant, Instant)>>,
    revoke: impl Fn(usize),
) -> Vec<Option<Revocation>> {
    let begin = Instant::now();
    let spacing = planned / (count as u32 + 1);
    let probes: Vec<_> = (0..count)
        .map(|n| {
            let due = begin + spacing * (n as u32 + 1);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let started = Instant::now();
            revoke(n);
            let done = Instant::now();
            let secret = secrets[n].clone();
            let probe = std::thread::spawn(move || {
                time_until_status(target, &secret, 403, done, Duration::from_secs(60))
            });
            (started, done, probe)
        })
        .collect();
    probes
        .into_iter()
        .map(|(started, done, probe)| {
            let latency = probe.join().expect("a probe panicked");
            let faults = faults.lock().unwrap_or_else(PoisonError::into_inner);
            let during_fault = faults
                .iter()
                .any(|&(from, to)| started < to + RECOVERY && done + HEALTHY_BOUND > from);
            Some(Revocation {
                started,
                done,
                during_fault,
                latency,
            })
        })
        .collect()
}
