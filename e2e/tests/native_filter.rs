//! What is the native filter's own (`envoy/native.yaml`), beyond the contract it shares with
//! the wasm filter (`contract.rs`, and any suite run with `KEYSYNC_E2E_GATEWAY=native`):
//! Envoy takes no traffic before the first full sync (the sync extension holds Envoy's init).
//! Real Envoy, keysync and PostgreSQL. Two ignored tests are measurements for the benchmark
//! work (memory a key, requests a second against the wasm filter).

use std::time::{Duration, Instant};

use keysync_e2e::gateway::{listener_addr, GatewayOptions};
use keysync_e2e::http;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::process::Signal;
use keysync_e2e::replies::forwarded_header;
use keysync_e2e::stack::Stack;

/// How long the test watches Envoy hold its init while keysync is frozen.
const HELD_FOR: Duration = Duration::from_secs(3);

#[test]
fn envoy_takes_no_traffic_before_the_first_full_sync() {
    // A stack whose keysync is frozen (SIGSTOP) before a second, native Envoy starts: the
    // first gateway (the stack's) is only there to make the stack.
    let stack = Stack::start(GatewayOptions::native);
    let org = stack.create_org("init");
    let key = stack.create_key(&org, &[]);
    stack.keysync.process.signal(Signal::Stop);
    let gateway = stack.start_another_gateway(|options| {
        options.native();
        options.wait_ready = false;
    });

    // Held: Envoy is not ready and its listener, bound, takes no connection.
    let until = Instant::now() + HELD_FOR;
    while Instant::now() < until {
        assert_eq!(
            gateway.ready_status(),
            Some(503),
            "ready before its first sync:\n{}",
            gateway.process.log_tail(20)
        );
        let tried = http::get(gateway.addr, "/orders", &[]);
        assert!(tried.is_err(), "served before its first sync: {tried:?}");
        std::thread::sleep(poll::INTERVAL);
    }
    assert!(listener_addr(gateway.admin, "gateway").is_some());

    // keysync answers again: the first full sync completes, Envoy is released, and the key
    // is served from the store.
    stack.keysync.process.signal(Signal::Cont);
    poll::eventually(
        "Envoy's /ready",
        DEADLINE,
        || gateway.ready_status(),
        |s| *s == Some(200),
    );
    gateway
        .process
        .wait_for_log("Envoy's init released (ready)", DEADLINE);
    let response = gateway.get_with_key("/orders", &key.key);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        forwarded_header(&response, "x-api-key-id"),
        vec![key.key_id]
    );
    // From the store (a full page, or the watch stream when keysync had not loaded the key
    // yet when it froze), not by asking keysync.
    assert_eq!(gateway.stat("refresh_ok"), 1);
    assert_eq!(gateway.stat("miss_lookups"), 0, "served from the store");
}

/// Resident memory of a process, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
}

/// A figure for the native filter's store, not a check: Envoy's resident memory with
/// `KEYSYNC_E2E_MEMORY_KEYS` keys (default 1,000,000) against an Envoy of the same
/// configuration that synced none, for the native filter and the wasm one in the same run,
/// and the time from a native Envoy's start to its readiness (its first full sync).
/// `cargo test -p keysync-e2e --test native_filter -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: minutes, about 2 GB of memory"]
fn bytes_a_key_in_the_store() {
    use keysync_e2e::gateway::Gateway;
    use keysync_e2e::key_population::KeyPopulation;
    use keysync_e2e::postgres::database_of;

    let keys: usize = std::env::var("KEYSYNC_E2E_MEMORY_KEYS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let quiet = |options: &mut GatewayOptions| {
        options.sync_config = r#"{"role":"sync","refresh_interval":"15m"}"#.into();
        options.concurrency = 2;
    };
    let settle = || std::thread::sleep(Duration::from_secs(5));
    let stack = Stack::start(|options| {
        quiet(options);
        options.native();
    });
    let empty_wasm = stack.start_another_gateway(|options| {
        quiet(options);
        options.template = "gateway.yaml".into();
    });
    empty_wasm.wait_until_synced(DEADLINE);
    settle();
    let empty = [
        ("native", rss_kib(stack.gateway.process.pid())),
        ("wasm", rss_kib(empty_wasm.process.pid())),
    ];
    drop(empty_wasm);

    let org = stack.create_org("memory");
    let database = database_of(&stack.database_url);
    KeyPopulation::new(&stack.postgres, database, &org, "memory").insert(0..keys);
    // keysync has them all once the first gateway's stream delivered them all.
    stack
        .gateway
        .wait_for_stat("stream_changes", Duration::from_secs(600), |n| {
            n >= keys as u64
        });

    for (name, empty_rss) in empty {
        let started = Instant::now();
        let full: Gateway = stack.start_another_gateway(|options| {
            quiet(options);
            options.template = format!(
                "{}.yaml",
                if name == "native" {
                    "native"
                } else {
                    "gateway"
                }
            );
        });
        let ready_after = started.elapsed();
        full.wait_for_stat("keys_loaded", Duration::from_secs(600), |n| {
            n >= keys as u64
        });
        let synced_after = started.elapsed();
        settle();
        let full_rss = rss_kib(full.process.pid());
        let per_key = (full_rss.saturating_sub(empty_rss) * 1024) as f64 / keys as f64;
        eprintln!(
            "{name}: {keys} keys: Envoy RSS {empty_rss} KiB empty, {full_rss} KiB full: \
             {per_key:.1} bytes a key; start to ready {:.2} s, to keys_loaded {:.2} s",
            ready_after.as_secs_f64(),
            synced_after.as_secs_f64()
        );
    }
}

/// Requests a second of `wrk` (one thread, 16 connections, `seconds`) against `gateway`.
fn requests_a_second(gateway: &keysync_e2e::gateway::Gateway, key: &str, seconds: u32) -> f64 {
    let output = std::process::Command::new("wrk")
        .args(["-t1", "-c16", &format!("-d{seconds}s"), "-H"])
        .arg(format!("authorization: Bearer {key}"))
        .arg(format!("http://{}/", gateway.addr))
        .output()
        .unwrap_or_else(|e| panic!("cannot run wrk (apt-get install wrk): {e}"));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("Non-2xx"), "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in:\n{text}"))
}

/// A rough figure, not a check (the benchmarks' method is `bench/`): requests a second
/// through the native filter and the wasm filter, one Envoy worker each, Envoy answering
/// itself (no backend), a valid key, alternating rounds on this machine.
/// `cargo test -p keysync-e2e --test native_filter -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement: a minute of load"]
fn native_against_wasm_requests_a_second() {
    let stack = Stack::start(|options| {
        options.native();
        options.backends = "direct".into();
        options.concurrency = 1;
    });
    let org = stack.create_org("load");
    let key = stack.create_key(&org, &[]);
    let wasm = stack.start_another_gateway(|options| {
        options.template = "gateway.yaml".into();
        options.backends = "direct".into();
        options.concurrency = 1;
    });
    wasm.wait_until_synced(DEADLINE);
    for gateway in [&stack.gateway, &wasm] {
        gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    }
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let native = requests_a_second(&stack.gateway, &key.key, 5);
        let wasm = requests_a_second(&wasm, &key.key, 5);
        eprintln!(
            "native {native:.0} req/s, wasm {wasm:.0} req/s: {:.2}",
            native / wasm
        );
        rounds.push(native / wasm);
    }
    rounds.sort_by(f64::total_cmp);
    eprintln!("native / wasm, median of 3 rounds: {:.2}", rounds[1]);
}
