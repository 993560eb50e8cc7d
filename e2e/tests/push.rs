//! Changes reach every Envoy in about a second through the watch stream, with the
//! full refresh at 15 minutes so that only the push path can pass these tests.

use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::poll::DEADLINE;
use keysync_e2e::stack::Stack;
use std::time::{Duration, Instant};
/// The issue's bound for a change to reach Envoy through the push path.
const PUSH_DEADLINE: Duration = Duration::from_secs(2);

const SYNC_15M: &str = r#"{"role":"sync","refresh_interval":"15m","max_retry_interval":"1s"}"#;
const AUTH_NO_MISS: &str = r#"{"role":"auth","miss_lookup":{"enabled":false}}"#;

/// A gateway whose only way to learn about changes is the watch stream.
fn push_only(options: &mut GatewayOptions) {
    options.sync_config = SYNC_15M.into();
    options.auth_config = AUTH_NO_MISS.into();
}

/// A stack whose gateway learns about changes through the watch stream alone.
fn push_only_stack() -> Stack {
    let stack = Stack::start(push_only);
    wait_until_watching(&stack.gateway);
    stack
}

fn wait_until_watching(gateway: &Gateway) {
    gateway
        .process
        .wait_for_log("cache refresh complete", DEADLINE);
    gateway
        .process
        .wait_for_log("watch stream connected", DEADLINE);
    gateway.wait_for_stat("stream_connected", DEADLINE, |n| n == 1);
}

#[test]
fn revocation_and_creation_reach_envoy_within_two_seconds_without_a_refresh() {
    let stack = push_only_stack();
    let org = stack.create_org("push");

    let created = stack.create_key(&org, &[]);
    let started = Instant::now();
    stack
        .gateway
        .wait_for_status("/", &created.key, 200, PUSH_DEADLINE);
    eprintln!("created key usable after {:?}", started.elapsed());

    ks::revoke_key(&stack.database_url, &created.key_id);
    let started = Instant::now();
    stack
        .gateway
        .wait_for_status("/", &created.key, 403, PUSH_DEADLINE);
    eprintln!("revoked key refused after {:?}", started.elapsed());

    assert_eq!(
        stack.gateway.stat("refresh_ok"),
        1,
        "only the initial refresh ran: the changes came through the stream"
    );
    assert!(stack.gateway.stat("store_revision") > 0);
    let log = stack.gateway.process.log();
    assert!(log.contains("watch applied revision"), "{log}");
}

#[test]
fn a_restarted_keysync_is_rejoined_and_changes_made_meanwhile_arrive() {
    let mut stack = push_only_stack();
    let org = stack.create_org("restart");
    let old = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &old.key, 200, DEADLINE);

    let grpc = stack.keysync.grpc.to_string();
    stack.keysync.process.kill();
    stack
        .gateway
        .wait_for_stat("stream_connected", DEADLINE, |n| n == 0);
    // Made while keysync is down: only a catch-up after the restart can deliver them.
    ks::revoke_key(&stack.database_url, &old.key_id);
    let new = stack.create_key(&org, &[]);
    assert_eq!(stack.gateway.get_with_key("/", &old.key).status, 200);

    stack.keysync = Keysync::start_on(&stack.database_url, &grpc, &[]);
    stack.gateway.wait_for_status("/", &new.key, 200, DEADLINE);
    stack.gateway.wait_for_status("/", &old.key, 403, DEADLINE);
    stack
        .gateway
        .wait_for_stat("stream_connected", DEADLINE, |n| n == 1);
    assert!(
        stack.keysync.metric("keysync_watch_streams", &[]) >= 1.0,
        "Envoy holds a stream open to the new keysync"
    );
}

#[test]
fn a_restarted_postgresql_is_listened_to_again() {
    let mut stack = push_only_stack();
    let org = stack.create_org("pg-restart");
    stack.postgres.stop();
    stack.postgres.start_again();
    stack
        .keysync
        .process
        .wait_for_log("change listener connected", DEADLINE);
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    ks::revoke_key(&stack.database_url, &key.key_id);
    stack.gateway.wait_for_status("/", &key.key, 403, DEADLINE);
}

