//! Monthly quotas through real Envoys, keysync and PostgreSQL: an organization's quota
//! admits what it allows and then answers 429 `quota_exceeded` with the quota, its reset
//! and `Retry-After`; across three Envoys driven at once the overshoot stays within one
//! credit per Envoy; a raised, a key's own and a cleared quota take effect; the state
//! survives a keysync restart; the 80% and 100% alerts are logged; the lists show use.

use std::time::Duration;

use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::http::Response;
use keysync_e2e::keysync::{self, Keysync};
use keysync_e2e::poll;
use keysync_e2e::replies::assert_error;
use keysync_e2e::stack::Stack;

/// Usage reported every second: leases are reconciled from the flushes.
const SYNC_WITH_USAGE: &str = r#"{"role":"sync","refresh_interval":"2s","max_retry_interval":"1s","usage_flush_interval":"1s"}"#;

/// `keysync <what> set-quota <id> <args>`, then waits until every gateway's workers
/// hold the new list of quotas (within about two seconds: see `quota_sync`): the sync
/// service has written it, and then each gateway's one worker has ticked (it reads the
/// list on its tick, before it flushes its stats), as a request of `probe` (a key
/// without a quota) showing up in its stats tells.
fn set_quota(
    stack: &Stack,
    gateways: &[&Gateway],
    probe: &str,
    what: &str,
    id: &str,
    args: &[&str],
) {
    let before: Vec<u64> = gateways
        .iter()
        .map(|gateway| gateway.stat("quota_revision"))
        .collect();
    let mut all = vec![what, "set-quota", id];
    all.extend_from_slice(args);
    let output = keysync::cli(&stack.database_url, &all);
    assert!(
        output.status.success(),
        "keysync {all:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (gateway, before) in gateways.iter().zip(before) {
        gateway.wait_for_stat("quota_revision", poll::DEADLINE, |n| n > before);
        let allowed = gateway.stat("allowed");
        assert_eq!(gateway.get_with_key("/orders", probe).status, 200);
        gateway.wait_for_stat("allowed", poll::DEADLINE, |n| n > allowed);
    }
}

/// One worker a gateway: `set_quota` can tell when it has the list.
fn one_worker(options: &mut GatewayOptions) {
    options.sync_config = SYNC_WITH_USAGE.into();
    options.concurrency = 1;
}

/// Seconds in `Retry-After`.
fn retry_after(response: &Response) -> u64 {
    response
        .header("retry-after")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in seconds: {:?}", response.headers))
}

/// Sends requests of `key` one after another until the gateway says the quota is used
/// up (a 429 whose Retry-After is the reset, not the 1 s of a lease on its way);
/// returns the requests it admitted and that last 429.
fn drive_to_exhaustion(gateway: &Gateway, key: &str) -> (u64, Response) {
    let mut admitted = 0;
    poll::within(Duration::from_secs(60), Duration::ZERO, || {
        let response = gateway.get_with_key("/orders", key);
        match response.status {
            200 => {
                admitted += 1;
                Err(())
            }
            429 if retry_after(&response) > 1 => Ok(response),
            429 => {
                std::thread::sleep(Duration::from_millis(20));
                Err(())
            }
            other => panic!("unexpected {other}: {}", response.text()),
        }
    })
    .map(|last| (admitted, last))
    .unwrap_or_else(|()| panic!("the quota never ran out ({admitted} admitted)"))
}

/// The `quota_exceeded` 429 of a monthly quota of `limit`.
fn assert_quota_exceeded(response: &Response, limit: u64) {
    assert_error(response, 429, "quota_exceeded");
    let retry = retry_after(response);
    // A month is 28 to 31 days.
    assert!(retry > 1 && retry <= 31 * 86_400, "Retry-After {retry}");
    assert_eq!(
        response.header("ratelimit"),
        Some(format!("limit={limit}, remaining=0, reset={retry}").as_str())
    );
    let policy = response.header("ratelimit-policy").unwrap_or_default();
    let window: u64 = policy
        .strip_prefix(&format!("{limit};w="))
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("ratelimit-policy {policy:?}"));
    assert!((28 * 86_400..=31 * 86_400).contains(&window), "{policy}");
}

