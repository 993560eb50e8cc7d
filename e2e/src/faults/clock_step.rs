//! Wall clock stepped back 1 hour: keysync runs on a clock the test steps (libfaketime,
//! see `fake_clock`), as an NTP correction or an operator's `date -s` would, while the
//! monotonic clock runs on. It must show that sync resumes (a revocation and a new key
//! made after the step arrive) and that staleness is still measured correctly: once
//! keysync cannot confirm its data (PostgreSQL stopped), the gateway stops trusting its
//! keys after `max_staleness`, not an hour later; and a healthy keysync is not taken
//! for stale when its clock jumps forward again.
//!
//! Envoy cannot run under Debian's libfaketime: Envoy's tcmalloc calls `poll` while it
//! initialises, libfaketime's `poll` initialises libfaketime, which calls `dlsym`, which
//! allocates: the process deadlocks before `main` (`envoy --version` hangs). So only
//! keysync's clock is stepped here; the filter's own clock is Envoy's.

use std::time::{Duration, Instant};

use super::figures::{duration, statuses, Figures, Verdict};
use super::{status_of, time_until_status, Scale};
use crate::fake_clock::FakeClock;
use crate::gateway::Gateway;
use crate::keysync::{self, Keysync};
use crate::poll::{self, DEADLINE};
use crate::stack::Backend;
use crate::TestPostgres;

/// The step.
const STEP: Duration = Duration::from_secs(3600);
/// Slack on `max_staleness` for the gateway to act on it.
const TRIP_SLACK: Duration = Duration::from_secs(3);

/// The answers for `key` over `span`, a request every 100 ms.
fn watch(gateway: &Gateway, key: &str, span: Duration) -> Vec<Option<u16>> {
    let end = Instant::now() + span;
    let mut seen = Vec::new();
    while Instant::now() < end {
        seen.push(status_of(gateway.addr, key));
        std::thread::sleep(Duration::from_millis(100));
    }
    seen
}

pub fn run(scale: Scale) -> Figures {
    let max_staleness = scale.pick(Duration::from_secs(8), Duration::from_secs(30));
    let clock = FakeClock::new();
    let mut keysync_env: Vec<(String, String)> = clock.env();
    if scale == Scale::Short {
        keysync_env.push(("KEYSYNC_POLL_INTERVAL".into(), "1s".into()));
        keysync_env.push(("KEYSYNC_WATCH_HEARTBEAT".into(), "1s".into()));
    }
    let keysync_env: Vec<(&str, &str)> = keysync_env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();

    let mut postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    keysync::migrate(&database_url);
    let keysync = Keysync::start(&database_url, &keysync_env);
    let backend = Backend::start();
    let options = super::shipped_options(keysync.grpc, &backend, Some(max_staleness));
    let gateway = Gateway::start(options);
    let org = keysync::create_org(&database_url, "clock");
    let key = keysync::create_key(&database_url, &org, "steady", &[]);
    let doomed = keysync::create_key(&database_url, &org, "doomed", &[]);
    gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    gateway.wait_for_status("/", &doomed.key, 200, DEADLINE);
    gateway.wait_until_synced(DEADLINE);

    clock.step_back(STEP);
    // Sync resumes: changes made after the step arrive.
    keysync::revoke_key(&database_url, &doomed.key_id);
    let revoked = Instant::now();
    let revocation = time_until_status(gateway.addr, &doomed.key, 403, revoked, DEADLINE);
    let created = keysync::create_key(&database_url, &org, "new", &[]);
    let made = Instant::now();
    let creation = time_until_status(gateway.addr, &created.key, 200, made, DEADLINE);
    // Healthy on the stepped clock: nothing looks stale.
    let healthy_back = watch(&gateway, &key.key, max_staleness + Duration::from_secs(3));

    // keysync cut off from PostgreSQL: staleness still trips after max_staleness.
    postgres.stop();
    let stopped = Instant::now();
    let tripped = time_until_status(
        gateway.addr,
        &key.key,
        503,
        stopped,
        max_staleness + DEADLINE,
    );
    postgres.start_again();
    let restarted = Instant::now();
    let serving_again = time_until_status(gateway.addr, &key.key, 200, restarted, DEADLINE);

    // The clock jumps forward an hour (back to the real time): nothing looks stale.
    // Settled first (a worker may still be looking keys up after the outage), so that
    // what follows the step is the step's doing.
    poll::eventually(
        "twenty 200s in a row once PostgreSQL is back",
        DEADLINE,
        || (0..20).all(|_| status_of(gateway.addr, &key.key) == Some(200)),
        |&settled| settled,
    );
    clock.set_offset(0);
    let healthy_forward = watch(&gateway, &key.key, max_staleness + Duration::from_secs(3));
    let show = |took: Option<Duration>| took.map_or("never".to_string(), duration);
    let wrong = |seen: &[Option<u16>]| seen.iter().filter(|s| **s != Some(200)).count();

    let mut figures = Figures::new("Wall clock stepped back 1 hour");
    figures.add("max_staleness", duration(max_staleness));
    figures.add(
        "after the step back: revocation refused after",
        show(revocation),
    );
    figures.add("after the step back: new key served after", show(creation));
    figures.add(
        "after the step back, healthy: answers for a valid key",
        statuses(healthy_back.iter().copied()),
    );
    figures.add(
        "PostgreSQL stopped: first 503 after (must be <= max_staleness)",
        show(tripped),
    );
    figures.add(
        "PostgreSQL back: valid key served again after",
        show(serving_again),
    );
    figures.add(
        "after the step forward, healthy: answers for a valid key",
        statuses(healthy_forward.iter().copied()),
    );
    figures.add(
        "seconds_since_sync reported at the end",
        gateway.stat("seconds_since_sync"),
    );
    super::operator_figures(&mut figures, &gateway, Some(&keysync));
    figures.print();

    let mut verdict = Verdict::new();
    verdict.check(
        revocation.is_some_and(|took| took <= Duration::from_secs(2)) && creation.is_some(),
        "sync resumes after the clock steps back",
        || format!("revocation {revocation:?}, creation {creation:?}"),
    );
    verdict.check(
        tripped.is_some_and(|took| took <= max_staleness + TRIP_SLACK),
        "staleness is measured correctly: once keysync cannot confirm, the gateway trips after max_staleness",
        || {
            format!(
                "first 503 after {tripped:?}; keysync log:\n{}",
                keysync.process.log_tail(20)
            )
        },
    );
    verdict.check(
        wrong(&healthy_back) == 0 && wrong(&healthy_forward) == 0,
        "a healthy gateway is not taken for stale when the clock steps",
        || {
            format!(
                "stepped back: {}; stepped forward: {}",
                statuses(healthy_back.iter().copied()),
                statuses(healthy_forward.iter().copied())
            )
        },
    );
    verdict.check(
        serving_again.is_some(),
        "keys work again once PostgreSQL is back",
        || format!("{serving_again:?}"),
    );
    verdict.finish("wall clock stepped back");
    figures
}
