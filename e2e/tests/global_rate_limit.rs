//! Global rate limiting: Envoy's own rate-limit filter asks keysync (Envoy's standard
//! rate-limit service protocol) on Redis, so one budget holds across a fleet of Envoys.

use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::http::Response;
use keysync_e2e::keysync::cli;
use keysync_e2e::rate_window::enough_of_the_window_left;
use keysync_e2e::redis::TestRedis;
use keysync_e2e::replies::{assert_rate_limited, ratelimit_member};
use keysync_e2e::stack::Stack;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn global_stack(redis: &TestRedis) -> Stack {
    let url = redis.url();
    Stack::start_with(&[("REDIS_URL", &url)], GatewayOptions::global_rate_limits)
}

fn set_org_limit(stack: &Stack, org: &str, rpm: &str) {
    let output = cli(
        &stack.database_url,
        &["orgs", "set-limit", org, "--rpm", rpm],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn count(responses: &[Response], status: u16) -> usize {
    responses.iter().filter(|r| r.status == status).count()
}

/// Polls until `key` is allowed with a `RateLimit` header for a budget of `limit` (the
/// limit reached the filter, and keysync answered). Returns how many allowed requests
/// that took.
fn wait_until_limited(gateway: &Gateway, key: &str, limit: u64) -> usize {
    let deadline = Instant::now() + DEADLINE;
    let mut allowed = 0;
    loop {
        let response = gateway.get_with_key("/", key);
        if response.status == 200 {
            allowed += 1;
            if ratelimit_member(&response, "limit") == Some(limit) {
                return allowed;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no RateLimit with limit={limit} from the global limiter"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn one_budget_across_three_envoys() {
    let redis = TestRedis::start();
    let stack = global_stack(&redis);
    let others: Vec<Gateway> = (0..2)
        .map(|_| stack.start_another_gateway(GatewayOptions::global_rate_limits))
        .collect();
    let fleet: Vec<&Gateway> = std::iter::once(&stack.gateway).chain(&others).collect();
    let org = stack.create_org("fleet");
    set_org_limit(&stack, &org, "10");
    let key = stack.create_key(&org, &[]);
    enough_of_the_window_left(20);
    let mut used = 0;
    for gateway in &fleet {
        used += wait_until_limited(gateway, &key.key, 10);
    }
    let responses: Vec<Response> = (0..30)
        .map(|i| fleet[i % fleet.len()].get_with_key("/", &key.key))
        .collect();
    assert_eq!(
        count(&responses, 200),
        10 - used,
        "one budget for the fleet"
    );
    let over = responses
        .iter()
        .find(|r| r.status == 429)
        .expect("some requests over the limit");
    assert_rate_limited(over, 10);
    let allowed = responses.iter().find(|r| r.status == 200).expect("allowed");
    let echoed = allowed.json();
    assert!(
        echoed["headers"]["x-keysync-rl-subject"].is_null(),
        "descriptor headers do not reach the backend: {echoed}"
    );
    assert!(
        stack
            .keysync
            .metric("keysync_ratelimit_requests_total", &["over_limit"])
            >= 20.0
    );
}

#[test]
fn a_client_cannot_spend_another_orgs_budget() {
    let redis = TestRedis::start();
    let stack = global_stack(&redis);
    let victim_org = stack.create_org("victim");
    set_org_limit(&stack, &victim_org, "3");
    let victim = stack.create_key(&victim_org, &[]);
    let attacker_org = stack.create_org("attacker");
    let attacker = stack.create_key(&attacker_org, &[]);
    enough_of_the_window_left(20);
    let used = wait_until_limited(&stack.gateway, &victim.key, 3);

    let subject = format!("org:{victim_org}");
    let bearer = format!("Bearer {}", attacker.key);
    for _ in 0..5 {
        let response = stack.gateway.get(
            "/",
            &[
                ("authorization", bearer.as_bytes()),
                ("x-keysync-rl-subject", subject.as_bytes()),
                ("x-keysync-rl-limit", b"1+0"),
            ],
        );
        assert_eq!(response.status, 200, "the attacker has no limit of its own");
    }
    let victim_left: Vec<Response> = (0..5)
        .map(|_| stack.gateway.get_with_key("/", &victim.key))
        .collect();
    assert_eq!(
        count(&victim_left, 200),
        3 - used,
        "the victim's budget is intact"
    );
}

#[test]
fn redis_down_fails_open_and_limiting_resumes() {
    let mut redis = TestRedis::start();
    let stack = global_stack(&redis);
    let org = stack.create_org("redis-outage");
    set_org_limit(&stack, &org, "3");
    let key = stack.create_key(&org, &[]);
    enough_of_the_window_left(30);
    wait_until_limited(&stack.gateway, &key.key, 3);
    stack.gateway.wait_for_status("/", &key.key, 429, DEADLINE);

    redis.stop();
    // Fail-open: with Redis gone, requests flow.
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    for _ in 0..5 {
        assert_eq!(stack.gateway.get_with_key("/", &key.key).status, 200);
    }
    assert!(
        stack
            .keysync
            .metric("keysync_ratelimit_redis_errors_total", &[])
            >= 1.0
    );
    assert_eq!(stack.keysync.metric("keysync_ratelimit_redis_up", &[]), 0.0);

    redis.start_again();
    // A fresh Redis has no counts: limiting resumes from zero.
    stack.gateway.wait_for_status("/", &key.key, 429, DEADLINE);
    let deadline = Instant::now() + DEADLINE;
    while stack.keysync.metric("keysync_ratelimit_redis_up", &[]) != 1.0 {
        assert!(Instant::now() < deadline, "keysync never saw Redis again");
        std::thread::sleep(Duration::from_millis(100));
    }
}
