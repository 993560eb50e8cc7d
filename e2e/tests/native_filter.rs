//! What is the native filter's own (`envoy/native.yaml`), beyond the contract it shares with
//! the wasm filter (`contract.rs`, and any suite run with `KEYSYNC_E2E_GATEWAY=native`):
//! Envoy takes no traffic before the first full sync (the sync extension holds Envoy's init),
//! and the sync service's stats and log lines reach Envoy like the wasm filter's. Real Envoy,
//! keysync and PostgreSQL.

use std::time::{Duration, Instant};

use keysync_e2e::gateway::{listener_addr, GatewayOptions};
use keysync_e2e::http;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::process::Signal;
use keysync_e2e::replies::forwarded_header;
use keysync_e2e::stack::Stack;

/// How long the test watches Envoy hold its init while keysync is frozen.
const HELD_FOR: Duration = Duration::from_secs(3);

#[test]
fn envoy_takes_no_traffic_before_the_first_full_sync() {
    // A stack whose keysync is frozen (SIGSTOP) before a second, native Envoy starts: the
    // first gateway (the stack's) is only there to make the stack.
    let stack = Stack::start(GatewayOptions::native);
    let org = stack.create_org("init");
    let key = stack.create_key(&org, &[]);
    stack.keysync.process.signal(Signal::Stop);
    let gateway = stack.start_another_gateway(|options| {
        options.native();
        options.wait_ready = false;
    });

    // Held: Envoy is not ready and its listener, bound, takes no connection.
    let until = Instant::now() + HELD_FOR;
    while Instant::now() < until {
        assert_eq!(
            gateway.ready_status(),
            Some(503),
            "ready before its first sync:\n{}",
            gateway.process.log_tail(20)
        );
        let tried = http::get(gateway.addr, "/orders", &[]);
        assert!(tried.is_err(), "served before its first sync: {tried:?}");
        std::thread::sleep(poll::INTERVAL);
    }
    assert!(listener_addr(gateway.admin, "gateway").is_some());

    // keysync answers again: the first full sync completes, Envoy is released, and the key
    // is served from the store.
    stack.keysync.process.signal(Signal::Cont);
    poll::eventually(
        "Envoy's /ready",
        DEADLINE,
        || gateway.ready_status(),
        |s| *s == Some(200),
    );
    gateway
        .process
        .wait_for_log("Envoy's init released (ready)", DEADLINE);
    let response = gateway.get_with_key("/orders", &key.key);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        forwarded_header(&response, "x-api-key-id"),
        vec![key.key_id]
    );
    // From the store (a full page, or the watch stream when keysync had not loaded the key
    // yet when it froze), not by asking keysync.
    assert_eq!(gateway.stat("refresh_ok"), 1);
    assert_eq!(gateway.stat("miss_lookups"), 0, "served from the store");
}
