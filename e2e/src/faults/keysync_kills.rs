//! keysync kill loop: a steady load over many keys while keysync is killed (`kill -9`,
//! then started again on the same port) and frozen (`SIGSTOP` for a while, then
//! `SIGCONT`) again and again, and a tenth of the keys are revoked in the database as
//! it goes. The gateway runs with a short `max_staleness` ([`MAX_STALENESS`], shorter
//! than a freeze), so the promise's hard bound is reached in every freeze instead of
//! lying far beyond the run.
//!
//! Every answer is judged against what its key was when the request was sent:
//! - a revoked key must not be admitted later than 1 s after its revocation while
//!   healthy, nor later than `max_staleness` plus [`STALENESS_SLACK`] when a fault
//!   overlapped it; and never again once the gateway has refused it: a 200 sent after
//!   the key's first 403 came back is wrong, but for the record cache's window (each
//!   worker serves a hot key from its own copy until its next tick after the store
//!   changed, `filter/core/src/auth/record_cache.rs`, and a key refused as revoked is
//!   out of the store before its 403 is sent: a request on another worker may still be
//!   admitted for one tick; [`RECORD_CACHE_WINDOW`]);
//! - a valid key must get 200, except `503 auth_unavailable` while the store may be
//!   stale: from `max_staleness` minus a confirmation period and the gateway's slack
//!   ([`STALENESS_SLACK`]) into a fault until its recovery is over. Every freeze must
//!   show such 503s: the bound is live.
//!
//! It reports the revocation latencies during the faults.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::figures::{duration, statuses, Figures, Latencies, Verdict};
use super::filter_health::FilterHealth;
use super::{time_until_status, Scale, HEALTHY_BOUND, STALENESS_SLACK};
use crate::gateway::{FilterKind, Gateway};
use crate::key_population::KeyPopulation;
use crate::keysync::{self, Keysync};
use crate::paced_load::{Carried, LoadShape, Outcome, PacedLoad};
use crate::poll::DEADLINE;
use crate::postgres::database_of;
use crate::process::Signal;
use crate::stack::Backend;
use crate::TestPostgres;

/// How long after a fault ends the system counts as recovering: keysync is up, but the
/// gateway's stream may wait for its reconnect backoff (at most 5 s) before it hears of
/// changes again.
const RECOVERY: Duration = Duration::from_secs(6);
/// The gateway's `max_staleness`: shorter than every freeze, longer than keysync's
/// confirmation period with room for a loaded machine.
pub const MAX_STALENESS: Duration = Duration::from_secs(6);
/// keysync confirms its key set every `KEYSYNC_CONFIRM_INTERVAL` (2 s by default): when
/// a fault begins, the gateway's data may already be that old.
const CONFIRM_INTERVAL: Duration = Duration::from_secs(2);
/// After a key's first 403, how long another worker may still admit it from its record
/// cache: one worker tick (the filter's `WORKER_TICK`), what `docs/failures.md`
/// promises. The store changed before that 403 was sent (a stream change, or keysync's
/// refusal taking the key out of it), and every worker drops its copies at its next
/// tick after the store changed.
const RECORD_CACHE_WINDOW: Duration = Duration::from_millis(250);
/// Pause between two faults.
const GAP: Duration = Duration::from_secs(2);

/// What was done to keysync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultKind {
    /// `kill -9`, then started again on its port.
    Kill,
    /// `SIGSTOP`, then `SIGCONT`.
    Freeze,
}

/// One fault, from its start to its end.
#[derive(Clone, Copy, Debug)]
struct Fault {
    kind: FaultKind,
    from: Instant,
    to: Instant,
}

impl Fault {
    /// Whether a valid key's 503 sent at `sent` is the contract's fail-closed answer to
    /// a store that may be stale: no earlier than `max_staleness` after the oldest
    /// confirmation the gateway may hold when the fault began, no later than the end of
    /// the recovery.
    fn excuses_a_stale_refusal(&self, sent: Instant) -> bool {
        let earliest = MAX_STALENESS.saturating_sub(CONFIRM_INTERVAL + STALENESS_SLACK);
        sent >= self.from + earliest && sent < self.to + RECOVERY
    }
}

/// A revocation, as it happened.
#[derive(Clone, Copy)]
struct Revocation {
    /// When the SQL was sent (from here a refusal is right).
    started: Instant,
    /// When it returned (committed).
    done: Instant,
    /// Whether a fault overlapped its first second, or the recovery after one.
    during_fault: bool,
    /// Time from `done` to the probe's first 403 for the key.
    latency: Option<Duration>,
}

