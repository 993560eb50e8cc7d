//! Usage metering at load: a fixed number of requests over many keys and several
//! Envoys at full speed, then `keysync usage --by key` must say what each key was
//! served, exactly; and PostgreSQL's transactions a minute with metering's flushes at
//! 10 requests a second against full load (they must not grow with the request rate).

use crate::load;
use crate::pg_activity;
use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::key_population::KeyPopulation;
use keysync_e2e::keysync as ks;
use keysync_e2e::paced_load::{LoadShape, PacedLoad};
use keysync_e2e::poll;
use keysync_e2e::stack::Stack;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Metering as shipped (a flush every 10 s); the store refreshed rarely, so that the
/// transactions counted are the flushes' and the load's.
const SYNC: &str = r#"{"role":"sync","refresh_interval":"15m"}"#;

fn configure(options: &mut GatewayOptions) {
    options.backends = "direct".into();
    options.sync_config = SYNC.into();
}

fn database(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Requests a key got in `keysync usage --by key --json` rows.
fn by_key(answer: &serde_json::Value) -> BTreeMap<String, u64> {
    answer["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|row| {
                    Some((
                        row["key_id"].as_str()?.to_string(),
                        row["requests"].as_u64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn accuracy(requests: usize, keys: usize, envoys: usize) {
    let stack = Stack::start(configure);
    let others: Vec<Gateway> = (1..envoys)
        .map(|_| stack.start_another_gateway(configure))
        .collect();
    let gateways: Vec<&Gateway> = std::iter::once(&stack.gateway).chain(&others).collect();
    let org = stack.create_org("accuracy");
    let population = KeyPopulation::new(
        &stack.postgres,
        database(&stack.database_url),
        &org,
        "usage",
    );
    population.insert(0..keys);
    let ids = population.ids(0..keys);
    assert_eq!(ids.len(), keys);
    let secrets: Vec<String> = (0..keys).map(|n| population.secret(n)).collect();
    // Each Envoy has the keys: one served request of the last key each (the refusals
    // before it, if any, are unattributed and count for no organization).
    for gateway in &gateways {
        gateway.wait_for_status("/", &secrets[keys - 1], 200, Duration::from_secs(60));
    }
    let targets: Vec<_> = gateways.iter().map(|g| g.addr).collect();
    let started = Instant::now();
    let counts = load::run_keys(&targets, &secrets, requests, 16 * envoys);
    let took = started.elapsed();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for ((index, status), n) in &counts {
        assert_eq!(*status, 200, "key {index} got {status}");
        *expected.entry(ids[*index].clone()).or_insert(0) += *n as u64;
    }
    *expected.entry(ids[keys - 1].clone()).or_insert(0) += envoys as u64;
    let total: u64 = expected.values().sum();
    println!(
        "{requests} requests over {keys} keys and {envoys} Envoys in {:.1}s ({:.0} req/s), all 200",
        took.as_secs_f64(),
        requests as f64 / took.as_secs_f64()
    );

    let reported = poll::within(Duration::from_secs(60), Duration::from_secs(1), || {
        let answer = ks::cli_json(
            &stack.database_url,
            &["usage", "--org-id", &org, "--by", "key", "--since", "1d"],
        );
        if answer["total_requests"].as_u64() == Some(total) {
            Ok(answer)
        } else {
            Err(answer["total_requests"].clone())
        }
    })
    .unwrap_or_else(|last| panic!("usage never reached {total} requests: last {last}"));
    let reported = by_key(&reported);
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(id, n)| reported.get(*id) != Some(n))
        .collect();
    assert!(
        wrong.is_empty() && reported.len() == expected.len(),
        "{} of {} keys differ: {:?}",
        wrong.len(),
        expected.len(),
        wrong.iter().take(5).collect::<Vec<_>>()
    );
    println!(
        "keysync usage: {total} requests, {} keys, every key's count exact",
        reported.len()
    );
}

/// keysync's counters (`*_total` samples of `/metrics`).
fn keysync_counters(stack: &Stack) -> BTreeMap<String, f64> {
    let text = keysync_e2e::http::get(stack.keysync.http, "/metrics", &[])
        .expect("read keysync /metrics")
        .text();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            name.split('{')
                .next()?
                .ends_with("_total")
                .then(|| Some((name.to_string(), value.parse().ok()?)))?
        })
        .collect()
}

/// What grew in keysync's counters between two readings.
fn grown(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    after
        .iter()
        .filter_map(|(name, value)| {
            let delta = value - before.get(name).copied().unwrap_or(0.0);
            (delta > 0.0).then(|| format!("{name} +{delta}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// PostgreSQL's transactions in `window`, from `pg_stat_database`; with
/// `KEYSYNC_TEST_PG_STAT_STATEMENTS` set, also the statements run in it, most frequent
/// first (`pg_stat_database` also counts autovacuum's work and varies by tens a minute
/// on its own; the statements say what the clients asked for).
fn transactions_during(stack: &Stack, window: Duration) -> u64 {
    let (postgres, db) = (&stack.postgres, database(&stack.database_url));
    let statements = pg_activity::statements_enabled();
    if statements {
        pg_activity::reset_statements(postgres, db);
    }
    let before = pg_activity::transactions(postgres, db);
    std::thread::sleep(window);
    let transactions = pg_activity::transactions(postgres, db) - before;
    if statements {
        let seen = pg_activity::statements(postgres, db, 12);
        println!("  statements in the window: {}", seen.total);
        for (calls, query) in seen.top {
            println!("    {calls} {query}");
        }
    }
    transactions
}

pub fn postgres(keys: usize, seconds: u64) {
    let stack = Stack::start(configure);
    let org = stack.create_org("postgres");
    let population = KeyPopulation::new(&stack.postgres, database(&stack.database_url), &org, "pg");
    population.insert(0..keys);
    let secrets = Arc::new((0..keys).map(|n| population.secret(n)).collect::<Vec<_>>());
    stack
        .gateway
        .wait_for_status("/", &secrets[keys - 1], 200, Duration::from_secs(60));
    let window = Duration::from_secs(seconds);
    let per_minute = |n: u64| n as f64 * 60.0 / window.as_secs_f64();

    // Let the stack settle: the first flushes, keysync's start-up.
    std::thread::sleep(Duration::from_secs(12));
    let idle = transactions_during(&stack, window);
    let mut results = Vec::new();
    // Full load on a small machine starves keysync and PostgreSQL of CPU (their own
    // timeouts then cost transactions), so a high paced rate is measured beside it.
    for (name, rate, threads) in [
        ("10 req/s", Some(10), 1),
        ("5,000 req/s", Some(5_000), 8),
        ("full load", None, 16),
    ] {
        let load = PacedLoad::start(
            stack.gateway.addr,
            secrets.clone(),
            &LoadShape {
                rate,
                threads,
                unknown_percent: 0,
                seed: 7,
            },
        );
        // A flush interval into the load before counting.
        std::thread::sleep(Duration::from_secs(11));
        let counters = keysync_counters(&stack);
        let transactions = transactions_during(&stack, window);
        println!(
            "  {name}: keysync counters grown: {}",
            grown(&counters, &keysync_counters(&stack))
        );
        let outcomes = load.finish();
        let served = outcomes
            .iter()
            .filter(|outcome| outcome.status == Some(200))
            .count();
        let seconds_run = outcomes
            .last()
            .map_or(1.0, |last| last.sent.as_secs_f64().max(1.0));
        results.push((name, transactions, served as f64 / seconds_run));
    }
    println!(
        "PostgreSQL transactions a minute (over {seconds}s windows, {keys} keys, one Envoy, flush every 10s): idle {:.0}",
        per_minute(idle)
    );
    for (name, transactions, rate) in &results {
        println!(
            "  {name}: {:.0} transactions a minute at {rate:.0} req/s served",
            per_minute(*transactions)
        );
    }
}
