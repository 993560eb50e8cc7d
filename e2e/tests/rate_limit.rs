//! Local rate limiting: per-org limits (and per-key overrides) from the database,
//! enforced exactly by the filter across Envoy's workers, with the documented headers.

use keysync_e2e::echo::RESPONSE_HEADER_REQUEST;
use keysync_e2e::http::Response;
use keysync_e2e::keysync::CreatedKey;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::rate_window::{enough_of_the_window_left, wait_until_seconds_left};
use keysync_e2e::replies::{assert_rate_limited, count_status, ratelimit_member};
use keysync_e2e::stack::Stack;
use std::time::Duration;

/// Waits until the gateway reports a budget of `limit` for `key` (the limit reached the
/// filter). The probe request counts against the budget; callers account for it.
fn wait_for_limit(stack: &Stack, key: &CreatedKey, limit: u64) -> Response {
    poll::within(DEADLINE, poll::INTERVAL, || {
        let response = stack.gateway.get_with_key("/", &key.key);
        if ratelimit_member(&response, "limit") == Some(limit) {
            Ok(response)
        } else {
            Err(response)
        }
    })
    .unwrap_or_else(|last| {
        panic!(
            "the limit never became {limit}: last RateLimit {:?} ({})",
            last.header("ratelimit"),
            last.status
        )
    })
}

#[test]
fn the_old_check_150_requests_at_100_per_minute_gives_exactly_100() {
    let stack = Stack::start(|_| {});
    let org = stack.create_org("limited");
    stack.set_org_limit(&org, &["--rpm", "100"]);
    let key = stack.create_key(&org, &[]);
    // Near the end of a window, so the test can also see the next window open.
    wait_until_seconds_left(10..=15);
    let probe = wait_for_limit(&stack, &key, 100);
    assert_eq!(probe.status, 200);
    let mut responses = vec![probe];
    for _ in 1..150 {
        responses.push(stack.gateway.get_with_key("/", &key.key));
    }
    assert_eq!(
        count_status(&responses, 200),
        100,
        "exactly the budget succeeds"
    );
    assert_eq!(count_status(&responses, 429), 50);

    for (i, ok) in responses.iter().filter(|r| r.status == 200).enumerate() {
        let expected = format!("limit=100, remaining={}, reset=", 99 - i);
        let header = ok.header("ratelimit").unwrap_or_default();
        assert!(
            header.starts_with(&expected),
            "{header} should start {expected}"
        );
        // One header on allowed responses; the policy comes with the 429.
        assert_eq!(ok.header("ratelimit-policy"), None);
    }
    for over in responses.iter().filter(|r| r.status == 429) {
        assert_rate_limited(over, 100);
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

/// The `remaining` of a response's `RateLimit` header.
fn remaining(response: &Response) -> usize {
    ratelimit_member(response, "remaining")
        .and_then(|n| usize::try_from(n).ok())
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
    stack.set_org_limit(&a, &["--rpm", "5"]);
    stack.set_org_limit(&b, &["--rpm", "3", "--burst", "2"]);
    let key_a = stack.create_key(&a, &[]);
    let key_b = stack.create_key(&b, &[]);
    let special = stack.create_key(&a, &[]);
    stack.set_key_limit(&special.key_id, &["--rpm", "2"]);
    enough_of_the_window_left(20);

    // The override's budget (2) shows it is the key's own, not org a's (5).
    let special_left = remaining(&wait_for_limit(&stack, &special, 2));
    let a_left = remaining(&wait_for_limit(&stack, &key_a, 5));
    let b_left = remaining(&wait_for_limit(&stack, &key_b, 5));
    assert!(a_left < 5 && b_left == 4, "a={a_left} b={b_left}");

    // The override is its own budget: using it up leaves org a's untouched.
    assert_eq!(count_status(&burst(&stack, &special, 5), 200), special_left);
    let a_now = burst(&stack, &key_a, 1);
    assert_eq!(
        remaining(&a_now[0]) + 1,
        a_left,
        "org a only lost this one request"
    );
    assert_eq!(count_status(&burst(&stack, &key_a, 10), 200), a_left - 1);
    // Org b (3 per minute + burst 2) is untouched by org a.
    assert_eq!(count_status(&burst(&stack, &key_b, 10), 200), b_left);
}

#[test]
fn a_limit_change_takes_effect_without_restarting_anything() {
    let stack = Stack::start(|_| {});
    let org = stack.create_org("changing");
    stack.set_org_limit(&org, &["--rpm", "3"]);
    let key = stack.create_key(&org, &[]);
    enough_of_the_window_left(20);
    let left = remaining(&wait_for_limit(&stack, &key, 3));
    // An upstream's own RateLimit is replaced, not repeated: the field must appear once.
    let bearer = format!("Bearer {}", key.key);
    let upstream_too = stack.gateway.get(
        "/",
        &[
            ("authorization", bearer.as_bytes()),
            (
                RESPONSE_HEADER_REQUEST,
                b"ratelimit: limit=999, remaining=999, reset=1",
            ),
        ],
    );
    assert_eq!(upstream_too.status, 200);
    let fields = upstream_too
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("ratelimit"))
        .count();
    assert_eq!(fields, 1, "{:?}", upstream_too.headers);
    assert_eq!(ratelimit_member(&upstream_too, "limit"), Some(3));
    assert_eq!(count_status(&burst(&stack, &key, 5), 200), left - 1);

    stack.set_org_limit(&org, &["--rpm", "8"]);
    // Same window, bigger budget: the 3 requests counted so far stand.
    let probe = wait_for_limit(&stack, &key, 8);
    assert_eq!(probe.status, 200);
    assert_eq!(remaining(&probe), 8 - 3 - 1);
    assert_eq!(count_status(&burst(&stack, &key, 10), 200), 4);

    stack.set_org_limit(&org, &["--clear"]);
    poll::within(DEADLINE, poll::INTERVAL, || {
        let response = stack.gateway.get_with_key("/", &key.key);
        if response.status == 200 && response.header("ratelimit").is_none() {
            Ok(())
        } else {
            Err(response)
        }
    })
    .unwrap_or_else(|last| {
        panic!(
            "the limit was never lifted: last {} with RateLimit {:?}",
            last.status,
            last.header("ratelimit")
        )
    });
}
