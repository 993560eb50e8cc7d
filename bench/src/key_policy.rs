//! What scopes and allowlists cost at the gateway: a key on a route that requires
//! scopes, a key with an allowlist, and a key with neither on a route that requires
//! none, through keysync's filter (one Envoy worker each), in alternating rounds, with
//! the shipped configuration (a header-mutation filter's per-route configuration hands
//! the filter a scoped route's scopes in a header) and with the filter reading the
//! route's metadata instead; optionally against the filter of an earlier build (and
//! no header mutation) with the same plain keys, to show what a request needing neither
//! check pays. With `--contract-calls`, also the contract's host calls alone
//! (`bench/contract-calls-filter`), plain and with each way a route could name its
//! scopes: route metadata, its route name looked up in the plugin configuration (what
//! per-route configuration would cost), or a header.

use crate::gateways::SYNC_EVERY_15M;
use crate::median::median;
use crate::wrk::{self, Report};
use keysync_contract::key_policy::ROUTE_SCOPES_HEADER;
use keysync_e2e::gateway::{ConfigEdit, Gateway, GatewayOptions};
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::postgres::TestPostgres;
use keysync_e2e::scratch::ScratchDir;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Keys of each kind the load cycles through.
const KEYS: usize = 50;

/// The route every benchmark gateway answers itself (`BACKEND_URLS=direct`).
const DIRECT_ROUTE: &str = r#"- { match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: "ok" } } }"#;

/// Scopes a scoped key grants: a realistic handful, the required two among them.
const GRANTED: [&str; 6] = [
    "billing:read",
    "customers:read",
    "orders:read",
    "orders:write",
    "refunds:write",
    "reports:read",
];
const REQUIRED: &str = "orders:read orders:write";

/// bench.yaml's one route, which the contract-calls variants name and give metadata.
const BENCH_ROUTE: &str = r#"direct_response: { status: 200, body: { inline_string: "ok" } }"#;

/// An allowlist whose match is the last of three (the benchmark's client is loopback).
const NETWORKS: [&str; 3] = ["10.0.0.0/8", "2001:db8::/32", "127.0.0.0/8"];

/// How a benchmark gateway hands the filter a route's scopes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inputs {
    /// As shipped: the header-mutation filter, `route_scopes: "header"`.
    Headers,
    /// No header mutation; the filter reads the route's metadata.
    Properties,
    /// No header mutation, and a plugin configuration an earlier build accepts.
    Before,
}

/// The header-mutation filter of `envoy/gateway.yaml`, as the rendered configuration
/// holds it (the text from its name to the end of its block, whose marker lines render.py
/// drops).
fn header_mutation_block() -> String {
    let path = keysync_e2e::paths::workspace_root().join("envoy/gateway.yaml");
    let template = std::fs::read_to_string(&path).expect("read envoy/gateway.yaml");
    let start = template
        .find("          - name: envoy.filters.http.header_mutation")
        .expect("gateway.yaml has the header-mutation filter");
    let end = template
        .find("          # <<< wasm-filter: route-headers")
        .expect("gateway.yaml marks the header-mutation filter's block");
    template[start..end].to_string()
}

