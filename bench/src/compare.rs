//! Where keysync's filters stand against the alternatives, raced in one run on one
//! machine: the same Envoy binary with one worker, the same route (answered by Envoy
//! itself), the same load (wrk, 16 connections then one, keys in turn), with
//!   (a) no auth filter, and (a') again: the A/A control, what two identical Envoys
//!   differ by in this run; (c) Envoy's built-in api_key_auth with the same keys in its
//!   configuration, (cf) the same doing the contract's job (the client to the backend in
//!   a header, the key taken off); (c') a native module making only the contract's calls
//!   with the same keys in a HashMap (what the dynamic-module ABI itself costs), and (c0)
//!   the same module's filter making no call at all (the floor of any dynamic module);
//!   (e) keysync's wasm filter and (n) its native filter, each with the keys synced from
//!   keysync; (n0) the native filter without metering; with `--more`, (b) the empty wasm
//!   filter, (b') the contract's host calls alone and (d) ext_authz to keysync too.
//!
//! The method is `usage-cost`'s: every round starts every Envoy afresh (one process
//! keeps its own bias for as long as it lives), Envoys on CPU 0 and wrk on the others,
//! each variant warmed up right before its runs, and the order turning by one each round
//! so that every variant runs in every position. Figures are per-round ratios and
//! differences against (a), (c) or (e) of the same round, and their medians: of
//! throughput, and of Envoy's CPU time a request (from `/proc`), which the other work of
//! a shared machine moves less: a busy CPU 0 slows every request of a run, not the work
//! each one costs.
//!
//! Each round also weighs keysync's filters: their Envoy's memory over an Envoy of the
//! same configuration that synced no key (resident, and the allocator's own account),
//! and the time from starting Envoy to its first full sync. Then, once, PostgreSQL's
//! query rate at very different request rates.

use crate::api_key_auth_config::{self, BuiltIn};
use crate::bench_keys::{secret, wait_for_keysync, BenchKeys};
use crate::compare_variant::{variants, KeyCheck, Started, Variant};
use crate::cpu_pin;
use crate::cpu_time;
use crate::envoy_heap::{BytesAKey, EnvoyMemory};
use crate::gateways::{baseline_gateway, keysync_gateway, keysync_options};
use crate::machine_load::load_average;
use crate::median::median;
use crate::pg_activity;
use crate::wrk::{self, Report};
use keysync_e2e::gateway::Gateway;
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::postgres::TestPostgres;
use keysync_e2e::scratch::ScratchDir;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Keys the load cycles through (all valid, in every variant).
const HOT_KEYS: usize = 1_000;
/// Keys in the configuration of `floor-vs-filter`.
const FLOOR_KEYS: usize = 10_000;

pub struct Options {
    pub seconds: u64,
    pub rounds: usize,
    pub key_counts: Vec<usize>,
    pub query_rate_seconds: u64,
    /// Add the wasm floor, the contract's calls alone and ext_authz.
    pub more: bool,
    /// Only these variants' tags besides the baselines (all when empty).
    pub only: Vec<String>,
}

/// How long keysync may take to load the keys of a step.
const LOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// Quiet time after a round's Envoys started, before their memory is read: the stores
/// are synced, and what the syncs freed has been handed back.
const SETTLE: Duration = Duration::from_secs(2);
/// Load before each measured run: a fresh Envoy's code and caches are still cold.
const WARM_UP: Duration = Duration::from_secs(1);
/// How long a fresh Envoy may take to answer a hot key with 200.
const SERVE_TIMEOUT: Duration = Duration::from_secs(60);

/// One variant's figures in one round.
#[derive(Clone, Copy)]
struct Run {
    /// Saturated: 16 connections.
    saturated: Report,
    /// Envoy's CPU time a request in the saturated run, microseconds (all its threads):
    /// the work a request costs, which a busy shared machine moves less than throughput.
    cpu_us: f64,
    /// One connection at a time: latency without queueing.
    single: Report,
    /// Before any load.
    memory: EnvoyMemory,
}

/// A round's figures: the runs by variant, and keysync's filters' growth a key over an
/// Envoy that synced none, and their time to sync.
struct Round {
    runs: Vec<Run>,
    per_key: Vec<(KeyCheck, BytesAKey)>,
    synced_in: Vec<(KeyCheck, Duration)>,
}

