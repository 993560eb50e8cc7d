//! PostgreSQL stop, then blackhole: keysync reaches PostgreSQL through a proxy the test
//! owns. First PostgreSQL is stopped for a while (keysync's connections are refused),
//! then the proxy blackholes it for as long (connections hang: nothing answers, nothing
//! closes); keys are revoked directly in the database meanwhile. It must show that
//! `max_staleness` trips during the blackhole (keysync notices a silent database, and
//! the gateway stops trusting what it holds), that no revoked key works longer than
//! `max_staleness`, and that revocations land once the database is back.
//!
//! Both bounds count from keysync's last confirmation against PostgreSQL before the
//! fault (read from its `/metrics` throughout, see [`super::confirmations`]), as the
//! promise is worded, not from the start of the fault: a gateway that trusted its keys a
//! little past `max_staleness` would hide in the time between that confirmation and the
//! fault.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::confirmations::ConfirmationWatch;
use super::figures::{duration, statuses, Figures, Verdict};
use super::filter_health::FilterHealth;
use super::{time_until_status, Scale, HEALTHY_BOUND, STALENESS_SLACK};
use crate::gateway::{FilterKind, Gateway};
use crate::key_population::KeyPopulation;
use crate::keysync::{self, Keysync};
use crate::paced_load::{Carried, LoadShape, Outcome, PacedLoad};
use crate::poll::DEADLINE;
use crate::postgres::database_of;
use crate::stack::Backend;
use crate::tcp_proxy::TcpProxy;
use crate::TestPostgres;

/// The key the load expects to keep working (when the gateway can tell).
const VALID: usize = 10;

