//! Credentials in a query parameter or a cookie (`credentials`; `CREDENTIALS` for
//! `envoy/render.py`, `KEYSYNC_CREDENTIALS` for keysync's ext_authz mode), through a real
//! Envoy with each enforcer: the wasm filter, the native filter and ext_authz. The echo
//! backend shows exactly what was forwarded: the path with the credential parameter
//! taken out and the rest of the query byte for byte, the cookies without the credential.

use keysync_e2e::gateway::{self, GatewayOptions};
use keysync_e2e::http::Response;
use keysync_e2e::replies::{assert_error, forwarded_header};
use keysync_e2e::stack::Stack;

/// Bearer first (a key in it reads nothing else), then the query, the cookie, x-api-key.
const CREDENTIALS: &str = r#"[{"header":"authorization","scheme":"Bearer"},
    {"query":"api_key"},{"cookie":"session"},{"header":"x-api-key"}]"#;

fn start(template: &str) -> Stack {
    Stack::start_with(
        &[("KEYSYNC_CREDENTIALS", CREDENTIALS)],
        |options: &mut GatewayOptions| {
            options.template = template.into();
            options.env.push(("CREDENTIALS".into(), CREDENTIALS.into()));
        },
    )
}

/// Forwarded as `key_id`'s, with the path `path`, and no credential anywhere.
fn assert_forwarded(response: &Response, key_id: &str, path: &str) {
    assert_eq!(response.status, 200, "body: {}", response.text());
    assert_eq!(forwarded_header(response, "x-api-key-id"), vec![key_id]);
    assert_eq!(response.json()["path"], path, "{}", response.text());
    for credential in ["authorization", "x-api-key"] {
        assert!(
            forwarded_header(response, credential).is_empty(),
            "{}",
            response.text()
        );
    }
}

