//! Where keysync's filter stands against the alternatives, measured side by side in one
//! run on one machine: the same Envoy binary with one worker, the same route (answered by
//! Envoy itself), the same load (wrk, 16 connections, keys in turn), with
//!   (a) no auth filter, (b) an empty Rust wasm filter (the wasm floor), (c) Envoy's
//!   native api_key_auth with the keys in its config, (d) ext_authz to keysync over gRPC,
//!   (e) keysync's filter with 10k, 100k and 1M active keys loaded;
//! then a full sync of 1M keys (time, memory on both sides) and PostgreSQL's query rate
//! at two very different request rates.

use crate::bench_keys::{secret, wait_for_keysync, BenchKeys};
use crate::gateways::{baseline_gateway, keysync_gateway, keysync_gateway_with};
use crate::median::median;
use crate::pg_activity;
use crate::proc_status::rss_kib;
use crate::wrk::{self, Report};
use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::postgres::TestPostgres;
use keysync_e2e::scratch::ScratchDir;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Keys the load cycles through (all valid, in every variant).
const HOT_KEYS: usize = 1_000;
/// Keys in api_key_auth's configuration.
const API_KEY_AUTH_KEYS: usize = 10_000;

pub struct Options {
    pub seconds: u64,
    pub key_counts: Vec<usize>,
    pub query_rate_seconds: u64,
}

/// How long keysync may take to load the keys of a step.
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Quiet time before reading the memory baseline's RSS, once its store is synced.
const SETTLE: Duration = Duration::from_secs(2);

struct Row {
    name: String,
    /// Saturated: 16 connections.
    report: Report,
    /// One connection at a time: latency without queueing.
    single: Report,
    rss_kib: u64,
}

pub fn run(options: Options) {
    let dir = ScratchDir::new("bench-compare").expect("scratch dir");
    let mut keys = BenchKeys::start();
    keys.fill_to(API_KEY_AUTH_KEYS.max(HOT_KEYS));

    let keysync = Keysync::start(&keys.database_url, &[]);
    let hot = hot_keys();
    let script = rotating_keys_script(dir.path(), &hot);
    let api_keys = dir.path().join("api-keys.txt");
    let all: Vec<String> = (1..=API_KEY_AUTH_KEYS).map(secret).collect();
    std::fs::write(&api_keys, all.join("\n")).expect("write api keys");
    let duration = Duration::from_secs(options.seconds);
    let measure = |name: &str, gateway: &Gateway| -> Row {
        // Warm up: the first requests load code and caches.
        let _ = wrk::run_with(gateway.addr, 16, Duration::from_secs(1), &[], Some(&script));
        let report = wrk::run_with(gateway.addr, 16, duration, &[], Some(&script));
        assert_eq!(report.non_2xx, 0, "{name}: every request must be allowed");
        let single = wrk::run_with(gateway.addr, 1, duration, &[], Some(&script));
        let row = Row {
            name: name.to_string(),
            report,
            single,
            rss_kib: rss_kib(gateway.process.pid()),
        };
        eprintln!("{name}: {:.0} req/s", row.report.requests_per_sec);
        row
    };
    let bench_gateway = |auth: &str| baseline_gateway(&keysync, auth, Some(&api_keys));

    let mut rows = Vec::new();
    rows.push(measure("(a) no auth filter", &bench_gateway("none")));
    rows.push(measure(
        "(b) empty Rust wasm filter",
        &bench_gateway("empty-wasm"),
    ));
    rows.push(measure(
        "(b') the contract's host calls only",
        &bench_gateway("contract-calls"),
    ));
    rows.push(measure(
        &format!("(c) native api_key_auth, {API_KEY_AUTH_KEYS} keys"),
        &bench_gateway("api-key-auth"),
    ));
    rows.push(measure(
        "(d) ext_authz to keysync (gRPC)",
        &keysync_gateway(&keysync, "ext-authz.yaml"),
    ));

    // An Envoy with keysync's filter and an empty store: the memory baseline for (e).
    let empty_rss = {
        let empty_db = keys.postgres.create_database();
        ks::migrate(&empty_db);
        let empty_keysync = Keysync::start(&empty_db, &[]);
        let mut options = GatewayOptions::new(empty_keysync.grpc, "direct");
        options.concurrency = 1;
        let gateway = Gateway::start(options);
        gateway
            .process
            .wait_for_log("cache refresh complete", Duration::from_secs(60));
        std::thread::sleep(SETTLE);
        rss_kib(gateway.process.pid())
    };

    let mut memory = String::new();
    let mut sync_line = String::new();
    for &count in &options.key_counts {
        keys.fill_to(count);
        wait_for_keysync(&keysync, count, LOAD_TIMEOUT);
        let started = Instant::now();
        let gateway = keysync_gateway(&keysync, "gateway.yaml");
        let line = gateway
            .process
            .wait_for_log("cache refresh complete", Duration::from_secs(300));
        let sync_time = started.elapsed();
        assert!(line.contains(&format!("total={count}")), "{line}");
        let row = measure(&format!("(e) keysync filter, {count} keys"), &gateway);
        let per_key = (row.rss_kib.saturating_sub(empty_rss) * 1024) as f64 / count as f64;
        let _ = writeln!(
            memory,
            "{count} keys: Envoy RSS {} KiB, empty store {empty_rss} KiB: {per_key:.0} bytes a key; full sync into a fresh Envoy (start to refresh complete) {:.2} s",
            row.rss_kib,
            sync_time.as_secs_f64()
        );
        if count == *options.key_counts.iter().max().unwrap_or(&0) {
            sync_line = format!(
                "keysync RSS with {count} keys: {} KiB",
                rss_kib(keysync.process.pid())
            );
        }
        rows.push(row);
    }

    print_table(&rows);
    println!("{memory}{sync_line}");
    if options.query_rate_seconds > 0 {
        query_rates(
            &keys.postgres,
            &keys.database,
            &keysync,
            &hot,
            options.query_rate_seconds,
            dir.path(),
        );
    }
}

