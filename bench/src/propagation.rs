//! How long a created key takes to work, and a revoked key to stop working, at Envoy,
//! with the full refresh at 15 minutes and the miss path off: the watch stream alone.

use crate::gateways::SYNC_EVERY_15M;
use crate::latency::Samples;
use keysync_e2e::keysync;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::stack::Stack;
use std::time::{Duration, Instant};

pub fn run(keys: usize, spacing: Duration) {
    let stack = Stack::start(|options| {
        options.sync_config = SYNC_EVERY_15M.into();
        options.auth_config = r#"{"role":"auth","miss_lookup":{"enabled":false}}"#.into();
    });
    stack
        .gateway
        .process
        .wait_for_log("watch stream connected", DEADLINE);
    let org = stack.create_org("bench");

    let mut created = Vec::with_capacity(keys);
    let mut create_latency = Samples::new();
    for _ in 0..keys {
        std::thread::sleep(spacing);
        let key = stack.create_key(&org, &[]);
        create_latency.push(time_until(&stack, &key.key, 200));
        created.push(key);
    }
    let mut revoke_latency = Samples::new();
    for key in &created {
        std::thread::sleep(spacing);
        keysync::revoke_key(&stack.database_url, &key.key_id);
        revoke_latency.push(time_until(&stack, &key.key, 403));
    }
    println!("{keys} keys, {}ms between changes", spacing.as_millis());
    println!("create -> first 200: {}", create_latency.summary());
    println!("revoke -> first 403: {}", revoke_latency.summary());
    assert_eq!(
        stack.gateway.stat("refresh_ok"),
        1,
        "a refresh ran during the benchmark: the figures would not be the stream's"
    );
}

/// Polls the gateway until `key` gets `status`; returns how long that took. No pause
/// between requests: a pause would add up to its length to every figure.
fn time_until(stack: &Stack, key: &str, status: u16) -> Duration {
    let started = Instant::now();
    poll::within(DEADLINE, Duration::ZERO, || {
        let seen = stack.gateway.get_with_key("/", key).status;
        if seen == status {
            Ok(started.elapsed())
        } else {
            Err(seen)
        }
    })
    .unwrap_or_else(|seen| panic!("key never reached status {status}: still {seen}"))
}