#[test]
fn an_org_quota_admits_what_it_allows_then_refuses_until_raised_or_cleared() {
    let mut stack = Stack::start(one_worker);
    let org = stack.create_org("quota");
    let key = stack.create_key(&org, &[]);
    let probe = stack.create_key(&stack.create_org("probe"), &[]).key;
    stack
        .gateway
        .wait_for_status("/", &key.key, 200, poll::DEADLINE);
    stack
        .gateway
        .wait_for_status("/", &probe, 200, poll::DEADLINE);
    // One request before the quota: it counts against it once flushed.
    poll::within(poll::DEADLINE, poll::INTERVAL, || {
        let answer = keysync::cli_json(
            &stack.database_url,
            &["usage", "--org-id", &org, "--since", "1d"],
        );
        (answer["total_requests"] == 1).then_some(()).ok_or(answer)
    })
    .unwrap_or_else(|answer| panic!("the first request was never flushed: {answer}"));
    set_quota(
        &stack,
        &[&stack.gateway],
        &probe,
        "orgs",
        &org,
        &["--monthly", "40"],
    );

    let (admitted, last) = drive_to_exhaustion(&stack.gateway, &key.key);
    assert_quota_exceeded(&last, 40);
    // One Envoy: exactly the quota, plus at most its credit (1 for 40).
    assert!(
        (39..=40).contains(&admitted),
        "{admitted} admitted after 1 served before the quota"
    );
    assert_eq!(
        stack.gateway.get_with_key("/orders", &key.key).status,
        429,
        "still refused"
    );
    // The quota is the organization's: its other keys are refused too.
    let second = stack.create_key(&org, &[]);
    stack
        .gateway
        .wait_for_status("/orders", &second.key, 429, poll::DEADLINE);

    // The flushes told keysync: one alert line at 80%, one at 100%.
    let alerts = poll::within(poll::DEADLINE, poll::INTERVAL, || {
        let log = stack.keysync.process.log();
        let lines: Vec<String> = log
            .lines()
            .filter(|line| line.contains(&format!("quota alert: org {org}")))
            .map(str::to_string)
            .collect();
        if lines.len() >= 2 {
            Ok(lines)
        } else {
            Err(log)
        }
    })
    .unwrap_or_else(|log| panic!("no alerts: {log}"));
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(alerts[0].contains("(80% reached"), "{alerts:?}");
    assert!(
        alerts[1].contains("of its monthly quota of 40 (100% reached"),
        "{alerts:?}"
    );
    assert_eq!(
        stack
            .keysync
            .metric("keysync_quota_alerts_total", &["threshold=\"100\""]),
        1.0
    );

    // keysync restarts: the state is PostgreSQL's, still used up.
    let grpc = stack.keysync.grpc.to_string();
    stack.keysync.process.kill();
    stack.keysync = Keysync::start_on(&stack.database_url, &grpc, &[]);
    let claims = stack.gateway.stat("quota_claims_ok");
    stack
        .gateway
        .wait_for_stat("quota_claims_ok", poll::DEADLINE, |n| n > claims + 1);
    assert_eq!(stack.gateway.get_with_key("/orders", &key.key).status, 429);

    // Raised: admitted again, up to the new quota.
    set_quota(
        &stack,
        &[&stack.gateway],
        &probe,
        "orgs",
        &org,
        &["--monthly", "60"],
    );
    stack
        .gateway
        .wait_for_status("/orders", &key.key, 200, poll::DEADLINE);
    let (more, last) = drive_to_exhaustion(&stack.gateway, &key.key);
    assert_quota_exceeded(&last, 60);
    let served = 1 + admitted + 1 + more;
    assert!((59..=61).contains(&served), "{served} served of 60");

    // The list shows the use, and usage the refusals.
    let orgs = keysync::cli_json(&stack.database_url, &["orgs", "list"]);
    let row = orgs
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["org_id"] == org.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("{org} not listed: {orgs}"));
    assert_eq!(row["quota"]["monthly"], 60, "{row}");

    // Cleared: unlimited again.
    set_quota(
        &stack,
        &[&stack.gateway],
        &probe,
        "orgs",
        &org,
        &["--clear"],
    );
    stack
        .gateway
        .wait_for_status("/orders", &key.key, 200, poll::DEADLINE);
    for _ in 0..20 {
        assert_eq!(stack.gateway.get_with_key("/orders", &key.key).status, 200);
    }
}

#[test]
fn a_key_quota_holds_for_that_key_only() {
    let stack = Stack::start(one_worker);
    let org = stack.create_org("keys");
    let capped = stack.create_key(&org, &[]);
    let free = stack.create_key(&org, &[]);
    stack
        .gateway
        .wait_for_status("/", &free.key, 200, poll::DEADLINE);
    set_quota(
        &stack,
        &[&stack.gateway],
        &free.key,
        "keys",
        &capped.key_id,
        &["--monthly", "5"],
    );
    let (admitted, last) = drive_to_exhaustion(&stack.gateway, &capped.key);
    assert_quota_exceeded(&last, 5);
    assert!((5..=6).contains(&admitted), "{admitted} of 5");
    for _ in 0..10 {
        assert_eq!(stack.gateway.get_with_key("/orders", &free.key).status, 200);
    }
}

#[test]
fn three_envoys_together_stay_within_a_credit_each() {
    let stack = Stack::start(one_worker);
    let others: Vec<Gateway> = (0..2)
        .map(|_| stack.start_another_gateway(one_worker))
        .collect();
    let org = stack.create_org("fleet");
    let key = stack.create_key(&org, &[]);
    let probe = stack.create_key(&stack.create_org("probe"), &[]).key;
    let gateways: Vec<&Gateway> = std::iter::once(&stack.gateway).chain(&others).collect();
    for gateway in &gateways {
        gateway.wait_for_status("/", &probe, 200, poll::DEADLINE);
    }
    const QUOTA: u64 = 600;
    // Every Envoy knows the quota before the load starts.
    set_quota(
        &stack,
        &gateways,
        &probe,
        "orgs",
        &org,
        &["--monthly", &QUOTA.to_string()],
    );
    let admitted: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = gateways
            .iter()
            .map(|gateway| scope.spawn(|| drive_to_exhaustion(gateway, &key.key).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: u64 = admitted.iter().sum();
    // Overshoot: at most one credit (1 for 600) per Envoy. Undershoot: leases left on
    // an Envoy that stopped asking (each drove to its own exhaustion, so little).
    assert!(
        (QUOTA - 30..=QUOTA + 3).contains(&total),
        "{total} admitted of {QUOTA} by {admitted:?}"
    );
}
