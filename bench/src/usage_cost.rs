//! What usage metering costs a request: one Envoy worker, direct responses, keys in
//! turn, metering off against on (flushing every 10 s, as shipped), in alternating
//! rounds (the `rate-limit-cost` method); beside them, the peer: metering off and Envoy's
//! own gRPC access log service streaming every request to a receiver that counts the
//! same way ([`crate::access_log_peer`]); optionally the filter of an earlier build.

use crate::access_log_peer::AccessLogPeer;
use crate::cpu_time;
use crate::median::median;
use crate::wrk;
use keysync_e2e::gateway::{ConfigEdit, Gateway, GatewayOptions};
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::postgres::TestPostgres;
use keysync_e2e::scratch::ScratchDir;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

/// Keys the load cycles through: several counters per flush, like real traffic.
const KEYS: usize = 50;

const SYNC_METERING_OFF: &str =
    r#"{"role":"sync","refresh_interval":"15m","usage_flush_interval":"off"}"#;
/// As shipped: metering on, a flush every 10 s.
const SYNC_METERING_ON: &str = r#"{"role":"sync","refresh_interval":"15m"}"#;
/// For an earlier build, which knows no `usage_flush_interval`.
const SYNC_BEFORE: &str = r#"{"role":"sync","refresh_interval":"15m"}"#;

fn gateway(
    keysync: &Keysync,
    sync_config: &str,
    wasm: Option<&Path>,
    peer: Option<&AccessLogPeer>,
) -> Gateway {
    let mut options = GatewayOptions::new(keysync.grpc, "direct");
    options.concurrency = 1;
    options.sync_config = sync_config.into();
    if let Some(wasm) = wasm {
        options
            .env
            .push(("KEYSYNC_FILTER_WASM".into(), wasm.display().to_string()));
    }
    if let Some(peer) = peer {
        options.config_edits.push(ConfigEdit {
            find: "stat_prefix: gateway\n".into(),
            replace: format!(
                "stat_prefix: gateway\n          {}",
                AccessLogPeer::access_log_config()
            ),
        });
        options.config_edits.push(ConfigEdit {
            find: "  clusters:\n".into(),
            replace: format!("  clusters:\n  {}", peer.cluster_config()),
        });
    }
    Gateway::start(options)
}

pub fn run(rounds: usize, seconds: u64, before_wasm: Option<&Path>) {
    let dir = ScratchDir::new("bench-usage-cost").expect("scratch dir");
    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    ks::migrate(&database_url);
    let org = ks::create_org(&database_url, "bench");
    let keys: Vec<String> = (0..KEYS)
        .map(|n| ks::create_key(&database_url, &org, &format!("bench {n}"), &[]).key)
        .collect();
    let keysync = Keysync::start(&database_url, &[]);
    let peer = AccessLogPeer::start();

    let before = before_wasm.map(|wasm| gateway(&keysync, SYNC_BEFORE, Some(wasm), None));
    let off = gateway(&keysync, SYNC_METERING_OFF, None, None);
    let on = gateway(&keysync, SYNC_METERING_ON, None, None);
    let access_log = gateway(&keysync, SYNC_METERING_OFF, None, Some(&peer));
    for gateway in before.iter().chain([&off, &on, &access_log]) {
        gateway.wait_for_status("/", &keys[0], 200, Duration::from_secs(30));
    }
    let script = dir.path().join("keys.lua");
    std::fs::write(&script, wrk::rotating_keys_script(&keys)).expect("write wrk script");

    let mut variants: Vec<(&str, &Gateway)> = Vec::new();
    if let Some(before) = &before {
        variants.push(("(b) before", before));
    }
    variants.push(("(off) metering off", &off));
    variants.push(("(on) metering on", &on));
    variants.push(("(als) off + gRPC access log", &access_log));

    let duration = Duration::from_secs(seconds);
    let me = std::process::id();
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut receiver_cpu = Vec::new();
    let mut sent_to_peer = 0;
    for round in 0..rounds {
        let mut line = format!("round {round}:");
        for (i, (name, gateway)) in variants.iter().enumerate() {
            let pid = gateway.process.pid();
            let before_envoy = cpu_time::process_cpu_ns(pid);
            let before_me = cpu_time::process_cpu_ns(me);
            let report = wrk::run_with(gateway.addr, 16, duration, &[], Some(&script));
            let envoy_us = (cpu_time::process_cpu_ns(pid) - before_envoy) as f64
                / 1_000.0
                / report.requests.max(1) as f64;
            assert_eq!(report.non_2xx, 0, "{name} answered non-2xx");
            cpu[i].push(envoy_us);
            wall[i].push(report.us_per_request());
            let _ = write!(
                line,
                " {name} {:.0} req/s, {envoy_us:.2} us Envoy CPU;",
                report.requests_per_sec
            );
            if std::ptr::eq(*gateway, &access_log) {
                // The receiver is the only thing this process runs during the round.
                let me_us = (cpu_time::process_cpu_ns(me) - before_me) as f64
                    / 1_000.0
                    / report.requests.max(1) as f64;
                receiver_cpu.push(me_us);
                sent_to_peer += report.requests;
                let _ = write!(line, " receiver {me_us:.2} us CPU;");
            }
        }
        println!("{line}");
    }

    // The variants did what they are measured for.
    let flushed = on.wait_for_stat("usage_flushes_ok", Duration::from_secs(30), |n| n > 0);
    assert_eq!(off.stat("usage_flushes_ok"), 0);
    // The access log is flushed to the receiver about once a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while peer.requests() < sent_to_peer && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "metering on: {flushed} flushes taken; access log receiver: {} of {sent_to_peer} requests counted in {} counters",
        peer.requests(),
        peer.counters()
    );

    let index = |prefix: &str| {
        variants
            .iter()
            .position(|(name, _)| name.starts_with(prefix))
            .expect("variant")
    };
    let paired = |series: &[Vec<f64>], a: usize, b: usize| -> Option<f64> {
        let mut differences: Vec<f64> = series[a]
            .iter()
            .zip(&series[b])
            .map(|(x, y)| x - y)
            .collect();
        median(&mut differences)
    };
    let off_index = index("(off)");
    for (prefix, what) in [
        ("(on)", "metering on"),
        ("(als)", "the gRPC access log (Envoy's side)"),
        (
            "(b)",
            "the earlier build, against this one with metering off",
        ),
    ] {
        if let Some(i) = variants
            .iter()
            .position(|(name, _)| name.starts_with(prefix))
        {
            let (cpu_added, wall_added) = (paired(&cpu, i, off_index), paired(&wall, i, off_index));
            if let (Some(cpu_added), Some(wall_added)) = (cpu_added, wall_added) {
                println!(
                    "{what}: {cpu_added:+.2} us of Envoy CPU a request against metering off (median of {rounds} paired rounds, {seconds}s each); by throughput {wall_added:+.2} us"
                );
            }
        }
    }
    if let Some(receiver) = median(&mut receiver_cpu) {
        println!("the access log receiver's own CPU: {receiver:.2} us a request (median)");
    }
}
