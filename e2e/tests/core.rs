//! The core contract, end to end: real Envoy with the built filter, real keysync, real
//! PostgreSQL, an echo backend that shows what the gateway forwarded.

use keysync_e2e::gateway::{self, Gateway, GatewayOptions};
use keysync_e2e::keysync::Keysync;
use keysync_e2e::poll::DEADLINE;
use keysync_e2e::replies::{assert_error, forwarded_header};
use keysync_e2e::stack::{Backend, Stack};

#[test]
fn valid_missing_unknown_and_spoofed_requests() {
    let stack = Stack::start(|_| {});
    let org = stack.create_org("acme");
    let key = stack.create_key(&org, &["--env", "test"]);
    assert!(key.key.starts_with("sk_test_"));
    stack.wait_for_next_refresh();

    // Valid key: forwarded with the gateway's identity headers and without the key.
    let ok = stack.gateway.get_with_key("/orders?page=2", &key.key);
    assert_eq!(ok.status, 200, "body: {}", ok.text());
    assert_eq!(ok.json()["path"], "/orders?page=2");
    assert_eq!(forwarded_header(&ok, "x-org-id"), vec![org.clone()]);
    assert_eq!(
        forwarded_header(&ok, "x-api-key-id"),
        vec![key.key_id.clone()]
    );
    assert!(forwarded_header(&ok, "authorization").is_empty());

    // x-api-key works too, and is not forwarded either.
    let via_header = stack
        .gateway
        .get("/orders", &[("x-api-key", key.key.as_bytes())]);
    assert_eq!(via_header.status, 200);
    assert!(forwarded_header(&via_header, "x-api-key").is_empty());
    assert_eq!(forwarded_header(&via_header, "x-org-id"), vec![org.clone()]);

    // Client-sent identity headers are replaced, never passed along.
    let bearer = format!("Bearer {}", key.key);
    let spoofed = stack.gateway.get(
        "/orders",
        &[
            ("authorization", bearer.as_bytes()),
            ("x-org-id", b"someone-else"),
            ("x-api-key-id", b"not-my-key"),
        ],
    );
    assert_eq!(spoofed.status, 200);
    assert_eq!(forwarded_header(&spoofed, "x-org-id"), vec![org.clone()]);
    assert_eq!(
        forwarded_header(&spoofed, "x-api-key-id"),
        vec![key.key_id.clone()]
    );
    assert_eq!(
        stack
            .keysync
            .metric("keysync_lookups_total", &["result=\"found\""]),
        0.0,
        "keys of the last refresh are served from the store, not looked up"
    );

    // No key: 401 with a challenge.
    let missing = stack.gateway.get("/orders", &[]);
    assert_error(&missing, 401, "missing_api_key");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));

    // A well-formed key nobody issued: 403.
    let unknown = stack
        .gateway
        .get_with_key("/orders", "sk_live_ThisKeyWasNeverIssuedToAnyone01");
    assert_error(&unknown, 403, "invalid_api_key");

    // The health check needs no key (503 only until the first sync completes).
    let health = stack
        .gateway
        .wait_for_status_with("/health", &[], 200, DEADLINE);
    assert_eq!(health.text(), "ok\n");

    stack.gateway.wait_for_stat("allowed", DEADLINE, |n| n >= 3);
    stack.gateway.wait_for_stat("missing", DEADLINE, |n| n >= 1);
    stack.gateway.wait_for_stat("invalid", DEADLINE, |n| n >= 1);
    stack
        .gateway
        .wait_for_stat("refresh_ok", DEADLINE, |n| n >= 1);
    assert_eq!(stack.gateway.stat("keys_loaded"), 1);
}

