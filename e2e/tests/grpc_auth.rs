//! The gRPC port between Envoy and keysync authenticates its callers: with
//! `KEYSYNC_GRPC_TOKEN` set, the filter's calls (refresh, watch, lookups) and Envoy's
//! ext_authz calls carry the token and work; a gateway without it syncs nothing and
//! answers 503, and keysync says why.

use keysync_e2e::gateway::{FilterKind, Gateway, GatewayOptions};
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::stack::Stack;

const TOKEN: &str = "e2e-token-0123456789abcdef";

fn with_token(options: &mut GatewayOptions) {
    // The wasm VMs read it from Envoy's environment; Envoy's own gRPC clients from the
    // rendered configuration.
    options
        .process_env
        .push(("KEYSYNC_GRPC_TOKEN".into(), TOKEN.into()));
    options
        .env
        .push(("KEYSYNC_GRPC_TOKEN".into(), TOKEN.into()));
}

#[test]
fn a_gateway_with_the_token_works_and_one_without_it_gets_nothing() {
    let stack = Stack::start_with(&[("KEYSYNC_GRPC_TOKEN", TOKEN)], with_token);
    let org = stack.create_org("authenticated");
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    stack
        .gateway
        .process
        .wait_for_log("watch stream connected", DEADLINE);

    // The same Envoy configuration without the token: keysync refuses every call.
    let mut options = GatewayOptions::new(stack.keysync.grpc, stack.backend.backend_urls());
    options.concurrency = 1;
    options.wait_ready = false;
    let outsider = Gateway::start(options);
    outsider
        .process
        .wait_for_log("cache refresh failed: gRPC status 16", DEADLINE);
    if outsider.filter == FilterKind::Native {
        // Never synced: the native filter keeps Envoy from taking traffic at all.
        assert_eq!(outsider.ready_status(), Some(503));
    } else {
        poll::eventually(
            "Envoy's /ready",
            DEADLINE,
            || outsider.ready_status(),
            |s| *s == Some(200),
        );
        assert_eq!(outsider.get_with_key("/", &key.key).status, 503);
    }
    stack
        .keysync
        .process
        .wait_for_log("grpc call refused: no bearer token", DEADLINE);
    let log = stack.keysync.process.log();
    assert!(!log.contains(TOKEN), "the token never reaches a log line");
}

#[test]
fn ext_authz_mode_sends_the_token_too() {
    let stack = Stack::start_with(&[("KEYSYNC_GRPC_TOKEN", TOKEN)], |options| {
        with_token(options);
        options.template = "ext-authz.yaml".into();
    });
    let org = stack.create_org("ext-authz");
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    assert_eq!(
        stack
            .gateway
            .get_with_key("/", "sk_live_unknownkey000000000")
            .status,
        403
    );
}
