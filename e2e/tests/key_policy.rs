//! Scopes and IP allowlists through real Envoy in both modes: a route that requires
//! scopes admits only keys that grant them all (403 insufficient_scope otherwise), a key
//! with an allowlist works only from its networks (403 ip_not_allowed), the address is
//! the one Envoy's trusted-hops setting names, and a change reaches the gateway within a
//! second.

use std::time::Duration;

use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::http::Response;
use keysync_e2e::keysync;
use keysync_e2e::poll;
use keysync_e2e::replies::assert_error;
use keysync_e2e::stack::Stack;

/// The wasm filter with the shipped configuration (Envoy hands it a route's scopes in a
/// header), the wasm filter reading the route's metadata itself (any other Envoy
/// configuration), the native filter as shipped (it reads the metadata, no header filter
/// before it), and ext_authz.
const MODES: [(&str, Option<&str>); 4] = [
    ("gateway.yaml", None),
    (
        "gateway.yaml",
        Some(r#"{"role":"auth","route_scopes":"metadata"}"#),
    ),
    ("native.yaml", None),
    ("ext-authz.yaml", None),
];

/// The template and, for the filter, its plugin configuration.
fn configure(options: &mut GatewayOptions, (template, auth_config): (&str, Option<&str>)) {
    options.template = template.into();
    if let Some(auth_config) = auth_config {
        options.auth_config = auth_config.into();
    }
}

/// How soon a change made with the CLI must be in force at the gateway.
const CHANGE_DEADLINE: Duration = Duration::from_secs(1);

/// Two routes to the echo backend: `/open/` requires no scope, `/orders/` requires
/// `orders:read` and `orders:write`.
fn scoped_routes(options: &mut GatewayOptions, mode: (&str, Option<&str>)) {
    configure(options, mode);
    let Some((_, url)) = options.backends.split_once('=') else {
        panic!("BACKEND_URLS is not name=url: {}", options.backends);
    };
    let url = url.to_string();
    options.backends = format!("open={url},orders={url}");
    options.env.push((
        "BACKEND_SCOPES".into(),
        "orders=orders:read orders:write".into(),
    ));
}

/// The headers of `GET` with `bearer` (`Bearer <key>`), and `x-forwarded-for` when given.
fn request_headers<'a>(
    bearer: &'a str,
    forwarded_for: Option<&'a str>,
) -> Vec<(&'a str, &'a [u8])> {
    let mut headers: Vec<(&str, &[u8])> = vec![("authorization", bearer.as_bytes())];
    if let Some(address) = forwarded_for {
        headers.push(("x-forwarded-for", address.as_bytes()));
    }
    headers
}

/// `GET path` with `key`, and `x-forwarded-for` when given.
fn get(gateway: &Gateway, path: &str, key: &str, forwarded_for: Option<&str>) -> Response {
    let bearer = format!("Bearer {key}");
    gateway.get(path, &request_headers(&bearer, forwarded_for))
}

/// Polls until `GET path` answers `status`; panics with the last answer otherwise.
fn wait_for(
    gateway: &Gateway,
    path: &str,
    key: &str,
    forwarded_for: Option<&str>,
    status: u16,
    timeout: Duration,
) -> Response {
    let bearer = format!("Bearer {key}");
    gateway.wait_for_status_with(
        path,
        &request_headers(&bearer, forwarded_for),
        status,
        timeout,
    )
}

fn assert_insufficient_scope(response: &Response, context: &str) {
    assert_eq!(response.status, 403, "{context}: {}", response.text());
    assert_error(response, 403, "insufficient_scope");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\""),
        "{context}"
    );
}

#[test]
fn a_route_that_requires_scopes_admits_only_keys_that_grant_them_in_each_mode() {
    for mode in MODES {
        let template = format!("{mode:?}");
        let stack = Stack::start(|options| scoped_routes(options, mode));
        let org = stack.create_org("scopes");
        let both = stack.create_key(&org, &["--scope", "orders:read", "--scope", "orders:write"]);
        let read_only = stack.create_key(&org, &["--scope", "orders:read"]);
        let none = stack.create_key(&org, &[]);

        let ok = wait_for(
            &stack.gateway,
            "/orders/1",
            &both.key,
            None,
            200,
            poll::DEADLINE,
        );
        let echoed = ok.json();
        assert_eq!(
            echoed["headers"]["x-api-key-id"][0], both.key_id,
            "{template}: the backend got the caller's identity: {echoed}"
        );

        for (key, what) in [(&read_only, "one of two scopes"), (&none, "no scope")] {
            let refused = get(&stack.gateway, "/orders/1", &key.key, None);
            assert_insufficient_scope(&refused, &format!("{template}: a key with {what}"));
            // A client cannot lift the requirement with the header Envoy uses to hand it
            // to the filter.
            let bearer = format!("Bearer {}", key.key);
            let forged = stack.gateway.get(
                "/orders/1",
                &[
                    ("authorization", bearer.as_bytes()),
                    ("x-keysync-route-scopes", b"orders:read"),
                ],
            );
            assert_insufficient_scope(&forged, &format!("{template}: forged requirement"));
            // A route that requires nothing admits the same key.
            let open = get(&stack.gateway, "/open/1", &key.key, None);
            assert_eq!(open.status, 200, "{template}: {}", open.text());
        }

        // Granting the missing scope opens the route within a second; taking the scopes
        // away closes it again.
        keysync::cli_json(
            &stack.database_url,
            &[
                "keys",
                "set-scopes",
                &none.key_id,
                "--scope",
                "orders:write",
                "--scope",
                "orders:read",
            ],
        );
        wait_for(
            &stack.gateway,
            "/orders/2",
            &none.key,
            None,
            200,
            CHANGE_DEADLINE,
        );
        keysync::cli_json(
            &stack.database_url,
            &["keys", "set-scopes", &none.key_id, "--clear"],
        );
        let closed = wait_for(
            &stack.gateway,
            "/orders/3",
            &none.key,
            None,
            403,
            CHANGE_DEADLINE,
        );
        assert_insufficient_scope(&closed, &format!("{template}: scopes cleared"));

        if mode.0 == "gateway.yaml" {
            stack
                .gateway
                .wait_for_stat("insufficient_scope", poll::DEADLINE, |count| count >= 3);
        }
    }
}