fn print_table(rows: &[Row]) {
    let base = &rows[0];
    let floor = rows.iter().find(|r| r.name.starts_with("(b)"));
    println!(
        "{:<40} {:>8} {:>7} {:>7} | {:>8} {:>8} | {:>8} {:>8} | {:>8}",
        "variant (16 conn. | 1 conn.)",
        "req/s",
        "vs (a)",
        "vs (b)",
        "p50 +us",
        "p99 +us",
        "p50 +us",
        "p99 +us",
        "RSS KiB"
    );
    for row in rows {
        let (r, one) = (&row.report, &row.single);
        let vs_floor = floor.map_or("-".into(), |f| {
            format!("{:.3}", r.requests_per_sec / f.report.requests_per_sec)
        });
        println!(
            "{:<40} {:>8.0} {:>7.3} {:>7} | {:>8.0} {:>8.0} | {:>8.1} {:>8.1} | {:>8}",
            row.name,
            r.requests_per_sec,
            r.requests_per_sec / base.report.requests_per_sec,
            vs_floor,
            r.p50_us - base.report.p50_us,
            r.p99_us - base.report.p99_us,
            one.p50_us - base.single.p50_us,
            one.p99_us - base.single.p99_us,
            row.rss_kib
        );
    }
}

/// PostgreSQL transactions per minute while Envoy serves a trickle, then a flood, of
/// requests: known keys, then keys nobody has (every one a miss).
fn query_rates(
    postgres: &TestPostgres,
    database: &str,
    keysync: &Keysync,
    hot: &[String],
    seconds: u64,
    dir: &Path,
) {
    let gateway = keysync_gateway(keysync, "gateway.yaml");
    gateway
        .process
        .wait_for_log("cache refresh complete", Duration::from_secs(300));
    let commits = || pg_activity::transactions(postgres, database);
    let per_minute = |label: &str, work: &dyn Fn() -> u64| {
        let before = commits();
        let started = Instant::now();
        let requests = work();
        let elapsed = started.elapsed().as_secs_f64();
        let after = commits();
        // Our own pg_stat read is a transaction too.
        let queries = after.saturating_sub(before).saturating_sub(1);
        println!(
            "{label}: {:.0} requests/s, PostgreSQL {:.1} transactions/min",
            requests as f64 / elapsed,
            queries as f64 * 60.0 / elapsed
        );
    };
    let random = dir.join("random.lua");
    std::fs::write(&random, wrk::RANDOM_KEYS_SCRIPT).expect("write script");
    let hot_script = rotating_keys_script(dir, hot);
    let duration = Duration::from_secs(seconds);
    let flood =
        |script: &Path| wrk::run_with(gateway.addr, 16, duration, &[], Some(script)).requests;
    per_minute("idle", &|| {
        std::thread::sleep(duration);
        0
    });
    per_minute("trickle of known keys", &|| {
        let requests = seconds * 10;
        for i in 0..requests {
            let key = &hot[i as usize % hot.len()];
            assert_eq!(gateway.get_with_key("/", key).status, 200);
            std::thread::sleep(Duration::from_millis(100));
        }
        requests
    });
    per_minute("flood of known keys (wrk)", &|| flood(&hot_script));
    per_minute("flood of unknown keys, every one a miss (wrk)", &|| {
        flood(&random)
    });
}

/// The auth filter's configuration when two builds race: what the project's
/// configurations set, less the fields added since (usage by endpoint).
const BEFORE_AND_AFTER_AUTH: &str = r#"{"role":"auth","route_scopes":"header"}"#;