#[test]
fn one_keysync_feeds_three_envoys() {
    let stack = push_only_stack();
    let others: Vec<Gateway> = (0..2)
        .map(|_| {
            let gateway = stack.start_another_gateway(push_only);
            wait_until_watching(&gateway);
            gateway
        })
        .collect();
    let org = stack.create_org("fleet");
    let key = stack.create_key(&org, &[]);
    let all: Vec<&Gateway> = std::iter::once(&stack.gateway).chain(&others).collect();
    for gateway in &all {
        gateway.wait_for_status("/", &key.key, 200, PUSH_DEADLINE);
    }
    ks::revoke_key(&stack.database_url, &key.key_id);
    for gateway in &all {
        gateway.wait_for_status("/", &key.key, 403, PUSH_DEADLINE);
    }
    assert!(stack.keysync.metric("keysync_watch_streams", &[]) >= 3.0);
}

#[test]
fn two_keysyncs_on_one_database_converge() {
    let stack = push_only_stack();
    let second = Keysync::start(&stack.database_url, &[("KEYSYNC_POLL_INTERVAL", "1h")]);
    let mut options = GatewayOptions::new(second.grpc, stack.backend.backend_urls());
    push_only(&mut options);
    let other = Gateway::start(options);
    wait_until_watching(&other);

    let org = stack.create_org("two-sidecars");
    let key = stack.create_key(&org, &[]);
    stack
        .gateway
        .wait_for_status("/", &key.key, 200, PUSH_DEADLINE);
    other.wait_for_status("/", &key.key, 200, PUSH_DEADLINE);
    ks::revoke_key(&stack.database_url, &key.key_id);
    stack
        .gateway
        .wait_for_status("/", &key.key, 403, PUSH_DEADLINE);
    other.wait_for_status("/", &key.key, 403, PUSH_DEADLINE);
}

#[test]
fn rotation_keeps_the_old_key_only_for_the_grace_period() {
    let stack = push_only_stack();
    let org = stack.create_org("rotation");
    let old = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &old.key, 200, DEADLINE);

    let rotated = ks::cli_json(
        &stack.database_url,
        &["keys", "rotate", &old.key_id, "--grace", "4s"],
    );
    let new_key = rotated["key"].as_str().expect("new key").to_string();
    assert_eq!(rotated["old_key_id"], old.key_id.as_str());
    assert_eq!(rotated["org_id"], org.as_str());
    assert_ne!(new_key, old.key);

    stack
        .gateway
        .wait_for_status("/", &new_key, 200, PUSH_DEADLINE);
    // Both work during the grace period (unless this machine took 4 s to get here).
    let old_now = stack.gateway.get_with_key("/", &old.key);
    assert!(matches!(old_now.status, 200 | 403));
    // After it, only the new one: the filter checks expiry on every request.
    stack.gateway.wait_for_status("/", &old.key, 403, DEADLINE);
    assert_eq!(stack.gateway.get_with_key("/", &new_key).status, 200);
}

#[test]
fn a_silent_keysync_makes_the_filter_fail_closed_after_max_staleness() {
    let mut stack = Stack::start(|options| {
        options.sync_config = SYNC_15M.into();
        // Above keysync's 5 s heartbeat, so a healthy quiet stream never looks stale.
        options.auth_config = r#"{"role":"auth","max_staleness":"8s"}"#.into();
    });
    wait_until_watching(&stack.gateway);
    let org = stack.create_org("stale");
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);

    let grpc = stack.keysync.grpc.to_string();
    stack.keysync.process.kill();
    let refused = stack.gateway.wait_for_status("/", &key.key, 503, DEADLINE);
    assert_eq!(refused.json()["error"], "auth_unavailable");
    stack.gateway.wait_for_stat("stale", DEADLINE, |n| n >= 1);
    assert!(stack.gateway.stat("seconds_since_sync") >= 8);
    assert_eq!(
        stack.gateway.get("/", &[]).status,
        401,
        "missing keys stay 401"
    );

    stack.keysync = Keysync::start_on(&stack.database_url, &grpc, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
}