#[test]
fn a_key_created_after_the_last_refresh_works_on_first_use() {
    // A 15-minute refresh and no watch stream: only the miss path can find the new key.
    let stack = Stack::start(|options| {
        options.sync_config = r#"{"role":"sync","refresh_interval":"15m","watch":false}"#.into();
        options.concurrency = 1;
    });
    stack
        .gateway
        .process
        .wait_for_log("cache refresh complete", DEADLINE);
    let org = stack.create_org("late");
    let key = stack.create_key(&org, &[]);

    let first = stack.gateway.get_with_key("/", &key.key);
    assert_eq!(first.status, 200, "body: {}", first.text());
    assert_eq!(forwarded_header(&first, "x-org-id"), vec![org]);
    stack
        .gateway
        .process
        .wait_for_log("found by keysync (cached)", DEADLINE);
    let lookups = stack
        .gateway
        .wait_for_stat("miss_lookups", DEADLINE, |n| n == 1);

    // Cached in shared data now: the next request does not reach keysync.
    let found = |k: &Keysync| k.metric("keysync_lookups_total", &["result=\"found\""]);
    let found_before = found(&stack.keysync);
    assert_eq!(found_before, 1.0);
    assert_eq!(stack.gateway.get_with_key("/", &key.key).status, 200);
    assert_eq!(found(&stack.keysync), found_before);

    // An unknown key is looked up once, then refused from the negative cache.
    let unknown = "sk_live_NobodyHasThisKeyNobodyHasThisKey";
    assert_eq!(stack.gateway.get_with_key("/", unknown).status, 403);
    assert_eq!(stack.gateway.get_with_key("/", unknown).status, 403);
    stack
        .gateway
        .wait_for_stat("negative_cache_hits", DEADLINE, |n| n == 1);
    stack
        .gateway
        .wait_for_stat("miss_lookups", DEADLINE, |n| n == lookups + 1);
}

#[test]
fn a_revoked_key_is_refused_after_the_next_refresh() {
    // Refreshes only (no watch stream), so the refresh is what removes the key.
    let stack = Stack::start(|options| {
        options.sync_config =
            r#"{"role":"sync","refresh_interval":"2s","max_retry_interval":"1s","watch":false}"#
                .into();
    });
    let org = stack.create_org("revokers");
    let key = stack.create_key(&org, &[]);
    let keep = stack.create_key(&org, &[]);
    stack.wait_for_next_refresh();
    assert_eq!(stack.gateway.get_with_key("/", &key.key).status, 200);

    keysync_e2e::keysync::revoke_key(&stack.database_url, &key.key_id);
    let offset = stack.gateway.process.log_len();
    let response = stack.gateway.wait_for_status("/", &key.key, 403, DEADLINE);
    assert_error(&response, 403, "invalid_api_key");
    let line = stack
        .gateway
        .process
        .wait_for_log_after(offset, "removed=1", DEADLINE);
    assert!(line.contains("cache refresh complete"), "{line}");
    assert_eq!(stack.gateway.get_with_key("/", &keep.key).status, 200);
}

#[test]
fn an_expired_key_is_refused() {
    let stack = Stack::start(|_| {});
    let org = stack.create_org("expiring");
    let key = stack.create_key(&org, &["--expires-in", "4s"]);
    stack.wait_for_next_refresh();
    // Still valid for a few seconds (unless the machine was very slow to get here).
    let first = stack.gateway.get_with_key("/", &key.key);
    assert!(matches!(first.status, 200 | 403), "{}", first.status);
    let expired = stack.gateway.wait_for_status("/", &key.key, 403, DEADLINE);
    assert_error(&expired, 403, "invalid_api_key");
}

#[test]
fn known_keys_keep_working_while_keysync_is_down() {
    let mut stack = Stack::start(|_| {});
    let org = stack.create_org("resilient");
    let key = stack.create_key(&org, &[]);
    stack.wait_for_next_refresh();

    stack.keysync.process.kill();
    let offset = stack.gateway.process.log_len();
    stack
        .gateway
        .process
        .wait_for_log_after(offset, "cache refresh failed", DEADLINE);
    for _ in 0..20 {
        let response = stack.gateway.get_with_key("/", &key.key);
        assert_eq!(response.status, 200, "body: {}", response.text());
    }
    // A synced store is still the best knowledge: an unknown key is refused, not 503.
    let unknown = stack
        .gateway
        .get_with_key("/", "sk_live_UnknownWhileKeysyncIsDown000");
    assert_error(&unknown, 403, "invalid_api_key");
    stack
        .gateway
        .wait_for_stat("refresh_failed", DEADLINE, |n| n >= 1);
    stack
        .gateway
        .wait_for_stat("miss_lookup_errors", DEADLINE, |n| n >= 1);

    // keysync back on the same port: refreshes succeed again.
    stack.keysync = Keysync::start_on(&stack.database_url, &stack.keysync.grpc.to_string(), &[]);
    let offset = stack.gateway.process.log_len();
    stack.gateway.wait_for_refresh_after(offset, DEADLINE);
}