fn gateway(keysync: &Keysync, wasm: Option<&Path>, scoped_route: bool, inputs: Inputs) -> Gateway {
    let mut options = GatewayOptions::new(keysync.grpc, "direct");
    options.concurrency = 1;
    options.sync_config = SYNC_EVERY_15M.into();
    match inputs {
        Inputs::Headers => {}
        Inputs::Properties => {
            options.auth_config = r#"{"role":"auth","route_scopes":"metadata"}"#.into();
        }
        Inputs::Before => options.auth_config = r#"{"role":"auth"}"#.into(),
    }
    if inputs != Inputs::Headers {
        options.config_edits.push(ConfigEdit {
            find: header_mutation_block(),
            replace: String::new(),
        });
    }
    if let Some(wasm) = wasm {
        options
            .env
            .push(("KEYSYNC_FILTER_WASM".into(), wasm.display().to_string()));
    }
    if scoped_route {
        // The route's closing brace moves after what it gains: its metadata and, where
        // the header-mutation filter runs, that filter's per-route header.
        let mut route = DIRECT_ROUTE[..DIRECT_ROUTE.len() - 2].to_string();
        route += &format!(
            r#", metadata: {{ filter_metadata: {{ keysync: {{ scopes: "{REQUIRED}" }} }} }}"#
        );
        if inputs == Inputs::Headers {
            route += &format!(
                ", typed_per_filter_config: {{ envoy.filters.http.header_mutation: {{ \
                 \"@type\": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute, \
                 mutations: {{ request_mutations: [ {{ append: {{ header: {{ key: {ROUTE_SCOPES_HEADER}, \
                 value: \"{REQUIRED}\" }}, append_action: OVERWRITE_IF_EXISTS_OR_ADD }} }} ] }} }} }}"
            );
        }
        options.config_edits.push(ConfigEdit {
            find: DIRECT_ROUTE.into(),
            replace: route + " }",
        });
    }
    let gateway = Gateway::start(options);
    gateway
        .process
        .wait_for_log("cache refresh complete", Duration::from_secs(60));
    gateway
}

/// `envoy/bench.yaml` with the contract's calls and `modes` (the contract-calls filter's
/// configuration), its route named `bench-route` and requiring [`REQUIRED`].
fn contract_calls(keysync: &Keysync, modes: &str) -> Gateway {
    let mut options = GatewayOptions::new(keysync.grpc, "direct");
    options.template = "bench.yaml".into();
    options.concurrency = 1;
    options
        .env
        .push(("BENCH_AUTH".into(), "contract-calls".into()));
    options
        .env
        .push(("BENCH_CONTRACT_CALLS_CONFIG".into(), modes.into()));
    options.config_edits.push(ConfigEdit {
        find: BENCH_ROUTE.into(),
        replace: format!(
            "{BENCH_ROUTE}\n                name: bench-route\n                \
             metadata: {{ filter_metadata: {{ keysync: {{ scopes: \"{REQUIRED}\" }} }} }}"
        ),
    });
    Gateway::start(options)
}

fn create_keys(database_url: &str, org: &str, extra: &[&str]) -> Vec<String> {
    (0..KEYS)
        .map(|n| ks::create_key(database_url, org, &format!("bench {n}"), extra).key)
        .collect()
}

fn script(dir: &Path, name: &str, keys: &[String]) -> PathBuf {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, wrk::rotating_keys_script(keys)).expect("write wrk script");
    path
}