pub fn run(options: Options) {
    let dir = ScratchDir::new("bench-compare").expect("scratch dir");
    let mut keys = BenchKeys::start();
    keys.fill_to(HOT_KEYS);
    let keysync = Keysync::start(&keys.database_url, &[]);
    // The memory baseline: Envoys of the same configuration fed by a keysync with no keys.
    let empty_database = keys.postgres.create_database();
    ks::migrate(&empty_database);
    let empty_keysync = Keysync::start(&empty_database, &[]);
    let hot = hot_keys();
    let script = rotating_keys_script(dir.path(), &hot);

    // PostgreSQL and keysync, started already, stay free to run on any CPU.
    let pinned = cpu_pin::leave_cpu_0_to_envoy("wrk");

    for &count in &options.key_counts {
        assert!(
            count >= HOT_KEYS,
            "--keys: at least {HOT_KEYS}, the keys the load sends"
        );
        keys.fill_to(count);
        wait_for_keysync(&keysync, count, LOAD_TIMEOUT);
        let api_key_auth = api_key_auth_config::write_both(&keysync, count, dir.path());
        let variants = only(variants(count, options.more), &options.only);
        println!(
            "{count} keys: {} rounds of {} s a variant (16 connections, then 1), load average before: {}",
            options.rounds,
            options.seconds,
            load_average()
        );
        let rounds: Vec<Round> = (0..options.rounds)
            .map(|round| {
                race(
                    round,
                    &variants,
                    &Fleet {
                        keysync: &keysync,
                        empty_keysync: &empty_keysync,
                        api_key_auth: &api_key_auth,
                        keys: count,
                        pinned,
                    },
                    &script,
                    Duration::from_secs(options.seconds),
                )
            })
            .collect();
        print_summary(&variants, &rounds, count);
        println!("load average after: {}", load_average());
    }
    println!(
        "keysync RSS: {} KiB",
        crate::proc_status::rss_kib(keysync.process.pid())
    );

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

/// `variants` cut down to `tags` and the baselines (a) and (a'); all if `tags` is empty.
fn only(variants: Vec<Variant>, tags: &[String]) -> Vec<Variant> {
    if tags.is_empty() {
        return variants;
    }
    for tag in tags {
        assert!(
            variants.iter().any(|v| v.tag == tag),
            "--only: no variant {tag} (tags: {})",
            variants
                .iter()
                .map(|v| v.tag)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    variants
        .into_iter()
        .filter(|v| matches!(v.tag, "(a)" | "(a')") || tags.iter().any(|t| t == v.tag))
        .collect()
}

/// What a round's Envoys are started with.
struct Fleet<'a> {
    keysync: &'a Keysync,
    empty_keysync: &'a Keysync,
    api_key_auth: &'a BuiltIn,
    keys: usize,
    pinned: bool,
}

/// One round: every variant afresh, weighed, then loaded in this round's order.
fn race(
    round: usize,
    variants: &[Variant],
    fleet: &Fleet<'_>,
    script: &Path,
    duration: Duration,
) -> Round {
    let started: Vec<Started> = variants
        .iter()
        .map(|v| v.check.start(fleet.keysync, fleet.api_key_auth, fleet.keys))
        .collect();
    let mut synced_in = Vec::new();
    for (variant, s) in variants.iter().zip(&started) {
        if !variant.check.weighed() {
            continue;
        }
        if let Some(time) = s.synced_in {
            if !synced_in.iter().any(|(check, _)| *check == variant.check) {
                synced_in.push((variant.check, time));
            }
        }
    }
    // keysync's filters with no keys, started the same way in the same round.
    let filters: Vec<KeyCheck> = synced_in.iter().map(|(check, _)| *check).collect();
    let empties: Vec<Started> = filters
        .iter()
        .map(|auth| auth.start(fleet.empty_keysync, fleet.api_key_auth, 0))
        .collect();
    std::thread::sleep(SETTLE);
    let memory: Vec<EnvoyMemory> = started
        .iter()
        .map(|s| EnvoyMemory::of(&s.gateway))
        .collect();
    let per_key: Vec<(KeyCheck, BytesAKey)> = filters
        .iter()
        .zip(&empties)
        .map(|(check, empty)| {
            let full = variants
                .iter()
                .position(|v| v.check == *check)
                .expect("a variant of each filter");
            let base = EnvoyMemory::of(&empty.gateway);
            (*check, memory[full].per_key_over(&base, fleet.keys))
        })
        .collect();
    drop(empties);

    let gateways: Vec<&Gateway> = started.iter().map(|s| &s.gateway).collect();
    for gateway in &gateways {
        if fleet.pinned {
            assert!(
                cpu_pin::pin(gateway.process.pid(), "0"),
                "pin Envoy to CPU 0"
            );
        }
    }
    let mut runs: Vec<Option<Run>> = vec![None; variants.len()];
    let mut line = format!("round {round}:");
    // The order turns by one each round: a run's place in its round (first after the
    // starts, last, between which others) measurably moves its figure.
    for position in 0..variants.len() {
        let i = (position + round) % variants.len();
        let (variant, gateway) = (&variants[i], gateways[i]);
        gateway.wait_for_status("/", &secret(1), 200, SERVE_TIMEOUT);
        let _ = wrk::run_with(gateway.addr, 16, WARM_UP, &[], Some(script));
        let cpu_before = cpu_time::process_cpu_ns(gateway.process.pid());
        let saturated = wrk::run_with(gateway.addr, 16, duration, &[], Some(script));
        let cpu_us = (cpu_time::process_cpu_ns(gateway.process.pid()) - cpu_before) as f64
            / 1_000.0
            / saturated.requests.max(1) as f64;
        let single = wrk::run_with(gateway.addr, 1, duration, &[], Some(script));
        for report in [&saturated, &single] {
            assert_eq!(
                report.non_2xx, 0,
                "{}: every request must be allowed",
                variant.name
            );
        }
        let _ = write!(
            line,
            " {} {:.0} req/s {cpu_us:.2} us CPU p99 {:.0} us;",
            variant.tag, saturated.requests_per_sec, single.p99_us
        );
        runs[i] = Some(Run {
            saturated,
            cpu_us,
            single,
            memory: memory[i],
        });
    }
    println!("{line}");
    Round {
        runs: runs
            .into_iter()
            .map(|r| r.expect("every variant ran"))
            .collect(),
        per_key,
        synced_in,
    }
}

/// The median of `values` with the lowest and the highest: `0.981 [0.950, 1.010]`.
struct Spread {
    median: f64,
    low: f64,
    high: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        let (low, high) = spread(values);
        let mut sorted = values.to_vec();
        Spread {
            median: median(&mut sorted).unwrap_or(f64::NAN),
            low,
            high,
        }
    }
}

fn print_summary(variants: &[Variant], rounds: &[Round], keys: usize) {
    let index = |tag: &str| variants.iter().position(|v| v.tag == tag);
    let a = index("(a)").expect("(a) in every run");
    let series = |f: &dyn Fn(&Round) -> f64| -> Spread {
        Spread::of(&rounds.iter().map(f).collect::<Vec<_>>())
    };
    let ratio = |i: usize, base: usize| {
        series(&|r: &Round| {
            r.runs[i].saturated.requests_per_sec / r.runs[base].saturated.requests_per_sec
        })
    };
    // By CPU: the base's CPU a request over this one's, the throughput ratio a worker
    // with a CPU of its own would show.
    let cpu_ratio =
        |i: usize, base: usize| series(&|r: &Round| r.runs[base].cpu_us / r.runs[i].cpu_us);
    let added = |i: usize, base: usize, pick: fn(&Report) -> f64| {
        series(&|r: &Round| pick(&r.runs[i].single) - pick(&r.runs[base].single))
    };
    println!(
        "{keys} keys, {} rounds: medians of the rounds' figures; ratios and added latency are against the same round's Envoy",
        rounds.len()
    );
    println!(
        "{:<42} {:>8} {:>22} {:>7} {:>7} | {:>7} {:>7} | {:>8} {:>8} | {:>8}",
        "variant (16 conn. | 1 conn.)",
        "req/s",
        "vs (a) [rounds]",
        "vs (c)",
        "vs (e)",
        "CPU us",
        "by CPU",
        "p50 +us",
        "p99 +us",
        "RSS MiB"
    );
    let versus = |i: usize, tag: &str| {
        index(tag).map_or("-".to_string(), |base| {
            format!("{:.3}", ratio(i, base).median)
        })
    };
    for (i, variant) in variants.iter().enumerate() {
        let vs_a = ratio(i, a);
        println!(
            "{:<42} {:>8.0} {:>22} {:>7} {:>7} | {:>7.2} {:>7.3} | {:>8.1} {:>8.1} | {:>8.1}",
            variant.name,
            series(&|r: &Round| r.runs[i].saturated.requests_per_sec).median,
            format!("{:.3} [{:.3}, {:.3}]", vs_a.median, vs_a.low, vs_a.high),
            versus(i, "(c)"),
            versus(i, "(e)"),
            series(&|r: &Round| r.runs[i].cpu_us).median,
            cpu_ratio(i, a).median,
            added(i, a, |r| r.p50_us).median,
            added(i, a, |r| r.p99_us).median,
            series(&|r: &Round| r.runs[i].memory.rss as f64).median / 1_048_576.0,
        );
    }

    // The figures the targets are stated in, with every round's range.
    let show = |label: &str, s: Spread, unit: &str| {
        println!(
            "{label}: median {:.3}{unit}, rounds [{:.3}, {:.3}]",
            s.median, s.low, s.high
        );
    };
    if let (Some(aa), Some(n)) = (index("(a')"), index("(n)")) {
        show("(a') / (a), the A/A control", ratio(aa, a), "");
        show(
            "(a') / (a) by CPU a request, the A/A control",
            cpu_ratio(aa, a),
            "",
        );
        let pairs = [
            ("(n)", "(a)"),
            ("(n)", "(c)"),
            // The built-in filter doing the contract's job (client header, key removed).
            ("(n)", "(cf)"),
            ("(cf)", "(c)"),
            ("(n)", "(e)"),
            ("(n0)", "(c)"),
            ("(n)", "(n0)"),
            // The ABI's own cost: the contract's calls alone, natively, against the
            // built-in filter and no filter; and keysync's filter against that floor.
            ("(c')", "(c)"),
            ("(c')", "(a)"),
            ("(n)", "(c')"),
            // The floor: a module that makes no call, against the built-in filter.
            ("(c0)", "(c)"),
            ("(c0)", "(a)"),
        ];
        for (tag, base_tag) in pairs {
            if let (Some(i), Some(base)) = (index(tag), index(base_tag)) {
                show(&format!("{tag} / {base_tag}"), ratio(i, base), "");
                show(
                    &format!("{tag} / {base_tag} by CPU a request"),
                    cpu_ratio(i, base),
                    "",
                );
            }
        }
        show(
            "(n) p99 at 1 connection over (a)",
            added(n, a, |r| r.p99_us),
            " us",
        );
        show(
            "(a') p99 at 1 connection over (a), the A/A control",
            added(aa, a, |r| r.p99_us),
            " us",
        );
    }
    for filter in [KeyCheck::Wasm, KeyCheck::Native] {
        let figures: Vec<BytesAKey> = rounds
            .iter()
            .flat_map(|r| r.per_key.iter())
            .filter(|(check, _)| *check == filter)
            .map(|(_, figures)| *figures)
            .collect();
        let synced: Vec<f64> = rounds
            .iter()
            .flat_map(|r| r.synced_in.iter())
            .filter(|(check, _)| *check == filter)
            .map(|(_, time)| time.as_secs_f64())
            .collect();
        if figures.is_empty() {
            continue;
        }
        let of =
            |pick: fn(&BytesAKey) -> f64| Spread::of(&figures.iter().map(pick).collect::<Vec<_>>());
        let rss = of(|f| f.rss);
        let synced = Spread::of(&synced);
        println!(
            "{filter:?} filter, {keys} keys, over the same Envoy with none synced, before load: RSS {:.1} bytes a key [{:.1}, {:.1}]; of it, the allocator's account: live heap {:.1}, freed and kept {:.1}; start to full sync {:.2} s [{:.2}, {:.2}]",
            rss.median,
            rss.low,
            rss.high,
            of(|f| f.allocated).median,
            of(|f| f.kept_free).median,
            synced.median,
            synced.low,
            synced.high,
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
    keys.fill_to(FLOOR_KEYS);
    let keysync = Keysync::start(&keys.database_url, &[]);
    wait_for_keysync(&keysync, FLOOR_KEYS, LOAD_TIMEOUT);
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
    let filter = |wasm: Option<&Path>| {
        let mut options = keysync_options(&keysync, "gateway.yaml");
        if before_wasm.is_some() {
            options.auth_config = BEFORE_AND_AFTER_AUTH.into();
        }
        options.filter_wasm = wasm.map(Path::to_path_buf);
        synced(Gateway::start(options))
    };
    if let Some(wasm) = before_wasm {
        variants.push(("(e0)", filter(Some(wasm))));
    }
    variants.push(("(e)", filter(None)));
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
/// `gateway` once its filter's store holds the keys.
fn synced(gateway: Gateway) -> Gateway {
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
