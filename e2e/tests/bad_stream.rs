//! Bad input on the watch stream: the filter logs it, resyncs from a full refresh and
//! keeps serving the keys it has. keysync here is a rogue that sends what we script.

use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::poll::{eventually, DEADLINE};
use keysync_e2e::rogue_keysync::{changes, RogueKeysync, Script};
use keysync_e2e::stack::Backend;
use keysync_proto::v1 as proto;
use sha2::{Digest, Sha256};
const KEY: &str = "sk_live_RogueStreamTestKey0000000001";
const OTHER_KEY: &str = "sk_live_RogueStreamTestKey0000000002";

fn record(key: &str, org: u8) -> proto::KeyRecord {
    proto::KeyRecord {
        key_hash: Sha256::digest(key.as_bytes()).to_vec(),
        key_id: vec![0x11; 16],
        org_id: vec![org; 16],
        expires_at: 0,
        rate_limit: None,
        scopes: Vec::new(),
        allowed_networks: Vec::new(),
    }
}

fn gateway_for(rogue: &RogueKeysync, backend: &Backend, refresh_interval: &str) -> Gateway {
    let mut options = GatewayOptions::new(rogue.addr, backend.backend_urls());
    options.sync_config = format!(
        r#"{{"role":"sync","refresh_interval":"{refresh_interval}","max_retry_interval":"1s"}}"#
    );
    Gateway::start(options)
}

/// Runs one script and checks the filter resynced, logging `reason`, and still serves.
fn resyncs_and_keeps_serving(first_watch: Vec<Vec<u8>>, reason: &str) -> Gateway {
    let backend = Backend::start();
    let rogue = RogueKeysync::start(Script {
        keys: vec![record(KEY, 1)],
        revision: 10,
        first_watch,
    });
    let gateway = gateway_for(&rogue, &backend, "15m");
    gateway
        .process
        .wait_for_log("cache refresh complete", DEADLINE);
    assert_eq!(gateway.get_with_key("/", KEY).status, 200);

    gateway.process.wait_for_log(reason, DEADLINE);
    eventually(
        "a resync (a second ListKeys)",
        DEADLINE,
        || rogue.list_calls(),
        |&calls| calls >= 2,
    );
    eventually(
        "the watch to be reopened",
        DEADLINE,
        || rogue.watch_calls(),
        |&calls| calls >= 2,
    );
    gateway.wait_for_stat("resyncs", DEADLINE, |n| n >= 1);
    for _ in 0..10 {
        assert_eq!(
            gateway.get_with_key("/", KEY).status,
            200,
            "the known key keeps working"
        );
    }
    let log = gateway.process.log();
    assert!(!log.contains("panicked"), "{log}");
    gateway
}

#[test]
fn an_undecodable_stream_message_triggers_a_resync() {
    resyncs_and_keeps_serving(
        vec![
            changes(10, Vec::new()),
            b"\xff\xff\xff\xff not protobuf".to_vec(),
        ],
        "watch stream: cannot decode",
    );
}

#[test]
fn a_revision_going_backwards_triggers_a_resync_and_is_not_applied() {
    let gateway = resyncs_and_keeps_serving(
        vec![
            changes(10, Vec::new()),
            changes(5, vec![record(OTHER_KEY, 2)]),
        ],
        "revision went backwards",
    );
    assert_eq!(
        gateway.get_with_key("/", OTHER_KEY).status,
        403,
        "the key from the backwards message was never applied"
    );
}

#[test]
fn a_bad_record_on_the_stream_triggers_a_resync() {
    let mut bad = record(OTHER_KEY, 2);
    bad.org_id = vec![1, 2, 3];
    resyncs_and_keeps_serving(
        vec![changes(10, Vec::new()), changes(11, vec![bad])],
        "bad key record",
    );
}

#[test]
fn the_periodic_refresh_repairs_drift_the_stream_never_delivered() {
    let backend = Backend::start();
    let rogue = RogueKeysync::start(Script {
        keys: vec![record(KEY, 1), record(OTHER_KEY, 2)],
        revision: 10,
        first_watch: vec![changes(10, Vec::new())],
    });
    let gateway = gateway_for(&rogue, &backend, "2s");
    gateway
        .process
        .wait_for_log("watch stream connected", DEADLINE);
    assert_eq!(gateway.get_with_key("/", OTHER_KEY).status, 200);

    // OTHER_KEY disappears from the key set, and the stream never says so.
    rogue.set_keys(vec![record(KEY, 1)]);
    gateway.wait_for_status("/", OTHER_KEY, 403, DEADLINE);
    let line = gateway.process.wait_for_log("repaired drift", DEADLINE);
    assert!(line.contains("removed=1"), "{line}");
    assert_eq!(gateway.get_with_key("/", KEY).status, 200);
}
