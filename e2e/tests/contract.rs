//! The gateway contract (the README's "What the gateway answers"), checked the same way
//! against the three ways of enforcing it: the wasm filter inside Envoy
//! (`envoy/gateway.yaml`), the native filter, an Envoy dynamic module on the same core
//! (`envoy/native.yaml`), and Envoy's ext_authz filter asking keysync
//! (`envoy/ext-authz.yaml`). Real Envoy, keysync and PostgreSQL; the echo backend shows
//! what the gateway forwarded.

use keysync_contract::limit::Limit;
use keysync_contract::subject::Subject;
use keysync_contract::{RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_SUBJECT_HEADER};
use keysync_e2e::gateway::{FilterKind, GatewayOptions};
use keysync_e2e::http::{self, Response};
use keysync_e2e::keysync::revoke_key;
use keysync_e2e::poll::DEADLINE;
use keysync_e2e::rate_window::enough_of_the_window_left;
use keysync_e2e::redis::TestRedis;
use keysync_e2e::replies::{assert_error, assert_rate_limited, forwarded_header, ratelimit_member};
use keysync_e2e::stack::Stack;

/// Request headers with raw byte values.
type Headers = Vec<(&'static str, Vec<u8>)>;

fn ext_authz(options: &mut GatewayOptions) {
    options.template = "ext-authz.yaml".into();
}

fn wasm(options: &mut GatewayOptions) {
    options.template = "gateway.yaml".into();
}

/// A response the backend answered, for `key`'s organization and key, with no
/// credential forwarded.
fn assert_forwarded_as(response: &Response, org_id: &str, key_id: &str) {
    assert_eq!(response.status, 200, "body: {}", response.text());
    assert_eq!(forwarded_header(response, "x-org-id"), vec![org_id]);
    assert_eq!(forwarded_header(response, "x-api-key-id"), vec![key_id]);
    for credential in ["authorization", "x-api-key"] {
        assert!(
            forwarded_header(response, credential).is_empty(),
            "{credential} was forwarded: {}",
            response.text()
        );
    }
}

/// The core contract, through whatever enforces it in `stack`'s gateway. Keys are
/// created through the CLI while everything runs; nothing here waits for a refresh.
fn check_contract(stack: &Stack) {
    let gateway = &stack.gateway;
    let org = stack.create_org("contract");
    let key = stack.create_key(&org, &[]);

    // Valid key: forwarded with the gateway's identity headers and without the key.
    let ok = gateway.get_with_key("/orders?page=2", &key.key);
    assert_forwarded_as(&ok, &org, &key.key_id);
    assert_eq!(ok.json()["path"], "/orders?page=2");

    // x-api-key works too, and is not forwarded either.
    let via_header = gateway.get("/orders", &[("x-api-key", key.key.as_bytes())]);
    assert_forwarded_as(&via_header, &org, &key.key_id);

    // Client-sent identity headers are replaced, never passed along.
    let bearer = format!("Bearer {}", key.key);
    let spoofed = gateway.get(
        "/orders",
        &[
            ("x-org-id", b"someone-else"),
            ("authorization", bearer.as_bytes()),
            ("x-api-key-id", b"not-my-key"),
            ("x-org-id", b"yet-another-org"),
        ],
    );
    assert_forwarded_as(&spoofed, &org, &key.key_id);

    // No key: 401 with a challenge.
    let missing = gateway.get("/orders", &[]);
    assert_error(&missing, 401, "missing_api_key");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));

    // A well-formed key nobody issued: 403.
    let unknown = gateway.get_with_key("/orders", "sk_live_ThisKeyWasNeverIssuedToAnyone01");
    assert_error(&unknown, 403, "invalid_api_key");

    // The health check needs no key (it is 503 only until the gateway can decide keys,
    // which this test does not wait for).
    let health = gateway.wait_for_status_with("/health", &[], 200, DEADLINE);
    assert_eq!(health.text(), "ok\n");

    // A key created now works on its first request.
    let late = stack.create_key(&org, &["--env", "test"]);
    let first = gateway.get_with_key("/", &late.key);
    assert_forwarded_as(&first, &org, &late.key_id);

    // Revoked: refused within the deadline; other keys keep working.
    revoke_key(&stack.database_url, &late.key_id);
    let revoked = gateway.wait_for_status("/", &late.key, 403, DEADLINE);
    assert_error(&revoked, 403, "invalid_api_key");
    assert_forwarded_as(&gateway.get_with_key("/", &key.key), &org, &key.key_id);

    // Expired: refused from its expiry on, with no change in the database.
    let expiring = stack.create_key(&org, &["--expires-in", "3s"]);
    let before = gateway.get_with_key("/", &expiring.key);
    // Valid for 3 s, unless the machine was very slow to get here.
    assert!(matches!(before.status, 200 | 403), "{}", before.text());
    let expired = gateway.wait_for_status("/", &expiring.key, 403, DEADLINE);
    assert_error(&expired, 403, "invalid_api_key");

    check_requests_with_a_body(stack, &org, &key.key_id, &key.key);
    check_bad_authorization_values(stack, &key.key);
}

