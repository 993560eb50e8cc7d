//! Redis stopped and restarted under global rate limiting: three Envoys share one
//! budget through keysync's rate-limit service on one Redis. Redis is stopped in the
//! middle of a window and started again (empty: nothing is saved). It must show the
//! documented behaviour (requests pass uncounted while Redis is down, counted in
//! `keysync_ratelimit_redis_errors_total`, and limiting resumes once it is back, counting
//! from zero) and how far each window overshoots its budget.

use std::time::Instant;

use super::figures::{duration, Figures, Verdict};
use super::Scale;
use crate::gateway::{Gateway, GatewayOptions};
use crate::keysync::CreatedKey;
use crate::poll::{self, DEADLINE};
use crate::rate_window::{enough_of_the_window_left, sleep_into_the_next_window};
use crate::redis::TestRedis;
use crate::replies::ratelimit_member;
use crate::stack::Stack;

/// Sends `count` requests with `key`, round robin over `fleet`; how many were allowed.
fn burst(fleet: &[&Gateway], key: &CreatedKey, count: usize) -> usize {
    (0..count)
        .filter(|n| fleet[n % fleet.len()].get_with_key("/", &key.key).status == 200)
        .count()
}

/// Polls each gateway until keysync's limit reaches it (a `RateLimit` header with
/// `limit`); returns how many requests that allowed.
fn wait_until_limited(fleet: &[&Gateway], key: &CreatedKey, limit: u64) -> usize {
    let mut allowed = 0;
    for gateway in fleet {
        poll::eventually(
            "the global limit to reach every gateway",
            DEADLINE,
            || {
                let response = gateway.get_with_key("/", &key.key);
                allowed += usize::from(response.status == 200);
                ratelimit_member(&response, "limit")
            },
            |&seen| seen == Some(limit),
        );
    }
    allowed
}

/// One window's account.
struct Window {
    name: &'static str,
    allowed: usize,
    sent: usize,
}

pub fn run(scale: Scale) -> Figures {
    let limit: usize = scale.pick(20, 100);
    let mut redis = TestRedis::start();
    let url = redis.url();
    let stack = Stack::start_with(&[("REDIS_URL", &url)], GatewayOptions::global_rate_limits);
    let others: Vec<Gateway> = (0..2)
        .map(|_| stack.start_another_gateway(GatewayOptions::global_rate_limits))
        .collect();
    let fleet: Vec<&Gateway> = std::iter::once(&stack.gateway).chain(&others).collect();
    let org = stack.create_org("redis-outage");
    stack.set_org_limit(&org, &["--rpm", &limit.to_string()]);
    let key = stack.create_key(&org, &[]);

    let mut windows = Vec::new();
    let warm_up;
    if scale == Scale::Full {
        sleep_into_the_next_window();
        warm_up = wait_until_limited(&fleet, &key, limit as u64);
        let allowed = warm_up + burst(&fleet, &key, 2 * limit);
        windows.push(Window {
            name: "Redis up",
            allowed,
            sent: 2 * limit,
        });
        sleep_into_the_next_window();
    } else {
        enough_of_the_window_left(30);
        warm_up = wait_until_limited(&fleet, &key, limit as u64);
    }

    // The outage window: part of the budget used, Redis gone, Redis back (empty).
    let before = burst(&fleet, &key, limit / 2);
    redis.stop();
    let stopped = Instant::now();
    let during = burst(&fleet, &key, limit);
    let errors = stack
        .keysync
        .metric("keysync_ratelimit_redis_errors_total", &[]);
    let up_while_down = stack.keysync.metric("keysync_ratelimit_redis_up", &[]);
    redis.start_again();
    let restarted = Instant::now();
    poll::eventually(
        "keysync to see Redis again (keysync_ratelimit_redis_up)",
        DEADLINE,
        || stack.keysync.metric("keysync_ratelimit_redis_up", &[]),
        |&up| up == 1.0,
    );
    let seen_again = restarted.elapsed();
    let after = burst(&fleet, &key, 2 * limit);
    let outage_window = Window {
        name: "Redis stopped and started in it",
        allowed: if scale == Scale::Full { 0 } else { warm_up } + before + during + after,
        sent: limit / 2 + limit + 2 * limit,
    };
    let outage_total = outage_window.allowed;
    windows.push(outage_window);
    if scale == Scale::Full {
        sleep_into_the_next_window();
        let allowed = burst(&fleet, &key, 2 * limit);
        windows.push(Window {
            name: "Redis up again",
            allowed,
            sent: 2 * limit,
        });
    }

    let mut figures = Figures::new("Redis stopped and restarted (global mode, 3 Envoys)");
    figures.add(
        "limit",
        format!("{limit} a minute for one organization, shared by 3 Envoys"),
    );
    for window in &windows {
        figures.add(
            &format!("window '{}': allowed / sent / overshoot", window.name),
            format!(
                "{} / {} / {}",
                window.allowed,
                window.sent,
                window.allowed.saturating_sub(limit)
            ),
        );
    }
    figures.add(
        "Redis down: allowed of sent (documented: all, failing open)",
        format!("{during} of {limit}"),
    );
    figures.add(
        "Redis back: allowed of sent (documented: the limit, counted from zero)",
        format!("{after} of {}", 2 * limit),
    );
    figures.add("keysync_ratelimit_redis_errors_total while down", errors);
    figures.add("keysync_ratelimit_redis_up while down", up_while_down);
    figures.add("keysync sees Redis again after", duration(seen_again));
    figures.add("outage lasted", duration(restarted - stopped));
    super::operator_figures(&mut figures, &stack.gateway, Some(&stack.keysync));
    figures.print();

    let mut verdict = Verdict::new();
    verdict.check(
        during == limit,
        "requests pass while Redis is down (fail open)",
        || format!("{during} of {limit} allowed"),
    );
    verdict.check(
        after == limit,
        "limiting resumes once Redis is back, from zero",
        || format!("{after} of {} allowed", 2 * limit),
    );
    verdict.check(
        errors >= 1.0 && up_while_down == 0.0,
        "operators see the outage in the metrics",
        || format!("errors {errors}, up {up_while_down}"),
    );
    for window in windows
        .iter()
        .filter(|w| w.name != "Redis stopped and started in it")
    {
        verdict.check(
            window.allowed == limit,
            "a window with Redis up allows exactly its budget",
            || format!("'{}': {} allowed", window.name, window.allowed),
        );
    }
    verdict.check(
        outage_total <= 3 * limit,
        "the outage window overshoots by at most the requests made while Redis was down plus one budget",
        || format!("{outage_total} allowed"),
    );
    verdict.finish("Redis outage");
    figures
}
