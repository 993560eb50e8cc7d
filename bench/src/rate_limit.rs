//! Rate limiting: accuracy (local mode on one Envoy with 2 workers; global mode on 3
//! Envoys sharing one Redis) and the cost of local mode over authentication alone.

use crate::cpu_time;
use crate::load;
use crate::median::median;
use crate::wrk;
use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::keysync::CreatedKey;
use keysync_e2e::rate_window::sleep_into_the_next_window;
use keysync_e2e::redis::TestRedis;
use keysync_e2e::stack::Stack;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

pub fn accuracy_local(limit: u32, requests: usize, connections: usize) {
    let stack = Stack::start(|options| options.concurrency = 2);
    let key = limited_key(&stack, limit);
    probe_then_wait_for_a_new_window(&stack.gateway, &key);
    let counts = load::run(&[stack.gateway.addr], &key.key, requests, connections);
    println!(
        "local: limit {limit}/min, {requests} requests over {connections} connections, 2 workers: {counts:?}"
    );
    println!("allowed: {}", counts.get(&200).copied().unwrap_or(0));
}

pub fn accuracy_global(limit: u32, requests: usize, connections: usize, envoys: usize) {
    let redis = TestRedis::start();
    let redis_url = redis.url();
    let stack = Stack::start_with(
        &[("REDIS_URL", &redis_url)],
        GatewayOptions::global_rate_limits,
    );
    let key = limited_key(&stack, limit);
    let others: Vec<Gateway> = (1..envoys)
        .map(|_| stack.start_another_gateway(GatewayOptions::global_rate_limits))
        .collect();
    let gateways: Vec<&Gateway> = std::iter::once(&stack.gateway).chain(&others).collect();
    for gateway in &gateways {
        gateway.wait_for_status("/", &key.key, 200, TIMEOUT);
    }
    sleep_into_the_next_window();
    let targets: Vec<_> = gateways.iter().map(|g| g.addr).collect();
    let counts = load::run(&targets, &key.key, requests, connections);
    println!(
        "global: limit {limit}/min, {requests} requests over {connections} connections spread over {envoys} Envoys, one Redis: {counts:?}"
    );
    println!("allowed: {}", counts.get(&200).copied().unwrap_or(0));
}

/// What local rate limiting adds to a request: one Envoy worker, direct responses, the
/// same key, rate limiting off versus local (with a limit never reached), alternating.
pub fn cost(rounds: usize, seconds: u64) {
    let stack = Stack::start(|_| {});
    let org = stack.create_org("cost");
    stack.set_org_limit(&org, &["--rpm", "1000000000"]);
    let key = stack.create_key(&org, &[]);
    let start = |mode: &str| {
        let mut options = GatewayOptions::new(stack.keysync.grpc, "direct");
        options.concurrency = 1;
        options.auth_config = format!(r#"{{"role":"auth","rate_limit":"{mode}"}}"#);
        let gateway = Gateway::start(options);
        gateway.wait_for_status("/", &key.key, 200, TIMEOUT);
        gateway
    };
    let off = start("off");
    let local = start("local");
    assert!(local
        .get_with_key("/", &key.key)
        .header("ratelimit")
        .is_some());
    assert!(off
        .get_with_key("/", &key.key)
        .header("ratelimit")
        .is_none());
    let header = vec![format!("Authorization: Bearer {}", key.key)];
    let duration = Duration::from_secs(seconds);
    // Envoy's own CPU time per request is the verdict (only what Envoy did); throughput is
    // printed beside it, and the two differ when Envoy was not the bottleneck of a round.
    let run = |gateway: &Gateway| {
        let pid = gateway.process.pid();
        let before = cpu_time::process_cpu_ns(pid);
        let report = wrk::run(gateway.addr, 16, duration, &header);
        let cpu_ns = cpu_time::process_cpu_ns(pid) - before;
        let cpu_us = cpu_ns as f64 / 1_000.0 / report.requests.max(1) as f64;
        (report, cpu_us)
    };
    let mut cpu_added = Vec::new();
    let mut wall_added = Vec::new();
    for round in 0..rounds {
        let (a, a_cpu) = run(&off);
        let (b, b_cpu) = run(&local);
        assert_eq!(a.non_2xx + b.non_2xx, 0, "every request must pass");
        println!(
            "round {round}: off {:.0} req/s ({:.2} us/req wall, {a_cpu:.2} us/req Envoy CPU, p50 {:.0} us, p99 {:.0} us) | local {:.0} req/s ({:.2} us/req wall, {b_cpu:.2} us/req Envoy CPU, p50 {:.0} us, p99 {:.0} us)",
            a.requests_per_sec, a.us_per_request(), a.p50_us, a.p99_us,
            b.requests_per_sec, b.us_per_request(), b.p50_us, b.p99_us
        );
        cpu_added.push(b_cpu - a_cpu);
        wall_added.push(b.us_per_request() - a.us_per_request());
    }
    match (median(&mut cpu_added), median(&mut wall_added)) {
        (Some(cpu_added), Some(wall_added)) => println!(
            "local rate limiting adds {cpu_added:.2} us of Envoy CPU a request (median of {rounds} rounds; each round {seconds}s per mode); by throughput {wall_added:.2} us"
        ),
        _ => println!("no rounds run: no medians"),
    }
}

fn limited_key(stack: &Stack, limit: u32) -> CreatedKey {
    let org = stack.create_org("accuracy");
    stack.set_org_limit(&org, &["--rpm", &limit.to_string()]);
    stack.create_key(&org, &[])
}

fn probe_then_wait_for_a_new_window(gateway: &Gateway, key: &CreatedKey) {
    gateway.wait_for_status("/", &key.key, 200, TIMEOUT);
    sleep_into_the_next_window();
}