/// A request with a body is decided before any of it goes upstream, also when its key has
/// to be looked up: a key the gateway does not hold makes the filter ask keysync while the
/// body is already there (sent with the headers, in one write), and the body must not carry
/// the request past the pending decision.
fn check_requests_with_a_body(stack: &Stack, org: &str, key_id: &str, key: &str) {
    let post = |key: &str| {
        let body = r#"{"order":42}"#;
        let raw = format!(
            "POST /orders HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        http::send_raw(stack.gateway.addr, raw.as_bytes())
            .unwrap_or_else(|e| panic!("POST through the gateway: {e}"))
    };
    // Each a key nobody issued and the gateway has not heard of: each one is looked up.
    for n in 0..3 {
        let unknown = format!("sk_live_PostedWithABodyNeverIssued{n:02}");
        let refused = post(&unknown);
        assert_error(&refused, 403, "invalid_api_key");
    }
    let allowed = post(key);
    assert_forwarded_as(&allowed, org, key_id);
    assert_eq!(allowed.json()["method"], "POST");
}

/// Junk where a key should be is refused (401 or 403), and never breaks the gateway:
/// a valid request right after each one still passes.
fn check_bad_authorization_values(stack: &Stack, key: &str) {
    let valid = format!("Bearer {key}");
    let mut huge = b"Bearer sk_live_".to_vec();
    huge.resize(9 * 1024, b'A');
    let mut non_utf8 = b"Bearer sk_live_".to_vec();
    non_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    non_utf8.extend_from_slice(b"abcdefghijkl");
    let cases: Vec<(&str, Headers)> = vec![
        ("empty", vec![("authorization", b"".to_vec())]),
        ("scheme only", vec![("authorization", b"Bearer".to_vec())]),
        (
            "another scheme",
            vec![("authorization", b"Basic dXNlcjpwYXNz".to_vec())],
        ),
        ("non-UTF-8", vec![("authorization", non_utf8)]),
        ("9 KB token", vec![("authorization", huge)]),
        (
            "two Authorization headers",
            vec![
                ("authorization", valid.clone().into_bytes()),
                ("authorization", valid.clone().into_bytes()),
            ],
        ),
        (
            "two spaces",
            vec![("authorization", format!("Bearer  {key}").into_bytes())],
        ),
        (
            "tab",
            vec![("authorization", format!("Bearer\t{key}").into_bytes())],
        ),
        ("empty x-api-key", vec![("x-api-key", b"".to_vec())]),
        (
            "junk x-api-key",
            vec![("x-api-key", b"sk_live_<script>".to_vec())],
        ),
    ];
    for (name, headers) in &cases {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let response = stack.gateway.get("/", &headers);
        assert!(
            matches!(response.status, 401 | 403),
            "{name}: got {} {}",
            response.status,
            response.text()
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{name}"
        );
        let after = stack.gateway.get_with_key("/", key);
        assert_eq!(after.status, 200, "after {name}: {}", after.text());
    }
}

#[test]
fn contract_holds_with_the_wasm_filter() {
    let stack = Stack::start(wasm);
    assert_eq!(stack.gateway.filter, FilterKind::Wasm);
    check_contract(&stack);
    let log = stack.gateway.process.log();
    assert!(!log.contains("panicked"), "the filter panicked:\n{log}");
    assert!(
        !log.contains("[critical][wasm]"),
        "critical wasm log:\n{log}"
    );
}

#[test]
fn contract_holds_with_the_native_filter() {
    let stack = Stack::start(GatewayOptions::native);
    assert_eq!(stack.gateway.filter, FilterKind::Native);
    check_contract(&stack);
    let log = stack.gateway.process.log();
    assert!(!log.contains("a panic in"), "the module panicked:\n{log}");
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched."),
        "{log}"
    );
    // The core decided, on the workers (their stats reach Envoy within a sync tick) and in
    // the sync service.
    for (stat, at_least) in [
        ("allowed", 5),
        ("missing", 1),
        ("invalid", 3),
        ("refresh_ok", 1),
    ] {
        stack
            .gateway
            .wait_for_stat(stat, DEADLINE, |value| value >= at_least);
    }
    let config = std::fs::read_to_string(&stack.gateway.config_path).expect("read config");
    for wasm in ["envoy.filters.http.wasm", "envoy.bootstrap.wasm"] {
        assert!(!config.contains(wasm), "native mode loads no wasm: {wasm}");
    }
}

