//! Global rate limiting: Envoy's own rate-limit filter asks keysync (Envoy's standard
//! rate-limit service protocol) on Redis, so one budget holds across a fleet of Envoys.

use keysync_contract::limit::Limit;
use keysync_contract::subject::Subject;
use keysync_contract::RATE_LIMIT_SUBJECT_HEADER;
use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::http::Response;
use keysync_e2e::poll::{self, eventually, DEADLINE};
use keysync_e2e::rate_window::enough_of_the_window_left;
use keysync_e2e::redis::TestRedis;
use keysync_e2e::replies::{assert_rate_limited, count_status, ratelimit_member};
use keysync_e2e::stack::Stack;

fn global_stack(redis: &TestRedis) -> Stack {
    let url = redis.url();
    Stack::start_with(&[("REDIS_URL", &url)], GatewayOptions::global_rate_limits)
}

/// Polls until `key` is allowed with a `RateLimit` header for a budget of `limit` (the
/// limit reached the filter, and keysync answered). Returns how many allowed requests
/// that took.
fn wait_until_limited(gateway: &Gateway, key: &str, limit: u64) -> usize {
    let mut allowed = 0;
    poll::within(DEADLINE, poll::INTERVAL, || {
        let response = gateway.get_with_key("/", key);
        if response.status == 200 {
            allowed += 1;
            if ratelimit_member(&response, "limit") == Some(limit) {
                return Ok(());
            }
        }
        Err(response)
    })
    .unwrap_or_else(|last| {
        panic!(
            "no RateLimit with limit={limit} from the global limiter: last {} with RateLimit {:?}",
            last.status,
            last.header("ratelimit")
        )
    });
    allowed
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
    stack.set_org_limit(&org, &["--rpm", "10"]);
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
        count_status(&responses, 200),
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
        echoed["headers"][RATE_LIMIT_SUBJECT_HEADER].is_null(),
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
    stack.set_org_limit(&victim_org, &["--rpm", "3"]);
    let victim = stack.create_key(&victim_org, &[]);
    let attacker_org = stack.create_org("attacker");
    let attacker = stack.create_key(&attacker_org, &[]);
    enough_of_the_window_left(20);
    let used = wait_until_limited(&stack.gateway, &victim.key, 3);

    let subject = Subject::Org(victim_org.parse().expect("the CLI prints org ids as UUIDs"));
    let limit = Limit {
        requests_per_minute: 1,
        burst: 0,
    };
    for _ in 0..5 {
        let response = stack
            .gateway
            .get_with_forged_descriptor("/", &attacker.key, subject, limit);
        assert_eq!(response.status, 200, "the attacker has no limit of its own");
    }
    let victim_left: Vec<Response> = (0..5)
        .map(|_| stack.gateway.get_with_key("/", &victim.key))
        .collect();
    assert_eq!(
        count_status(&victim_left, 200),
        3 - used,
        "the victim's budget is intact"
    );
}

#[test]
fn redis_down_fails_open_and_limiting_resumes() {
    let mut redis = TestRedis::start();
    let stack = global_stack(&redis);
    let org = stack.create_org("redis-outage");
    stack.set_org_limit(&org, &["--rpm", "3"]);
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
    eventually(
        "keysync to see Redis again (keysync_ratelimit_redis_up)",
        DEADLINE,
        || stack.keysync.metric("keysync_ratelimit_redis_up", &[]),
        |&up| up == 1.0,
    );
}