/// The case against `filter`'s gateway: the wasm filter (`FilterKind::Wasm`) or the
/// native one (`FilterKind::Native`).
pub fn run(scale: Scale, filter: FilterKind) -> Figures {
    let outage = scale.pick(Duration::from_secs(20), Duration::from_secs(60));
    let max_staleness = scale.pick(Duration::from_secs(8), Duration::from_secs(30));
    // keysync confirms its data at least every poll; the age a healthy gateway sees
    // stays well under max_staleness.
    let keysync_env: &[(&str, &str)] = scale.pick(
        &[
            ("KEYSYNC_POLL_INTERVAL", "1s"),
            ("KEYSYNC_WATCH_HEARTBEAT", "1s"),
        ],
        &[],
    );

    let mut postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    let database = database_of(&database_url).to_string();
    keysync::migrate(&database_url);
    let org = keysync::create_org(&database_url, "pg-outage");
    let proxy = TcpProxy::start(([127, 0, 0, 1], postgres.port()).into());
    let proxied_url = format!(
        "postgres://keysync@127.0.0.1:{}/{database}",
        proxy.addr.port()
    );
    let keysync = Keysync::start(&proxied_url, keysync_env);
    let backend = Backend::start();
    let mut options = super::shipped_options(keysync.grpc, &backend, Some(max_staleness));
    options.template = filter.template().into();
    let gateway = Gateway::start(options);
    let secrets: Vec<String>;
    {
        let population = KeyPopulation::new(&postgres, &database, &org, "pgout");
        population.insert(0..20);
        secrets = (0..20).map(|n| population.secret(n)).collect();
    }
    gateway.wait_for_status("/", &secrets[VALID], 200, DEADLINE);
    gateway.wait_for_status("/", &secrets[0], 200, DEADLINE);
    gateway.wait_until_synced(DEADLINE);
    let watched: Arc<Vec<String>> = Arc::new(vec![
        secrets[VALID].clone(),
        secrets[0].clone(),
        secrets[1].clone(),
        secrets[2].clone(),
    ]);
    let confirmations = ConfirmationWatch::start(keysync.http);
    let load = PacedLoad::start(
        gateway.addr,
        watched,
        &LoadShape {
            rate: Some(40),
            threads: 2,
            unknown_percent: 0,
            seed: 0x7067,
        },
    );
    let started = load.started();

    // Phase A: PostgreSQL stopped.
    let stop_at = Instant::now();
    postgres.stop();
    std::thread::sleep(outage);
    // Stamped before the restart: keysync may confirm as soon as the server is up,
    // before `start_again` returns.
    let restart_a = Instant::now();
    postgres.start_again();
    let back_a = Instant::now();
    KeyPopulation::new(&postgres, &database, &org, "pgout").revoke(0);
    let revoked_a = Instant::now();
    let landed_a = time_until_status(
        gateway.addr,
        &secrets[0],
        403,
        revoked_a,
        2 * max_staleness + DEADLINE,
    );
    let serving_a = time_until_status(
        gateway.addr,
        &secrets[VALID],
        200,
        back_a,
        2 * max_staleness + DEADLINE,
    );

    // Phase B: PostgreSQL blackholed; a key revoked meanwhile.
    let blackhole_at = Instant::now();
    proxy.blackhole();
    KeyPopulation::new(&postgres, &database, &org, "pgout").revoke(1);
    std::thread::sleep(outage);
    let heal_b = Instant::now();
    proxy.pass();
    let back_b = Instant::now();
    let landed_b = time_until_status(
        gateway.addr,
        &secrets[1],
        403,
        back_b,
        2 * max_staleness + DEADLINE,
    );
    let serving_b = time_until_status(
        gateway.addr,
        &secrets[VALID],
        200,
        back_b,
        2 * max_staleness + DEADLINE,
    );

    // Healthy again: a revocation now keeps the 1 s promise.
    KeyPopulation::new(&postgres, &database, &org, "pgout").revoke(2);
    let revoked_c = Instant::now();
    let landed_c = time_until_status(gateway.addr, &secrets[2], 403, revoked_c, DEADLINE);
    let outcomes = load.finish();
    let confirmations = confirmations.finish();

    // The last confirmation each phase's gateway could have had: the latest keysync
    // showed while PostgreSQL was out of reach.
    let confirmed_a = confirmations.last_shown_between(stop_at, restart_a);
    let confirmed_b = confirmations.last_shown_between(blackhole_at, heal_b);
    // The load's keys the store holds as valid: all four before the stop; in the
    // blackhole all but the one revoked after the stop (gone from the store, it is asked
    // of keysync, which cannot answer: a 503 that says nothing of staleness).
    let refused_a = first_refusal(&outcomes, started, stop_at, restart_a, &[0, 1, 2, 3]);
    let refused_b = first_refusal(&outcomes, started, blackhole_at, heal_b, &[0, 2, 3]);
    let between =
        |from: Option<Instant>, to: Option<Instant>| Some(to?.saturating_duration_since(from?));
    let tripped_a = between(Some(stop_at), refused_a);
    let tripped_b = between(Some(blackhole_at), refused_b);
    let stale_a = between(confirmed_a, refused_a);
    let stale_b = between(confirmed_b, refused_b);
    // The load's keys: 0 stays valid, 2 is the one revoked during the blackhole. Past
    // `max_staleness` from the last confirmation nothing the gateway holds may admit it.
    let late_bound = confirmed_b.unwrap_or(blackhole_at) + max_staleness + STALENESS_SLACK;
    let late_admissions =
        admitted_after(&outcomes, 2, late_bound.saturating_duration_since(started));
    let at = |instant: Instant| instant.saturating_duration_since(started);
    let blackhole_answers = statuses(
        outcomes
            .iter()
            .filter(|o| {
                o.key == Carried::Listed(0) && o.sent >= at(blackhole_at) && o.sent < at(heal_b)
            })
            .map(|o| o.status),
    );
    let keysync_log = keysync.process.log();
    let database_errors = keysync_log.matches("database error").count();
    let show = |took: Option<Duration>| took.map_or("never".to_string(), duration);
    let before_fault = |confirmed: Option<Instant>, fault: Instant| {
        confirmed.map_or("no reading".to_string(), |confirmed| {
            duration(fault.saturating_duration_since(confirmed))
        })
    };

    let mut figures = Figures::new(&format!("PostgreSQL stop, then blackhole ({filter:?})"));
    figures.add("outage (each phase)", duration(outage));
    figures.add("max_staleness", duration(max_staleness));
    figures.add(
        "stop: keysync's last confirmation before it",
        before_fault(confirmed_a, stop_at),
    );
    let bound = format!("max_staleness + {}", duration(STALENESS_SLACK));
    figures.add("stop: first 503 after the stop", show(tripped_a));
    figures.add(
        &format!("stop: first 503 after the last confirmation (must be <= {bound})"),
        show(stale_a),
    );
    figures.add(
        "stop: revocation made after restart refused after",
        show(landed_a),
    );
    figures.add(
        "stop: a valid key served again after restart",
        show(serving_a),
    );
    figures.add(
        "blackhole: keysync's last confirmation before it",
        before_fault(confirmed_b, blackhole_at),
    );
    figures.add(
        "blackhole: first 503 after the blackhole began",
        show(tripped_b),
    );
    figures.add(
        &format!("blackhole: first 503 after the last confirmation (must be <= {bound})"),
        show(stale_b),
    );
    figures.add(
        "blackhole: answers for a valid key meanwhile",
        blackhole_answers,
    );
    figures.add(
        &format!("blackhole: key revoked during it admitted past {bound} from the last confirmation (must be 0)"),
        late_admissions,
    );
    figures.add(
        "blackhole: that revocation refused after the network healed",
        show(landed_b),
    );
    figures.add(
        "blackhole: a valid key served again after healing",
        show(serving_b),
    );
    figures.add(
        "healthy again: revocation refused after (must be <= 1 s)",
        show(landed_c),
    );
    figures.add(
        "keysync confirmation-age readings during the stop / the blackhole",
        format!(
            "{} / {}",
            confirmations.count_between(stop_at, restart_a),
            confirmations.count_between(blackhole_at, heal_b)
        ),
    );
    figures.add("keysync 'database error' log lines", database_errors);
    figures.add("load answers", statuses(outcomes.iter().map(|o| o.status)));
    let health = FilterHealth::of(&gateway);
    health.add_figures(&mut figures);
    super::operator_figures(&mut figures, &gateway, Some(&keysync));
    figures.print();

    let within_bound =
        |stale: Option<Duration>| stale.is_some_and(|took| took <= max_staleness + STALENESS_SLACK);
    let mut verdict = Verdict::new();
    verdict.check(
        confirmed_a.is_some() && confirmed_b.is_some(),
        "keysync's confirmation age was read during each outage",
        || format!("stop: {confirmed_a:?}, blackhole: {confirmed_b:?}"),
    );
    verdict.check(
        within_bound(stale_a),
        "max_staleness trips with PostgreSQL stopped, counted from the last confirmation",
        || {
            format!(
                "first 503 {stale_a:?} after the last confirmation ({tripped_a:?} after the stop)"
            )
        },
    );
    verdict.check(
        within_bound(stale_b),
        "max_staleness trips during the blackhole, counted from the last confirmation",
        || {
            format!(
                "first 503 {stale_b:?} after the last confirmation ({tripped_b:?} after the \
                 blackhole began); keysync log tail:\n{}",
                keysync.process.log_tail(20)
            )
        },
    );
    verdict.check(
        late_admissions == 0,
        "a key revoked during the blackhole never works longer than max_staleness after the last confirmation",
        || format!("{late_admissions} admissions after the bound"),
    );
    verdict.check(
        landed_a.is_some() && landed_b.is_some(),
        "revocations made during or after an outage land once it is over",
        || format!("after the stop: {landed_a:?}, after the blackhole: {landed_b:?}"),
    );
    verdict.check(
        landed_c.is_some_and(|took| took <= HEALTHY_BOUND),
        "a revocation is refused within 1 s once healthy again",
        || format!("{landed_c:?}"),
    );
    health.check(&mut verdict, &gateway);
    verdict.finish(&format!("PostgreSQL stop, then blackhole ({filter:?})"));
    figures
}

/// When a request with one of the listed keys `held` sent in `[from, to)` was first
/// refused (503). Any of them: once the gateway stops trusting its store every key is
/// refused, and the load's threads may be held by a refused lookup of another key (up
/// to its timeout) when it happens.
fn first_refusal(
    outcomes: &[Outcome],
    started: Instant,
    from: Instant,
    to: Instant,
    held: &[usize],
) -> Option<Instant> {
    let (from, to) = (
        from.saturating_duration_since(started),
        to.saturating_duration_since(started),
    );
    outcomes
        .iter()
        .filter(|o| o.sent >= from && o.sent < to && o.status == Some(503))
        .filter(|o| matches!(o.key, Carried::Listed(n) if held.contains(&n)))
        .map(|o| started + o.sent)
        .min()
}

/// Requests with listed key `n` admitted (200) when sent after `bound`.
fn admitted_after(outcomes: &[Outcome], n: usize, bound: Duration) -> usize {
    outcomes
        .iter()
        .filter(|o| o.key == Carried::Listed(n) && o.sent > bound && o.status == Some(200))
        .count()
}