#[test]
fn contract_holds_with_ext_authz() {
    let stack = Stack::start(ext_authz);
    check_contract(&stack);
    // keysync decided: every outcome went through its Check.
    for result in ["allowed", "missing", "invalid"] {
        let checks = stack.keysync.metric(
            "keysync_ext_authz_checks_total",
            &[&format!("result=\"{result}\"")],
        );
        assert!(checks >= 1.0, "no {result} checks counted");
    }
    assert_eq!(
        stack.keysync.metric(
            "keysync_ext_authz_checks_total",
            &["result=\"unavailable\""]
        ),
        0.0
    );
    let config = std::fs::read_to_string(&stack.gateway.config_path).expect("read config");
    for wasm in ["envoy.filters.http.wasm", "envoy.bootstrap.wasm"] {
        assert!(
            !config.contains(wasm),
            "ext_authz mode loads no wasm: {wasm}"
        );
    }
}

#[test]
fn ext_authz_fails_closed_with_503_json_when_keysync_is_down() {
    let mut stack = Stack::start(ext_authz);
    let org = stack.create_org("outage");
    let key = stack.create_key(&org, &[]);
    assert_forwarded_as(
        &stack.gateway.get_with_key("/", &key.key),
        &org,
        &key.key_id,
    );

    stack.keysync.process.kill();
    let refused = stack.gateway.wait_for_status("/", &key.key, 503, DEADLINE);
    assert_error(&refused, 503, "auth_unavailable");
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(
        refused.json()["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        refused.text()
    );
    // Nobody can check anything: without keysync, a request without a key cannot be
    // told apart from one with a key either (the wasm filter would say 401 here).
    assert_error(&stack.gateway.get("/", &[]), 503, "auth_unavailable");
    // The health check is a readiness check, and without keysync this gateway can
    // decide nothing: 503, so that a load balancer sends clients elsewhere.
    assert_eq!(stack.gateway.get("/health", &[]).status, 503);
}

#[test]
fn ext_authz_combines_with_global_rate_limiting() {
    let redis = TestRedis::start();
    let stack = Stack::start_with(&[("REDIS_URL", &redis.url())], |options| {
        ext_authz(options);
        options
            .env
            .push(("RATE_LIMIT_MODE".into(), "global".into()));
    });
    let org = stack.create_org("limited");
    stack.set_org_limit(&org, &["--rpm", "3"]);
    // Created after the limit: every request with it is counted.
    let key = stack.create_key(&org, &[]);
    let unlimited_org = stack.create_org("unlimited");
    let unlimited = stack.create_key(&unlimited_org, &[]);
    enough_of_the_window_left(20);

    let first = stack.gateway.get_with_key("/", &key.key);
    assert_forwarded_as(&first, &org, &key.key_id);
    assert_eq!(ratelimit_member(&first, "limit"), Some(3));
    assert_eq!(ratelimit_member(&first, "remaining"), Some(2));
    assert!(
        forwarded_header(&first, RATE_LIMIT_SUBJECT_HEADER).is_empty(),
        "descriptor headers do not reach the backend: {}",
        first.text()
    );

    // A client cannot spend another organization's budget: keysync removes the
    // descriptor headers it sent.
    let subject = Subject::Org(org.parse().expect("the CLI prints org ids as UUIDs"));
    let limit = Limit {
        requests_per_minute: 1,
        burst: 0,
    };
    for _ in 0..3 {
        let response =
            stack
                .gateway
                .get_with_forged_descriptor("/", &unlimited.key, subject, limit);
        assert_forwarded_as(&response, &unlimited_org, &unlimited.key_id);
        assert_eq!(response.header("ratelimit"), None);
        assert!(forwarded_header(&response, RATE_LIMIT_LIMIT_HEADER).is_empty());
    }

    let statuses: Vec<u16> = (0..4)
        .map(|_| stack.gateway.get_with_key("/", &key.key).status)
        .collect();
    assert_eq!(statuses, [200, 200, 429, 429], "3 a minute, one used above");
    let over = stack.gateway.get_with_key("/", &key.key);
    assert_rate_limited(&over, 3);
    // Counted before keysync answers.
    assert!(
        stack
            .keysync
            .metric("keysync_ratelimit_requests_total", &["over_limit"])
            >= 3.0
    );
}
