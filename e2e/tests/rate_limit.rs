//! Local rate limiting: per-org limits (and per-key overrides) from the database,
//! enforced exactly by the filter across Envoy's workers, with the documented headers.

use keysync_e2e::http::Response;
use keysync_e2e::keysync::{cli, CreatedKey};
use keysync_e2e::rate_window::{enough_of_the_window_left, unix_secs};
use keysync_e2e::stack::Stack;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn set_org_limit(stack: &Stack, org: &str, args: &[&str]) {
    let mut all = vec!["orgs", "set-limit", org];
    all.extend_from_slice(args);
    let output = cli(&stack.database_url, &all);
    assert!(
        output.status.success(),
        "orgs set-limit failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn set_key_limit(stack: &Stack, key_id: &str, args: &[&str]) {
    let mut all = vec!["keys", "set-limit", key_id];
    all.extend_from_slice(args);
    let output = cli(&stack.database_url, &all);
    assert!(
        output.status.success(),
        "keys set-limit failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits until the gateway reports `policy` for `key` (the limit reached the filter).
/// The probe request counts against the budget; callers account for it.
fn wait_for_policy(stack: &Stack, key: &CreatedKey, policy: &str) -> Response {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let response = stack.gateway.get_with_key("/", &key.key);
        if response.header("ratelimit-policy") == Some(policy) {
            return response;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ratelimit-policy never became {policy}: last {:?} ({})",
            response.header("ratelimit-policy"),
            response.status
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(responses: &[Response], status: u16) -> usize {
    responses.iter().filter(|r| r.status == status).count()
}

#[test]
fn the_old_check_150_requests_at_100_per_minute_gives_exactly_100() {
    let stack = Stack::start(|_| {});
    let org = stack.create_org("limited");
    set_org_limit(&stack, &org, &["--rpm", "100"]);
    let key = stack.create_key(&org, &[]);
    // Near the end of a window, so the test can also see the next window open.
    while !(45..=50).contains(&(unix_secs() % 60)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let probe = wait_for_policy(&stack, &key, "\"org\";q=100;w=60");
    assert_eq!(probe.status, 200);
    let mut responses = vec![probe];
    for _ in 1..150 {
        responses.push(stack.gateway.get_with_key("/", &key.key));
    }
    assert_eq!(count(&responses, 200), 100, "exactly the budget succeeds");
    assert_eq!(count(&responses, 429), 50);

    for (i, ok) in responses.iter().filter(|r| r.status == 200).enumerate() {
        let expected = format!("\"org\";r={};t=", 99 - i);
        let header = ok.header("ratelimit").unwrap_or_default();
        assert!(
            header.starts_with(&expected),
            "{header} should start {expected}"
        );
    }
    for over in responses.iter().filter(|r| r.status == 429) {
        assert_eq!(over.json()["error"], "rate_limited");
        assert_eq!(over.header("content-type"), Some("application/json"));
        let retry: u64 = over
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        assert_eq!(over.header("ratelimit-policy"), Some("\"org\";q=100;w=60"));
        assert_eq!(
            over.header("ratelimit"),
            Some(format!("\"org\";r=0;t={retry}").as_str())
        );
    }
    // The next window opens within Retry-After seconds.
    let after = stack
        .gateway
        .wait_for_status("/", &key.key, 200, Duration::from_secs(75));
    assert!(after.header("ratelimit").is_some());
    stack
        .gateway
        .wait_for_stat("rate_limited", DEADLINE, |n| n >= 50);
}

/// The `r=` (remaining) of a response's `RateLimit` header.
fn remaining(response: &Response) -> usize {
    response
        .header("ratelimit")
        .and_then(|h| h.split(";r=").nth(1))
        .and_then(|rest| rest.split(';').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no remaining in {:?}", response.header("ratelimit")))
}

/// Sends `n` requests with `key`; returns the responses.
fn burst(stack: &Stack, key: &CreatedKey, n: usize) -> Vec<Response> {
    (0..n)
        .map(|_| stack.gateway.get_with_key("/", &key.key))
        .collect()
}

#[test]
fn orgs_do_not_share_a_budget_and_a_key_override_wins() {
    let stack = Stack::start(|_| {});
    let (a, b) = (stack.create_org("a"), stack.create_org("b"));
    set_org_limit(&stack, &a, &["--rpm", "5"]);
    set_org_limit(&stack, &b, &["--rpm", "3", "--burst", "2"]);
    let key_a = stack.create_key(&a, &[]);
    let key_b = stack.create_key(&b, &[]);
    let special = stack.create_key(&a, &[]);
    set_key_limit(&stack, &special.key_id, &["--rpm", "2"]);
    enough_of_the_window_left(20);

    let special_left = remaining(&wait_for_policy(&stack, &special, "\"key\";q=2;w=60"));
    let a_left = remaining(&wait_for_policy(&stack, &key_a, "\"org\";q=5;w=60"));
    let b_left = remaining(&wait_for_policy(&stack, &key_b, "\"org\";q=5;w=60"));
    assert!(a_left < 5 && b_left == 4, "a={a_left} b={b_left}");

    // The override is its own budget: using it up leaves org a's untouched.
    assert_eq!(count(&burst(&stack, &special, 5), 200), special_left);
    let a_now = burst(&stack, &key_a, 1);
    assert_eq!(
        remaining(&a_now[0]) + 1,
        a_left,
        "org a only lost this one request"
    );
    assert_eq!(count(&burst(&stack, &key_a, 10), 200), a_left - 1);
    // Org b (3 per minute + burst 2) is untouched by org a.
    assert_eq!(count(&burst(&stack, &key_b, 10), 200), b_left);
}

#[test]
fn a_limit_change_takes_effect_without_restarting_anything() {
    let stack = Stack::start(|_| {});
    let org = stack.create_org("changing");
    set_org_limit(&stack, &org, &["--rpm", "3"]);
    let key = stack.create_key(&org, &[]);
    enough_of_the_window_left(20);
    let left = remaining(&wait_for_policy(&stack, &key, "\"org\";q=3;w=60"));
    assert_eq!(count(&burst(&stack, &key, 5), 200), left);

    set_org_limit(&stack, &org, &["--rpm", "8"]);
    // Same window, bigger budget: the 3 requests counted so far stand.
    let probe = wait_for_policy(&stack, &key, "\"org\";q=8;w=60");
    assert_eq!(probe.status, 200);
    assert_eq!(remaining(&probe), 8 - 3 - 1);
    assert_eq!(count(&burst(&stack, &key, 10), 200), 4);

    set_org_limit(&stack, &org, &["--clear"]);
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let response = stack.gateway.get_with_key("/", &key.key);
        if response.status == 200 && response.header("ratelimit-policy").is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the limit was never lifted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