pub fn run(rounds: usize, seconds: u64, before_wasm: Option<&Path>, with_contract_calls: bool) {
    let dir = ScratchDir::new("bench-key-policy").expect("scratch dir");
    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    ks::migrate(&database_url);
    let org = ks::create_org(&database_url, "bench");
    let plain = create_keys(&database_url, &org, &[]);
    let scope_args: Vec<&str> = GRANTED.iter().flat_map(|s| ["--scope", s]).collect();
    let scoped = create_keys(&database_url, &org, &scope_args);
    let network_args: Vec<&str> = NETWORKS.iter().flat_map(|n| ["--allow-cidr", n]).collect();
    let allowlisted = create_keys(&database_url, &org, &network_args);
    let keysync = Keysync::start(&database_url, &[]);

    let open = gateway(&keysync, None, false, Inputs::Headers);
    let scoped_gateway = gateway(&keysync, None, true, Inputs::Headers);
    let open_properties = gateway(&keysync, None, false, Inputs::Properties);
    let scoped_properties = gateway(&keysync, None, true, Inputs::Properties);
    let before = before_wasm.map(|wasm| gateway(&keysync, Some(wasm), false, Inputs::Before));
    for (gateway, key) in [
        (&open, &plain[0]),
        (&open, &allowlisted[0]),
        (&scoped_gateway, &scoped[0]),
        (&open_properties, &allowlisted[0]),
        (&scoped_properties, &scoped[0]),
    ] {
        gateway.wait_for_status("/", key, 200, Duration::from_secs(30));
    }
    // The checks do refuse: a plain key on the scoped route.
    for gateway in [&scoped_gateway, &scoped_properties] {
        let refused = gateway.get_with_key("/", &plain[0]);
        assert_eq!(refused.status, 403, "{}", refused.text());
    }
    let contract = with_contract_calls.then(|| {
        let gateways = [
            contract_calls(&keysync, ""),
            contract_calls(&keysync, "route-metadata"),
            contract_calls(
                &keysync,
                &format!("route-name\nother-route billing:read\nbench-route {REQUIRED}"),
            ),
            contract_calls(&keysync, "route-header"),
        ];
        for gateway in &gateways {
            gateway.wait_for_status("/", &plain[0], 200, Duration::from_secs(30));
        }
        gateways
    });

    let plain_script = script(dir.path(), "plain", &plain);
    let scoped_script = script(dir.path(), "scoped", &scoped);
    let allowlisted_script = script(dir.path(), "allowlisted", &allowlisted);
    let mut variants: Vec<(&str, &Gateway, &Path)> = Vec::new();
    if let Some(before) = &before {
        variants.push(("(e0) before, plain key", before, &plain_script));
    }
    variants.push(("(e) plain key, open route", &open, &plain_script));
    variants.push((
        "(s) scoped key, scoped route",
        &scoped_gateway,
        &scoped_script,
    ));
    variants.push(("(a) key with allowlist", &open, &allowlisted_script));
    variants.push((
        "(ep) properties: plain key",
        &open_properties,
        &plain_script,
    ));
    variants.push((
        "(sp) properties: scoped key",
        &scoped_properties,
        &scoped_script,
    ));
    variants.push((
        "(ap) properties: allowlist",
        &open_properties,
        &allowlisted_script,
    ));
    if let Some([calls, metadata, name, header]) = &contract {
        variants.push(("(b') contract calls", calls, &plain_script));
        variants.push(("(b'm) + route metadata", metadata, &plain_script));
        variants.push(("(b'n) + route name, table", name, &plain_script));
        variants.push(("(b'h) + absent header", header, &plain_script));
    }

    let duration = Duration::from_secs(seconds);
    let mut us: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        let mut line = format!("round {round}:");
        for (i, (name, gateway, script)) in variants.iter().enumerate() {
            let report: Report = wrk::run_with(gateway.addr, 16, duration, &[], Some(script));
            assert_eq!(report.non_2xx, 0, "{name} answered non-2xx");
            us[i].push(report.us_per_request());
            let _ = write!(
                line,
                " {name} {:.0} req/s {:.2} us;",
                report.requests_per_sec,
                report.us_per_request()
            );
        }
        println!("{line}");
    }
    // Paired differences, round by round: keysync's variants against the plain key on
    // the open route, the contract-calls ones against the contract's calls alone.
    let index = |prefix: &str| {
        variants
            .iter()
            .position(|(name, _, _)| name.starts_with(prefix))
    };
    println!("{rounds} rounds of {seconds} s: median us a request added, a - b [min, max]");
    for (a, b) in [
        ("(e)", "(e0)"),
        ("(ep)", "(e0)"),
        ("(s)", "(e)"),
        ("(a)", "(e)"),
        ("(sp)", "(ep)"),
        ("(ap)", "(ep)"),
        ("(b'm)", "(b')"),
        ("(b'n)", "(b')"),
        ("(b'h)", "(b')"),
    ] {
        let (Some(i), Some(j)) = (index(a), index(b)) else {
            continue;
        };
        let mut diffs: Vec<f64> = us[i].iter().zip(&us[j]).map(|(x, y)| x - y).collect();
        let low = diffs.iter().copied().fold(f64::INFINITY, f64::min);
        let high = diffs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if let Some(mid) = median(&mut diffs) {
            println!("{a} - {b}: {mid:+.2} us [{low:+.2}, {high:+.2}]");
        }
    }
}