impl Revocation {
    /// After this, a 200 for the key is an admission past the promise.
    fn bound(&self) -> Instant {
        if self.during_fault {
            self.done + MAX_STALENESS + STALENESS_SLACK
        } else {
            self.done + HEALTHY_BOUND
        }
    }
}

/// The case against `filter`'s gateway: the wasm filter (`FilterKind::Wasm`) or the
/// native one (`FilterKind::Native`).
pub fn run(scale: Scale, filter: FilterKind) -> Figures {
    let (rate, key_count, kills, stops) = scale.pick((300, 200, 2, 2), (2_000, 1_000, 20, 20));
    let stop_for = scale.pick(Duration::from_secs(8), Duration::from_secs(10));
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
    // The shipped sync defaults (a full refresh every 15 minutes, the stream does the
    // work), with a short max_staleness.
    let mut options = super::shipped_options(keysync.grpc, &backend, Some(MAX_STALENESS));
    options.template = filter.template().into();
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
    let mut faults: Vec<Fault> = Vec::new();
    let planned = (GAP + Duration::from_secs(3)) * kills as u32 + (GAP + stop_for) * stops as u32;
    let mut ready_after = Latencies::new();
    let mut revoked = std::thread::scope(|scope| {
        let revoker = scope.spawn(|| {
            revoke_during(revocations, planned, &secrets, gateway.addr, |n| {
                population.revoke(n);
            })
        });
        let mut note = |kind: FaultKind, from: Instant| {
            faults.push(Fault {
                kind,
                from,
                to: Instant::now(),
            });
        };
        for round in 0..kills.max(stops) {
            if round < kills {
                let started = Instant::now();
                keysync.process.kill();
                keysync = Keysync::start_on(&database_url, &grpc, &[]);
                ready_after.push(started.elapsed());
                note(FaultKind::Kill, started);
                std::thread::sleep(GAP);
            }
            if round < stops {
                let started = Instant::now();
                keysync.process.signal(Signal::Stop);
                std::thread::sleep(stop_for);
                keysync.process.signal(Signal::Cont);
                note(FaultKind::Freeze, started);
                std::thread::sleep(GAP);
            }
        }
        revoker.join().expect("the revoker panicked")
    });
    let started = load.started();
    let outcomes = load.finish();
    for r in revoked.iter_mut().flatten() {
        r.during_fault = overlapped(r, &faults);
    }
    let took = outcomes.last().map_or(Duration::ZERO, |o| o.sent);

    let judged = judge(&outcomes, started, &revoked, &faults);
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
    let freezes = faults
        .iter()
        .filter(|fault| fault.kind == FaultKind::Freeze)
        .count();

    let mut figures = Figures::new(&format!("keysync kill loop ({filter:?})"));
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
    figures.add("the gateway's max_staleness", duration(MAX_STALENESS));
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
        &format!(
            "revoked keys admitted past the bound: 1 s healthy, max_staleness + {} during faults (must be 0)",
            duration(STALENESS_SLACK)
        ),
        judged.admitted_late,
    );
    let window = duration(RECORD_CACHE_WINDOW);
    figures.add(
        &format!("revoked keys admitted more than {window} after their first 403 (must be 0)"),
        judged.admitted_after_refusal,
    );
    figures.add(
        &format!(
            "revoked keys admitted within {window} after their first 403 (a worker's record cache)"
        ),
        judged.admitted_in_cache_window,
    );
    figures.add(
        "answers for revoked keys after their first 403",
        statuses(judged.after_refusal.iter().copied()),
    );
    figures.add(
        "valid keys answered 503 while the store may be stale (allowed)",
        judged.stale_refusals,
    );
    figures.add(
        "freezes in which max_staleness tripped (a valid key got 503)",
        format!("{} of {freezes}", judged.freezes_tripped),
    );
    figures.add(
        "valid keys refused otherwise (must be 0)",
        judged.valid_refused,
    );
    let health = FilterHealth::of(&gateway);
    health.add_figures(&mut figures);
    super::operator_figures(&mut figures, &gateway, Some(&keysync));
    figures.print();

    let mut verdict = Verdict::new();
    verdict.check(judged.wrong.is_empty(), "0 wrong decisions", || {
        format!(
            "{}\nfaults, from the load's start: {}\nrevocations done at: {}",
            judged.wrong.join("\n"),
            timeline(&faults, started),
            revoked
                .iter()
                .enumerate()
                .filter_map(|(n, r)| Some(format!(
                    "key {n} {:.2}s",
                    r.as_ref()?
                        .done
                        .saturating_duration_since(started)
                        .as_secs_f64()
                )))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    verdict.check(
        judged.freezes_tripped == freezes,
        "max_staleness trips in every freeze (the bound is live)",
        || {
            format!(
                "{} of {freezes} freezes showed a 503",
                judged.freezes_tripped
            )
        },
    );
    verdict.check(never == 0, "every revocation is refused in the end", || {
        format!("{never} revocations were still admitted after 60 s")
    });
    verdict.check(
        healthy.max() <= HEALTHY_BOUND,
        "a revocation is refused within 1 s while healthy",
        || healthy.summary(),
    );
    health.check(&mut verdict, &gateway);
    verdict.finish(&format!("keysync kill loop ({filter:?})"));
    figures
}

/// The faults as `kill 10.10-10.45s, freeze 12.50-20.50s, ...` from `started`.
fn timeline(faults: &[Fault], started: Instant) -> String {
    faults
        .iter()
        .map(|fault| {
            let at = |instant: Instant| instant.saturating_duration_since(started).as_secs_f64();
            let kind = match fault.kind {
                FaultKind::Kill => "kill",
                FaultKind::Freeze => "freeze",
            };
            format!("{kind} {:.2}-{:.2}s", at(fault.from), at(fault.to))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the judging of every answer found.
#[derive(Default)]
struct Judged {
    /// The first few wrong decisions, said in words.
    wrong: Vec<String>,
    admitted_late: usize,
    admitted_after_refusal: usize,
    /// 200s after a key's first 403 but within [`RECORD_CACHE_WINDOW`] of it.
    admitted_in_cache_window: usize,
    /// Every answer for a revoked key sent after its first 403 came back.
    after_refusal: Vec<Option<u16>>,
    valid_refused: usize,
    stale_refusals: usize,
    /// Freezes during (or right after) which a valid key got 503.
    freezes_tripped: usize,
}

/// Judges every answer by what its key was when the request was sent (see the module
/// documentation).
fn judge(
    outcomes: &[Outcome],
    started: Instant,
    revoked: &[Option<Revocation>],
    faults: &[Fault],
) -> Judged {
    let first_refusals = first_refusals(outcomes, started, revoked);
    let mut judged = Judged::default();
    let mut tripped = vec![false; faults.len()];
    for outcome in outcomes {
        let Carried::Listed(n) = outcome.key else {
            continue;
        };
        let sent = started + outcome.sent;
        let at = outcome.sent.as_secs_f64();
        let wrong = match revoked.get(n).copied().flatten() {
            Some(r) if sent >= r.started => {
                let refused_at = first_refusals.get(n).copied().flatten();
                let after_refusal = refused_at.is_some_and(|refused| sent > refused);
                let past_window =
                    refused_at.is_some_and(|refused| sent > refused + RECORD_CACHE_WINDOW);
                if after_refusal {
                    judged.after_refusal.push(outcome.status);
                }
                if outcome.status != Some(200) {
                    None
                } else if after_refusal && !past_window {
                    judged.admitted_in_cache_window += 1;
                    None
                } else if past_window {
                    judged.admitted_after_refusal += 1;
                    Some(format!(
                        "key {n} admitted at {at:.3}s, after its first 403 at {:.3}s",
                        refused_at.map_or(0.0, |refused| refused
                            .saturating_duration_since(started)
                            .as_secs_f64())
                    ))
                } else if sent > r.bound() {
                    judged.admitted_late += 1;
                    Some(format!(
                        "key {n} admitted at {at:.1}s, {:?} after its revocation",
                        sent - r.done
                    ))
                } else {
                    None
                }
            }
            _ => match outcome.status {
                Some(200) => None,
                Some(503) if faults.iter().any(|f| f.excuses_a_stale_refusal(sent)) => {
                    judged.stale_refusals += 1;
                    for (fault, tripped) in faults.iter().zip(tripped.iter_mut()) {
                        *tripped |= fault.excuses_a_stale_refusal(sent);
                    }
                    None
                }
                status => {
                    judged.valid_refused += 1;
                    Some(format!("valid key {n} got {status:?} at {at:.1}s"))
                }
            },
        };
        if let Some(what) = wrong {
            if judged.wrong.len() < 20 {
                judged.wrong.push(what);
            }
        }
    }
    judged.freezes_tripped = faults
        .iter()
        .zip(&tripped)
        .filter(|(fault, tripped)| fault.kind == FaultKind::Freeze && **tripped)
        .count();
    judged
}

/// When each revoked key's first 403 came back: to the load (a request sent after the
/// revocation began), or to the revoker's probe.
fn first_refusals(
    outcomes: &[Outcome],
    started: Instant,
    revoked: &[Option<Revocation>],
) -> Vec<Option<Instant>> {
    let mut first: Vec<Option<Instant>> = revoked
        .iter()
        .map(|r| r.and_then(|r| Some(r.done + r.latency?)))
        .collect();
    for outcome in outcomes {
        let Carried::Listed(n) = outcome.key else {
            continue;
        };
        let Some(Some(r)) = revoked.get(n) else {
            continue;
        };
        let sent = started + outcome.sent;
        if outcome.status == Some(403) && sent >= r.started {
            let answered = sent + outcome.took;
            if let Some(slot) = first.get_mut(n) {
                *slot = Some(slot.map_or(answered, |known| known.min(answered)));
            }
        }
    }
    first
}

/// Revokes keys `0..count` evenly over `planned`, each followed by a probe for its
/// first 403 (whether a fault overlapped it is told once all faults are over, see
/// [`overlapped`]).
fn revoke_during(
    count: usize,
    planned: Duration,
    secrets: &[String],
    target: std::net::SocketAddr,
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
            Some(Revocation {
                started,
                done,
                during_fault: false,
                latency: probe.join().expect("a probe panicked"),
            })
        })
        .collect()
}

/// Whether a fault, or the recovery after one, overlapped the first second of `r`.
fn overlapped(r: &Revocation, faults: &[Fault]) -> bool {
    faults
        .iter()
        .any(|fault| r.started < fault.to + RECOVERY && r.done + HEALTHY_BOUND > fault.from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::ZERO;

    fn outcome(sent_ms: u64, key: usize, status: u16) -> Outcome {
        Outcome {
            sent: T0 + Duration::from_millis(sent_ms),
            took: Duration::from_millis(5),
            key: Carried::Listed(key),
            status: Some(status),
        }
    }

    /// Key 0 revoked at 10 s (done 10.02 s), during a freeze from 9 s to 19 s; key 1
    /// stays valid.
    fn case(outcomes: &[Outcome]) -> Judged {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let revoked = vec![
            Some(Revocation {
                started: at(10_000),
                done: at(10_020),
                during_fault: true,
                latency: None,
            }),
            None,
        ];
        let faults = [Fault {
            kind: FaultKind::Freeze,
            from: at(9_000),
            to: at(19_000),
        }];
        judge(outcomes, start, &revoked, &faults)
    }

    #[test]
    fn a_revoked_key_admitted_after_its_first_refusal_is_wrong() {
        // The 403 sent at 10.2 s came back at 10.205 s.
        let judged = case(&[
            outcome(10_100, 0, 200),
            outcome(10_200, 0, 403),
            outcome(10_300, 0, 200),
            outcome(10_455, 0, 200),
            outcome(10_456, 0, 200),
            outcome(10_800, 0, 200),
        ]);
        assert_eq!(
            judged.admitted_in_cache_window, 2,
            "at 10.3 s and 10.455 s, within one tick"
        );
        assert_eq!(judged.admitted_after_refusal, 2, "at 10.456 s and 10.8 s");
        assert_eq!(judged.admitted_late, 0);
        assert_eq!(judged.wrong.len(), 2, "{:?}", judged.wrong);
    }

    #[test]
    fn a_revoked_key_admitted_past_max_staleness_is_wrong() {
        let judged = case(&[outcome(17_000, 0, 200), outcome(17_600, 0, 200)]);
        assert_eq!(
            judged.admitted_late, 1,
            "only the one after 10.02 s + 7.5 s"
        );
    }

    #[test]
    fn a_valid_key_may_get_503_only_once_the_store_may_be_stale() {
        let judged = case(&[
            outcome(11_000, 1, 503),
            outcome(13_000, 1, 503),
            outcome(24_000, 1, 503),
            outcome(26_000, 1, 503),
            outcome(27_000, 1, 403),
        ]);
        assert_eq!(judged.stale_refusals, 2, "at 13 s and 24 s");
        assert_eq!(
            judged.valid_refused, 3,
            "at 11 s (too early), 26 s (too late), a 403"
        );
        assert_eq!(judged.freezes_tripped, 1);
    }

    #[test]
    fn a_freeze_without_a_503_did_not_trip() {
        let judged = case(&[outcome(13_000, 1, 200)]);
        assert_eq!(judged.freezes_tripped, 0);
        assert!(judged.wrong.is_empty());
    }
}
