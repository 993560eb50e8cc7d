//! How long a fresh Envoy takes from its start to ready, with many keys: ready meaning
//! that its store holds a complete sync. With the wasm filter that is its probe port's
//! `GET /ready` answering 200 (the filter holds it back, 503, until then), measured
//! against Envoy's own readiness (its admin `/ready`, what a probe saw before). The native
//! filter holds Envoy's own init until its first full sync, so there Envoy's readiness is
//! the synced one. keysync runs with the keys loaded; each round starts a new Envoy of
//! each filter (one worker, the shipped sync settings), in an order that turns each
//! round, and polls.
//!
//! Each round also times two controls: the key set paged through `ListKeys` by a plain
//! gRPC client (tonic, the filter's page size, nothing stored), what any sync through
//! keysync's API with that page size takes before it writes a single key; and each
//! filter's Envoy fed by a keysync with no keys, Envoy's start without the keys.

use crate::bench_keys::{wait_for_keysync, BenchKeys};
use crate::fleet::{grpc, PAGE_SIZE};
use crate::gateways::{KeysyncFilter, SYNC_EVERY_15M};
use crate::machine_load::load_average;
use crate::median::median;
use crate::proc_status::rss_kib;
use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::http;
use keysync_e2e::keysync::Keysync;
use keysync_e2e::poll;
use std::time::{Duration, Instant};

const LOAD_TIMEOUT: Duration = Duration::from_secs(600);
const READY_TIMEOUT: Duration = Duration::from_secs(600);
/// How often `/ready` is asked: the figures are this precise.
const POLL: Duration = Duration::from_millis(10);

/// One Envoy's start.
struct Round {
    filter: KeysyncFilter,
    /// From spawning Envoy to its admin `/ready` answering 200 (and its listener up).
    envoy_ready: Duration,
    /// From spawning Envoy to ready with a synced store.
    ready: Duration,
    /// Keys the refresh reported (`cache refresh complete: ... total=N`).
    total: String,
    rss_kib: u64,
}

pub fn run(keys: usize, rounds: usize, filters: &[KeysyncFilter]) {
    let mut bench_keys = BenchKeys::start();
    bench_keys.fill_to(keys);
    let keysync = Keysync::start(&bench_keys.database_url, &[]);
    wait_for_keysync(&keysync, keys, LOAD_TIMEOUT);
    let empty_database = bench_keys.postgres.create_database();
    keysync_e2e::keysync::migrate(&empty_database);
    let empty_keysync = Keysync::start(&empty_database, &[]);

    let load_before = load_average();
    let mut listings = Vec::new();
    let mut results: Vec<Round> = Vec::new();
    let mut without_keys: Vec<Round> = Vec::new();
    for r in 0..rounds {
        // The order turns each round: the first Envoy of a round starts on a quieter
        // machine than the next.
        for i in 0..filters.len() {
            let filter = filters[(i + r) % filters.len()];
            results.push(round(&keysync, filter));
            without_keys.push(round(&empty_keysync, filter));
        }
        listings.push(list_keys(&keysync, keys).as_secs_f64());
    }
    println!(
        "time from Envoy's start to ready, {keys} keys, {rounds} rounds of a fresh Envoy each (1 worker); load average before {load_before}, after {}",
        load_average()
    );
    println!(
        "  {:<8} {:<8} {:>16} {:>22} {:>12} {:>10}",
        "round", "filter", "Envoy ready (s)", "synced: ready (s)", "RSS (MiB)", "keys"
    );
    for (i, r) in results.iter().enumerate() {
        println!(
            "  {:<8} {:<8} {:>16.2} {:>22.2} {:>12.0} {:>10}",
            i / filters.len() + 1,
            format!("{:?}", r.filter),
            r.envoy_ready.as_secs_f64(),
            r.ready.as_secs_f64(),
            r.rss_kib as f64 / 1024.0,
            r.total
        );
    }
    for &filter in filters {
        let of = |rounds: &[Round], pick: fn(&Round) -> Duration| {
            let mut values: Vec<f64> = rounds
                .iter()
                .filter(|r| r.filter == filter)
                .map(|r| pick(r).as_secs_f64())
                .collect();
            median(&mut values).unwrap_or(f64::NAN)
        };
        println!(
            "  median, {filter:?}: Envoy ready {:.2} s, ready (store synced) {:.2} s; the control, the same Envoy fed no keys: ready (synced) {:.2} s",
            of(&results, |r| r.envoy_ready),
            of(&results, |r| r.ready),
            of(&without_keys, |r| r.ready)
        );
    }
    println!(
        "  median, the control: {keys} keys paged through ListKeys ({PAGE_SIZE} a page) by a plain gRPC client, nothing stored: {:.2} s (rounds: {})",
        median(&mut listings.clone()).unwrap_or(f64::NAN),
        listings
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// How long a plain gRPC client takes to page through keysync's whole key set (a fresh
/// connection, as a fresh Envoy has).
fn list_keys(keysync: &Keysync, keys: usize) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let channel = grpc::connect(keysync.grpc)
            .await
            .expect("connect to keysync");
        let (listed, _) = grpc::list_all_keys(&channel, PAGE_SIZE, None)
            .await
            .expect("list keysync's keys");
        assert_eq!(listed, keys, "ListKeys listed another key set");
        started.elapsed()
    })
}

fn round(keysync: &Keysync, filter: KeysyncFilter) -> Round {
    let mut options = GatewayOptions::new(keysync.grpc, "direct");
    options.template = filter.template().into();
    options.concurrency = 1;
    options.sync_config = SYNC_EVERY_15M.into();
    // The wasm filter's readiness is its probe port's; the native filter's is Envoy's,
    // asked here as often as the probe port is.
    let native = filter == KeysyncFilter::Native;
    let probes = (!native).then(|| options.probe_listener());
    options.wait_ready = !native;
    let started = Instant::now();
    // Returns once the gateway listener is up and, for the wasm filter, Envoy's admin
    // `/ready` says 200.
    let gateway = Gateway::start(options);
    if native {
        wait_for_200(&gateway, gateway.admin);
    }
    let envoy_ready = started.elapsed();
    if let Some(probes) = probes {
        wait_for_200(&gateway, probes);
    }
    let ready = started.elapsed();
    let line = gateway
        .process
        .wait_for_log("cache refresh complete", Duration::from_secs(5));
    let total = line
        .split("total=")
        .nth(1)
        .map(|rest| rest.trim().to_string())
        .unwrap_or_default();
    Round {
        filter,
        envoy_ready,
        ready,
        total,
        rss_kib: rss_kib(gateway.process.pid()),
    }
}

/// Polls `GET /ready` at `at` (the probe port, or Envoy's admin) until it answers 200.
fn wait_for_200(gateway: &Gateway, at: std::net::SocketAddr) {
    poll::within(READY_TIMEOUT, POLL, || match http::get(at, "/ready", &[]) {
        Ok(response) if response.status == 200 => Ok(()),
        Ok(response) => Err(response.status.to_string()),
        Err(e) => Err(e.to_string()),
    })
    .unwrap_or_else(|last| {
        panic!(
            "/ready never answered 200: {last}\n{}",
            gateway.process.log_tail(20)
        )
    });
}