#[test]
fn never_synced_fails_closed_by_default_and_open_when_configured() {
    // keysync is not running at this address: the store never syncs.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let backend = Backend::start();
    let backends = backend.backend_urls();
    let key = "sk_live_KeyThatCannotBeCheckedRightNow";

    // The wasm filter's: the native one takes no traffic at all before its first full sync
    // (e2e/tests/native_filter.rs).
    let wasm = |options: GatewayOptions| GatewayOptions {
        template: "gateway.yaml".into(),
        ..options
    };
    let closed = Gateway::start(wasm(GatewayOptions::new(nowhere, backends.clone())));
    let refused = closed.get_with_key("/", key);
    assert_error(&refused, 503, "auth_unavailable");
    // Not ready: the store never held a complete sync.
    assert_error(&closed.get("/health", &[]), 503, "auth_unavailable");
    assert_eq!(
        closed.get("/", &[]).status,
        401,
        "a missing key is still 401"
    );
    closed.wait_for_stat("unavailable", DEADLINE, |n| n >= 1);

    let mut options = wasm(GatewayOptions::new(nowhere, backends));
    options.auth_config = r#"{"role":"auth","failure_mode":"open"}"#.into();
    let open = Gateway::start(options);
    let passed = open.get(
        "/",
        &[
            ("authorization", format!("Bearer {key}").as_bytes()),
            ("x-org-id", b"spoofed"),
        ],
    );
    assert_eq!(passed.status, 200, "body: {}", passed.text());
    assert!(
        forwarded_header(&passed, "x-org-id").is_empty(),
        "no identity when failing open"
    );
    assert_eq!(
        open.get("/", &[]).status,
        401,
        "fail-open never skips a missing key"
    );
    open.wait_for_stat("failed_open", DEADLINE, |n| n >= 1);
}

#[test]
fn one_refresh_per_envoy_process_whatever_the_worker_count() {
    let stack = Stack::start(|options| options.concurrency = 4);
    let org = stack.create_org("workers");
    let key = stack.create_key(&org, &[]);
    for _ in 0..4 {
        stack
            .gateway
            .wait_for_refresh_after(stack.gateway.process.log_len(), DEADLINE);
    }
    assert_eq!(stack.gateway.get_with_key("/", &key.key).status, 200);

    // With a 2 s interval, one service refreshes about every 2 s. A copy per worker
    // would log its refreshes in bursts, milliseconds apart, and page keysync 4 times
    // as often.
    let log = stack.gateway.process.log();
    let times: Vec<f64> = log
        .lines()
        .filter(|line| line.contains("cache refresh complete"))
        .map(envoy_log_seconds)
        .collect();
    assert!(times.len() >= 4, "{} refreshes logged", times.len());
    for pair in times.windows(2) {
        let gap = (pair[1] - pair[0]).rem_euclid(86_400.0); // across midnight too
        assert!(
            gap > 1.0,
            "two refreshes {gap:.3}s apart: refreshing is not once per process"
        );
    }
    let list_calls = stack
        .keysync
        .metric("keysync_grpc_requests_total", &["ListKeys"]) as usize;
    assert!(
        list_calls <= times.len() + 1,
        "{list_calls} ListKeys calls for {} refreshes",
        times.len()
    );
}

/// Seconds within the day of an Envoy log line (`[2026-11-24 03:14:08.266][...`).
fn envoy_log_seconds(line: &str) -> f64 {
    let time = line
        .get(12..24)
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
    let mut parts = time.split(':');
    let mut next = || -> f64 {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad timestamp in {line:?}"))
    };
    next() * 3600.0 + next() * 60.0 + next()
}

#[test]
fn a_bad_plugin_configuration_is_refused_with_a_clear_message() {
    // One parser, the core's, for the wasm filter and the native one.
    for template in ["gateway.yaml", "native.yaml"] {
        let output = gateway::validate(
            template,
            &[(
                "KEYSYNC_AUTH_CONFIG".into(),
                r#"{"role":"auth","failure_mode":"sometimes"}"#.into(),
            )],
        );
        let log = String::from_utf8_lossy(&output.stderr).to_string()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(
            !output.status.success(),
            "{template}: envoy accepted a bad configuration"
        );
        assert!(
            log.contains("invalid keysync plugin configuration") && log.contains("sometimes"),
            "{template}: no clear message:\n{log}"
        );
    }
}

#[test]
fn every_shipped_envoy_configuration_validates() {
    let dir = keysync_e2e::paths::workspace_root().join("envoy");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("read envoy/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let name = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .to_string();
        for mode in ["local", "global", "off"] {
            let output = gateway::validate(&name, &[("RATE_LIMIT_MODE".into(), mode.into())]);
            assert!(
                output.status.success(),
                "envoy/{name} (RATE_LIMIT_MODE={mode}) does not validate:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "no configuration found under envoy/");
}
