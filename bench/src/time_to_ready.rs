//! How long a fresh Envoy takes from its start to ready, with many keys: ready meaning
//! that its probe port's `GET /ready` answers 200, which the keysync filter holds back
//! (503) until its store holds a complete sync, against Envoy's own readiness (its admin
//! `/ready`, what a probe saw before). keysync runs with the keys loaded; each round
//! starts a new Envoy (one worker, the shipped sync settings) and polls both.

use crate::bench_keys::{wait_for_keysync, BenchKeys};
use crate::gateways::SYNC_EVERY_15M;
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
    /// From spawning Envoy to its admin `/ready` answering 200 (and its listener up).
    envoy_ready: Duration,
    /// From spawning Envoy to the probe port's `/ready` answering 200.
    ready: Duration,
    /// Keys the refresh reported (`cache refresh complete: ... total=N`).
    total: String,
    rss_kib: u64,
}

pub fn run(keys: usize, rounds: usize) {
    let mut bench_keys = BenchKeys::start();
    bench_keys.fill_to(keys);
    let keysync = Keysync::start(&bench_keys.database_url, &[]);
    wait_for_keysync(&keysync, keys, LOAD_TIMEOUT);

    let results: Vec<Round> = (0..rounds).map(|_| round(&keysync)).collect();
    println!("time from Envoy's start to ready, {keys} keys, {rounds} fresh Envoys (1 worker)");
    println!(
        "  {:<8} {:>16} {:>22} {:>12} {:>10}",
        "round", "Envoy ready (s)", "synced: /ready 200 (s)", "RSS (MiB)", "keys"
    );
    for (i, r) in results.iter().enumerate() {
        println!(
            "  {:<8} {:>16.2} {:>22.2} {:>12.0} {:>10}",
            i + 1,
            r.envoy_ready.as_secs_f64(),
            r.ready.as_secs_f64(),
            r.rss_kib as f64 / 1024.0,
            r.total
        );
    }
    let mut envoy: Vec<f64> = results
        .iter()
        .map(|r| r.envoy_ready.as_secs_f64())
        .collect();
    let mut ready: Vec<f64> = results.iter().map(|r| r.ready.as_secs_f64()).collect();
    println!(
        "  median: Envoy ready {:.2} s, ready (store synced) {:.2} s",
        median(&mut envoy).unwrap_or(f64::NAN),
        median(&mut ready).unwrap_or(f64::NAN)
    );
}

fn round(keysync: &Keysync) -> Round {
    let mut options = GatewayOptions::new(keysync.grpc, "direct");
    options.concurrency = 1;
    options.sync_config = SYNC_EVERY_15M.into();
    let probes = options.probe_listener();
    let started = Instant::now();
    // Returns once Envoy's admin `/ready` says 200 and the gateway listener is up.
    let gateway = Gateway::start(options);
    let envoy_ready = started.elapsed();
    poll::within(READY_TIMEOUT, POLL, || {
        match http::get(probes, "/ready", &[]) {
            Ok(response) if response.status == 200 => Ok(()),
            Ok(response) => Err(response.status.to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .unwrap_or_else(|last| {
        panic!(
            "/ready never answered 200: {last}\n{}",
            gateway.process.log_tail(20)
        )
    });
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
        envoy_ready,
        ready,
        total,
        rss_kib: rss_kib(gateway.process.pid()),
    }
}
