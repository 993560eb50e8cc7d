//! Quota accuracy across a fleet: one organization's monthly quota, several Envoys
//! driven at full speed until the quota is used up; the requests they admitted
//! together against the bound (0.1% of the quota, or one credit per Envoy, whichever is
//! larger), and what `keysync usage` then reports.

use crate::load;
use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::keysync as ks;
use keysync_e2e::poll;
use keysync_e2e::stack::Stack;
use std::time::{Duration, Instant};

/// Metering as shipped (a flush every 10 s): leases are reconciled from it.
const SYNC: &str = r#"{"role":"sync","refresh_interval":"15m"}"#;

/// One worker each: that worker's stats tell when it has read the list of quotas.
fn configure(options: &mut GatewayOptions) {
    options.backends = "direct".into();
    options.sync_config = SYNC.into();
    options.concurrency = 1;
}

/// What the filter admits on credit while a lease is on its way (`quota::credit`).
fn credit(quota: u64) -> u64 {
    (quota / 1000).clamp(1, 100)
}

pub fn run(quota: u64, envoys: usize, round: usize) {
    let stack = Stack::start(configure);
    let others: Vec<Gateway> = (1..envoys)
        .map(|_| stack.start_another_gateway(configure))
        .collect();
    let gateways: Vec<&Gateway> = std::iter::once(&stack.gateway).chain(&others).collect();
    let org = stack.create_org("quota");
    let key = stack.create_key(&org, &[]);
    let probe = stack.create_key(&stack.create_org("probe"), &[]).key;
    for gateway in &gateways {
        gateway.wait_for_status("/", &key.key, 200, Duration::from_secs(60));
        gateway.wait_for_status("/", &probe, 200, Duration::from_secs(60));
    }
    let before = envoys as u64;
    let output = ks::cli(
        &stack.database_url,
        &["orgs", "set-quota", &org, "--monthly", &quota.to_string()],
    );
    assert!(output.status.success(), "{output:?}");
    // Every Envoy's worker has the new list before the load: its sync service wrote
    // it, then the worker ticked (it reads the list before it flushes its stats).
    for gateway in &gateways {
        gateway.wait_for_stat("quota_revision", Duration::from_secs(30), |n| n > 0);
        let allowed = gateway.stat("allowed");
        gateway.wait_for_status("/", &probe, 200, Duration::from_secs(10));
        gateway.wait_for_stat("allowed", Duration::from_secs(10), |n| n > allowed);
    }

    let targets: Vec<_> = gateways.iter().map(|g| g.addr).collect();
    let keys = [key.key.clone()];
    let started = Instant::now();
    let (mut admitted, mut refused_early, mut rounds) = (0u64, 0u64, 0);
    loop {
        let counts = load::run_keys(&targets, &keys, round, 16 * envoys);
        rounds += 1;
        let ok = counts
            .iter()
            .filter(|((_, status), _)| *status == 200)
            .map(|(_, n)| *n as u64)
            .sum::<u64>();
        let refused = counts
            .iter()
            .filter(|((_, status), _)| *status == 429)
            .map(|(_, n)| *n as u64)
            .sum::<u64>();
        assert_eq!(ok + refused, round as u64, "only 200 and 429: {counts:?}");
        admitted += ok;
        if ok == 0 {
            break;
        }
        refused_early += refused;
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the quota never ran out"
        );
    }
    let served = before + admitted;
    let bound = (quota / 1000).max(envoys as u64 * credit(quota));
    println!(
        "quota {quota} across {envoys} Envoys: {served} admitted ({before} before the quota, {admitted} under load in {rounds} rounds of {round}, {:.1}s); overshoot {} (bound {bound}); {refused_early} refused before the last round",
        started.elapsed().as_secs_f64(),
        served as i64 - quota as i64,
    );
    let answer = poll::within(Duration::from_secs(40), Duration::from_secs(1), || {
        let answer = ks::cli_json(
            &stack.database_url,
            &["usage", "--org-id", &org, "--by", "status", "--since", "1d"],
        );
        let ok = answer["rows"].as_array().and_then(|rows| {
            rows.iter()
                .find(|row| row["outcome"] == "2xx")
                .and_then(|row| row["requests"].as_u64())
        });
        if ok == Some(served) {
            Ok(answer)
        } else {
            Err(answer)
        }
    })
    .unwrap_or_else(|last| panic!("usage never showed {served} served: {last}"));
    println!("keysync usage agrees: {}", answer["rows"]);
    assert!(
        served <= quota + bound,
        "overshoot {} over the bound {bound}",
        served - quota
    );
}
