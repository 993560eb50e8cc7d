//! What reaches the backend besides the gateway's identity: never a client's header
//! that a backend would read as the identity (`x_org_id`, which CGI and WSGI servers see
//! as `HTTP_X_ORG_ID` beside `x-org-id`), and never a credential on a request the
//! gateway forwards without an accepted key (a public path, `failure_mode: "open"`); and
//! no path a backend resolves outside a public prefix forwarded as public.

use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::poll::DEADLINE;
use keysync_e2e::replies::{assert_error, forwarded_header};
use keysync_e2e::stack::{Backend, Stack};
use std::net::SocketAddr;

fn assert_no_underscore_identity(gateway: &Gateway, key: &str) {
    let bearer = format!("Bearer {key}");
    let response = gateway.get(
        "/orders",
        &[
            ("authorization", bearer.as_bytes()),
            ("x_org_id", b"forged-org"),
            ("x_api_key_id", b"forged-key"),
            ("X_Org_Id", b"forged-too"),
        ],
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    assert!(
        !text.contains("forged"),
        "a forged identity reached the backend: {text}"
    );
    assert_eq!(forwarded_header(&response, "x-org-id").len(), 1);
}

#[test]
fn headers_with_underscores_never_reach_the_backend_in_either_mode() {
    for template in ["gateway.yaml", "ext-authz.yaml"] {
        let stack = Stack::start(|options| options.template = template.into());
        let org = stack.create_org("underscores");
        let key = stack.create_key(&org, &[]);
        stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
        assert_no_underscore_identity(&stack.gateway, &key.key);
    }
}

#[test]
fn a_public_path_does_not_carry_a_credential_to_the_backend() {
    let stack = Stack::start(|options| {
        options.auth_config = r#"{"role":"auth","public_paths":["/health","/docs/*"]}"#.into();
    });
    let org = stack.create_org("public");
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    for headers in [
        vec![("authorization", b"Bearer sk_live_not a key".as_slice())],
        vec![("x-api-key", b"sk_live_SomeoneElsesKey0000000001".as_slice())],
    ] {
        let response = stack.gateway.get("/docs/intro", &headers);
        assert_eq!(response.status, 200, "{}", response.text());
        for credential in ["authorization", "x-api-key"] {
            assert!(
                forwarded_header(&response, credential).is_empty(),
                "{credential} reached the backend: {}",
                response.text()
            );
        }
    }
    // Another scheme is the backend's own business.
    let basic = stack.gateway.get(
        "/docs/intro",
        &[("authorization", b"Basic dXNlcjpw".as_slice())],
    );
    assert_eq!(
        forwarded_header(&basic, "authorization"),
        vec!["Basic dXNlcjpw"]
    );
}

/// Paths under a public prefix as Envoy passes them that a backend reads as a path
/// outside it: a servlet container (Tomcat, Spring) drops `;` parameters and then
/// resolves `..`, so `/docs/..;/api/test` is `/api/test` to it, and Envoy decodes
/// `%2e%2e;` into `..;` after matching nothing itself.
const ESCAPING_PATHS: [&str; 5] = [
    "/docs/%2e%2e;/api/test",
    "/docs/..;/api/test",
    "/docs/%2E%2E;jsessionid=1/api/test",
    "/docs/.%2e;/api/test",
    "/docs/x/..;/..;/api/test",
];

#[test]
fn a_public_prefix_never_covers_a_path_a_backend_resolves_outside_it() {
    let stack = Stack::start(|options| {
        options.auth_config = r#"{"role":"auth","public_paths":["/health","/docs/*"]}"#.into();
    });
    let org = stack.create_org("public");
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    assert_eq!(stack.gateway.get("/docs/intro", &[]).status, 200);
    for path in ESCAPING_PATHS {
        // Judged as any other path: a key is needed.
        let response = stack.gateway.get(path, &[]);
        assert_error(&response, 401, "missing_api_key");
    }
}

#[test]
fn failing_open_forwards_without_the_credential() {
    let backend = Backend::start();
    // Nothing listens here: the gateway can never sync and fails open. The wasm filter's
    // case: the native one takes no traffic before its first full sync.
    let nobody: SocketAddr = "127.0.0.1:1".parse().expect("an address");
    let mut options = GatewayOptions::new(nobody, backend.backend_urls());
    options.template = "gateway.yaml".into();
    options.auth_config =
        r#"{"role":"auth","failure_mode":"open","miss_lookup":{"enabled":false}}"#.into();
    let gateway = Gateway::start(options);
    let response = gateway.get_with_key("/orders", "sk_live_AnyKeyAtAll000000000001");
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(forwarded_header(&response, "x-org-id").is_empty());
    assert!(
        forwarded_header(&response, "authorization").is_empty(),
        "{}",
        response.text()
    );
}