fn check_credentials(stack: &Stack) {
    let gateway = &stack.gateway;
    let org = stack.create_org("credentials");
    let key = stack.create_key(&org, &[]);
    let other = stack.create_key(&org, &[]);

    // A query key: accepted, and the path forwarded without it, everything else kept
    // byte for byte (order, encoding, repeated names, empty parameters).
    let path = format!("/orders?b=2&api_key={}&&a=%2F+x&b=1&", key.key);
    assert_forwarded(
        &gateway.get(&path, &[]),
        &key.key_id,
        "/orders?b=2&&a=%2F+x&b=1&",
    );
    // The only parameter: no query left.
    let alone = format!("/orders?api_key={}", key.key);
    assert_forwarded(&gateway.get(&alone, &[]), &key.key_id, "/orders");

    // A percent-encoded key is decoded once; twice encoded is not a key.
    let encoded = format!("/orders?api_key={}&x=1", key.key.replace('_', "%5F"));
    assert_forwarded(&gateway.get(&encoded, &[]), &key.key_id, "/orders?x=1");
    let twice = format!("/orders?api_key={}", key.key.replace('_', "%255F"));
    assert_error(&gateway.get(&twice, &[]), 403, "invalid_api_key");

    // A cookie key: accepted, the other cookies forwarded in their order.
    let cookie = format!("theme=dark; session={}; lang=en", key.key);
    let response = gateway.get("/orders?page=1", &[("cookie", cookie.as_bytes())]);
    assert_forwarded(&response, &key.key_id, "/orders?page=1");
    assert_eq!(
        forwarded_header(&response, "cookie"),
        ["theme=dark; lang=en"]
    );
    // The only cookie: no Cookie header left.
    let only = format!("session={}", key.key);
    let response = gateway.get("/orders", &[("cookie", only.as_bytes())]);
    assert_forwarded(&response, &key.key_id, "/orders");
    assert!(
        forwarded_header(&response, "cookie").is_empty(),
        "{}",
        response.text()
    );

    // Two Cookie header lines (HTTP/1.1 clients may send them): Envoy joins them with
    // `; `, and the credential in the second is found and taken out like any other.
    let second = format!("session={}", key.key);
    let response = gateway.get(
        "/orders",
        &[
            ("cookie", b"theme=dark"),
            ("cookie", second.as_bytes()),
            ("cookie", b"lang=en"),
        ],
    );
    assert_forwarded(&response, &key.key_id, "/orders");
    assert_eq!(
        forwarded_header(&response, "cookie"),
        ["theme=dark; lang=en"]
    );
    // The same key in two places: accepted, taken out of both.
    let both = format!("/orders?api_key={}&z=9", key.key);
    let response = gateway.get(
        &both,
        &[
            ("cookie", only.as_bytes()),
            ("x-api-key", key.key.as_bytes()),
        ],
    );
    assert_forwarded(&response, &key.key_id, "/orders?z=9");
    assert!(forwarded_header(&response, "cookie").is_empty());

    // Two places that disagree, even with two valid keys: 403 invalid_api_key.
    let theirs = format!("session={}", other.key);
    for headers in [
        vec![("cookie", theirs.as_bytes())],
        vec![("x-api-key", other.key.as_bytes())],
    ] {
        let refused = gateway.get(&alone, &headers);
        assert_error(&refused, 403, "invalid_api_key");
    }
    let repeated = format!("/orders?api_key={}&api_key={}", key.key, other.key);
    assert_error(&gateway.get(&repeated, &[]), 403, "invalid_api_key");

    // A key in the Bearer header decides alone (nothing else is read) and keeps working.
    let bearer = format!("Bearer {}", key.key);
    let response = gateway.get("/orders?page=3", &[("authorization", bearer.as_bytes())]);
    assert_forwarded(&response, &key.key_id, "/orders?page=3");

    // No key anywhere: the contract's 401; an empty parameter is not a key.
    let missing = gateway.get("/orders?api_key=&x=1", &[("cookie", b"session=")]);
    assert_error(&missing, 401, "missing_api_key");

    // Over-long carriers are refused, never trouble (Envoy's own limits answer first
    // past 60 KB of headers).
    let long_query = format!("/orders?{}api_key={}", "q=1&".repeat(2_000), key.key);
    let response = gateway.get(&long_query, &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    let long_cookie = format!("{}session={}x", "c=1; ".repeat(2_000), key.key);
    let refused = gateway.get("/orders", &[("cookie", long_cookie.as_bytes())]);
    assert!(matches!(refused.status, 403 | 431), "{}", refused.status);
    assert_eq!(gateway.get_with_key("/orders", &key.key).status, 200);
}

#[test]
fn query_and_cookie_credentials_with_the_wasm_filter() {
    let stack = start("gateway.yaml");
    check_credentials(&stack);
    let log = stack.gateway.process.log();
    assert!(!log.contains("panicked"), "the filter panicked:\n{log}");
}

#[test]
fn query_and_cookie_credentials_with_the_native_filter() {
    let stack = start("native.yaml");
    check_credentials(&stack);
    let log = stack.gateway.process.log();
    assert!(!log.contains("a panic in"), "the module panicked:\n{log}");
}

#[test]
fn query_and_cookie_credentials_with_ext_authz() {
    let stack = start("ext-authz.yaml");
    check_credentials(&stack);
}

/// A bad `credentials` is refused when Envoy loads the plugin, with the reason, by the
/// wasm filter and the native one (one parser, the core's); a bad `CREDENTIALS` by
/// keysync at start.
#[test]
fn a_bad_credentials_setting_is_refused_with_its_reason() {
    for template in ["gateway.yaml", "native.yaml"] {
        let output = gateway::validate(
            template,
            &[("CREDENTIALS".into(), r#"[{"query":"a b"}]"#.into())],
        );
        let log = String::from_utf8_lossy(&output.stderr).to_string()
            + &String::from_utf8_lossy(&output.stdout);
        assert!(!output.status.success(), "{template}: envoy accepted it");
        assert!(
            log.contains("invalid keysync plugin configuration: credentials[0]: query name"),
            "{template}: no clear message:\n{log}"
        );
    }
}