/// The wasm floor (b), the contract's host calls alone (b') and keysync's filter (e) with
/// 10k keys, alternating, to see what the filter adds per request, and how much of that
/// any filter meeting the contract would pay, without the rest of the suite.
///
/// `whole_map` adds (b''): the contract's header changes through one read and one write
/// of the whole header map instead of four calls. `before_wasm` adds (e0): keysync's
/// filter built from another commit, to compare two builds back to back.
pub fn floor_vs_filter(rounds: usize, seconds: u64, whole_map: bool, before_wasm: Option<&Path>) {
    let dir = ScratchDir::new("bench-floor").expect("scratch dir");
    let mut keys = BenchKeys::start();
    keys.fill_to(API_KEY_AUTH_KEYS);
    let keysync = Keysync::start(&keys.database_url, &[]);
    wait_for_keysync(&keysync, API_KEY_AUTH_KEYS, LOAD_TIMEOUT);
    let script = rotating_keys_script(dir.path(), &hot_keys());
    let mut variants = vec![
        ("(b)", baseline_gateway(&keysync, "empty-wasm", None)),
        ("(b')", baseline_gateway(&keysync, "contract-calls", None)),
    ];
    if whole_map {
        variants.push((
            "(b'')",
            baseline_gateway(&keysync, "contract-calls-map", None),
        ));
    }
    // With another build beside it, both run the plugin configuration both read (an
    // older filter refuses a field it does not know), so only the builds differ.
    let same_config = Path::new(BEFORE_AND_AFTER_AUTH);
    let shared: &[(&str, &Path)] = match before_wasm {
        Some(_) => &[("KEYSYNC_AUTH_CONFIG", same_config)],
        None => &[],
    };
    if let Some(wasm) = before_wasm {
        let gateway = synced_filter(
            &keysync,
            &[shared, &[("KEYSYNC_FILTER_WASM", wasm)]].concat(),
        );
        variants.push(("(e0)", gateway));
    }
    variants.push(("(e)", synced_filter(&keysync, shared)));
    let duration = Duration::from_secs(seconds);
    // Microseconds each variant adds over (b), per round.
    let mut added: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        let reports: Vec<Report> = variants
            .iter()
            .map(|(_, gateway)| wrk::run_with(gateway.addr, 16, duration, &[], Some(&script)))
            .collect();
        let floor = &reports[0];
        let mut line = format!("round {round}:");
        for (i, ((name, _), report)) in variants.iter().zip(&reports).enumerate() {
            assert_eq!(report.non_2xx, 0, "{name} answered non-2xx");
            added[i].push(report.us_per_request() - floor.us_per_request());
            let _ = write!(
                line,
                " {name} {:.0} req/s {:.2} us ({:.3});",
                report.requests_per_sec,
                report.us_per_request(),
                report.requests_per_sec / floor.requests_per_sec
            );
        }
        println!("{line}");
    }
    println!("over the wasm floor (b), {rounds} rounds of {seconds} s: median us added [min, max]");
    for ((name, _), values) in variants.iter().zip(&added).skip(1) {
        let (low, high) = spread(values);
        let mut sorted = values.clone();
        if let Some(mid) = median(&mut sorted) {
            println!("{name:6} {mid:+6.2} us  [{low:+.2}, {high:+.2}]");
        }
    }
    // Paired differences, round by round: the fairest comparison on a noisy machine.
    let index = |wanted: &str| variants.iter().position(|(name, _)| *name == wanted);
    for (a, b) in [("(b'')", "(b')"), ("(e)", "(b')"), ("(e)", "(e0)")] {
        if let (Some(i), Some(j)) = (index(a), index(b)) {
            let mut diffs: Vec<f64> = added[i].iter().zip(&added[j]).map(|(x, y)| x - y).collect();
            let (low, high) = spread(&diffs);
            if let Some(mid) = median(&mut diffs) {
                println!(
                    "{a} - {b}: median {mid:+.2} us a request, rounds [{low:+.2}, {high:+.2}]"
                );
            }
        }
    }
}

/// keysync's filter in `envoy/gateway.yaml` with `env` added, synced before it returns.
fn synced_filter(keysync: &Keysync, env: &[(&str, &Path)]) -> Gateway {
    let gateway = keysync_gateway_with(keysync, "gateway.yaml", env);
    gateway
        .process
        .wait_for_log("cache refresh complete", Duration::from_secs(60));
    gateway
}

/// The lowest and highest of `values` (0 and 0 when empty).
fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), v| {
            (low.min(*v), high.max(*v))
        })
}

/// The keys the load cycles through: bench keys `1..=HOT_KEYS`.
fn hot_keys() -> Vec<String> {
    (1..=HOT_KEYS).map(secret).collect()
}

/// Writes a wrk script sending `keys` in turn into `dir`; returns its path.
fn rotating_keys_script(dir: &Path, keys: &[String]) -> PathBuf {
    let path = dir.join("rotating-keys.lua");
    std::fs::write(&path, wrk::rotating_keys_script(keys)).expect("write wrk script");
    path
}