#[test]
fn a_key_with_an_allowlist_works_only_from_its_networks_in_each_mode() {
    for mode in MODES {
        let template = format!("{mode:?}");
        // One proxy in front of Envoy is trusted to name the client: the test's requests
        // carry x-forwarded-for as that proxy would.
        let stack = Stack::start(|options| {
            configure(options, mode);
            options
                .env
                .push(("ENVOY_XFF_TRUSTED_HOPS".into(), "1".into()));
        });
        let org = stack.create_org("allowlists");
        let local = stack.create_key(&org, &["--allow-cidr", "127.0.0.0/8"]);
        let office = stack.create_key(
            &org,
            &[
                "--allow-cidr",
                "203.0.113.0/24",
                "--allow-cidr",
                "2001:db8::/32",
            ],
        );
        let anywhere = stack.create_key(&org, &[]);
        wait_for(&stack.gateway, "/", &local.key, None, 200, poll::DEADLINE);
        wait_for(&stack.gateway, "/", &office.key, None, 403, poll::DEADLINE);

        for (key, forwarded_for, status) in [
            (&local, None, 200),
            (&local, Some("203.0.113.9"), 403),
            (&office, None, 403),
            (&office, Some("203.0.113.9"), 200),
            (&office, Some("198.51.100.1"), 403),
            (&office, Some("2001:db8::5"), 200),
            (&office, Some("2001:db9::5"), 403),
            (&anywhere, Some("198.51.100.1"), 200),
            (&anywhere, None, 200),
        ] {
            let response = get(&stack.gateway, "/orders", &key.key, forwarded_for);
            let context = format!("{template}: {} from {forwarded_for:?}", key.key_id);
            assert_eq!(response.status, status, "{context}: {}", response.text());
            if status == 403 {
                assert_error(&response, 403, "ip_not_allowed");
            }
        }

        // Without a trusted proxy, x-forwarded-for is the client's own claim: ignored.
        let edge = stack.start_another_gateway(|options| configure(options, mode));
        wait_for(&edge, "/", &anywhere.key, None, 200, poll::DEADLINE);
        let spoofed = get(&edge, "/orders", &office.key, Some("203.0.113.9"));
        assert_eq!(spoofed.status, 403, "{template}: {}", spoofed.text());
        assert_error(&spoofed, 403, "ip_not_allowed");
        let bearer = format!("Bearer {}", office.key);
        let forged = edge.get(
            "/orders",
            &[
                ("authorization", bearer.as_bytes()),
                ("x-keysync-client-address", b"203.0.113.9"),
            ],
        );
        assert_eq!(forged.status, 403, "{template}: {}", forged.text());
        assert_error(&forged, 403, "ip_not_allowed");

        // Clearing the allowlist lets the key in from anywhere within a second.
        keysync::cli_json(
            &stack.database_url,
            &["keys", "set-allowlist", &office.key_id, "--clear"],
        );
        wait_for(&edge, "/orders", &office.key, None, 200, CHANGE_DEADLINE);

        if mode.0 == "gateway.yaml" {
            stack
                .gateway
                .wait_for_stat("ip_not_allowed", poll::DEADLINE, |count| count >= 4);
        }
    }
}

#[test]
fn bad_scopes_and_networks_get_one_error_line_and_change_nothing() {
    let stack = Stack::start(|_| {});
    let org = stack.create_org("bad policy");
    let key = stack.create_key(&org, &["--scope", "orders:read"]);
    let keys_before = keysync::cli_json(&stack.database_url, &["keys", "list", "--org-id", &org]);

    let too_many: Vec<String> = (0..=keysync_contract::key_policy::MAX_SCOPES)
        .map(|n| format!("s{n}"))
        .collect();
    let mut too_many_args = vec!["keys", "create", "--org-id", org.as_str(), "--name", "x"];
    for scope in &too_many {
        too_many_args.extend(["--scope", scope.as_str()]);
    }
    let create = |extra: &[&str]| {
        let mut args = vec!["keys", "create", "--org-id", org.as_str(), "--name", "x"];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let cases: Vec<Vec<String>> = vec![
        create(&["--scope", "Orders:Read"]),
        create(&["--scope", "orders read"]),
        too_many_args.iter().map(|s| s.to_string()).collect(),
        create(&["--allow-cidr", "203.0.113.0/33"]),
        create(&["--allow-cidr", "not-a-network"]),
        create(&["--allow-cidr", "0.0.0.0/32"]),
        ["keys", "set-scopes", &key.key_id, "--scope", "UPPER"]
            .map(String::from)
            .to_vec(),
        [
            "keys",
            "set-allowlist",
            &key.key_id,
            "--allow-cidr",
            "10.0.0.0/8/8",
        ]
        .map(String::from)
        .to_vec(),
        [
            "keys",
            "set-allowlist",
            &key.key_id,
            "--allow-cidr",
            "::/128",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = keysync::cli(&stack.database_url, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let keys_after = keysync::cli_json(&stack.database_url, &["keys", "list", "--org-id", &org]);
    assert_eq!(keys_before, keys_after, "a refused command changed nothing");
}
