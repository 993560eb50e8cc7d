//! What usage metering costs a request: one Envoy worker, direct responses, keys in
//! turn, metering off against on (flushing every 10 s, as shipped), in alternating
//! rounds (the `rate-limit-cost` method); metering by endpoint, the route's name handed
//! over in a header (as shipped) or read as a property; beside them, the peer: metering
//! off and Envoy's own gRPC access log service streaming every request to a receiver
//! that counts the same way ([`crate::access_log_peer`]); optionally the filter of other
//! builds.
//!
//! Every variant but the endpoint ones runs the configuration as it was before
//! endpoints (no route name, nothing removed from requests): the endpoint variants'
//! figures against metering off are the whole price of metering by endpoint, Envoy's
//! header mutations included.
//!
//! Every round starts its Envoys afresh, and each is warmed up right before its run:
//! two Envoys running the same configuration can differ by about half a microsecond a
//! request for as long as they live (measured: a second metering-off Envoy, kept for a
//! whole run, came out +0.49 us), which is the size of what is measured. A second
//! metering-off Envoy in every round (`off'`) shows what is left of that spread.

use crate::access_log_peer::AccessLogPeer;
use crate::cpu_pin;
use crate::cpu_time;
use crate::median::median;
use crate::wrk;
use keysync_e2e::gateway::{ConfigEdit, Gateway, GatewayOptions};
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::postgres::TestPostgres;
use keysync_e2e::scratch::ScratchDir;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Keys the load cycles through: several counters per flush, like real traffic.
const KEYS: usize = 50;

const SYNC_METERING_OFF: &str =
    r#"{"role":"sync","refresh_interval":"15m","usage_flush_interval":"off"}"#;
/// As shipped: metering on, a flush every 10 s. (An earlier build, which knows no
/// `usage_flush_interval`, runs with this too.)
const SYNC_METERING_ON: &str = r#"{"role":"sync","refresh_interval":"15m"}"#;
/// As shipped: a sample of each key's requests timed (and what an earlier build, which
/// knows no `usage_durations`, accepts).
const AUTH_DEFAULT: &str = r#"{"role":"auth","route_scopes":"header"}"#;
const AUTH_TIME_ALL: &str = r#"{"role":"auth","route_scopes":"header","usage_durations":"all"}"#;
/// As shipped now: endpoints from the header the route sets.
const AUTH_ENDPOINT_HEADER: &str =
    r#"{"role":"auth","route_scopes":"header","usage_endpoints":"header"}"#;
/// Endpoints read as the route's name property instead.
const AUTH_ENDPOINT_PROPERTY: &str =
    r#"{"role":"auth","route_scopes":"header","usage_endpoints":"route_name"}"#;

/// The endpoint variants' route name (the direct route, named as a backend's route is).
const ROUTE_NAME: &str = "orders";

/// The shipped template's removal of a client's endpoint header on every request; the
/// variants without endpoints run without it, as before endpoints.
const ENDPOINT_REMOVAL: &str =
    "              mutations:\n                request_mutations:\n                - remove: x-keysync-endpoint\n";
const NO_MUTATIONS: &str = "              mutations: {}\n";

/// Load before each measured run: a fresh Envoy's wasm is still being compiled and
/// its caches filled.
const WARM_UP: Duration = Duration::from_secs(1);

/// One gateway configuration measured in every round.
struct Variant {
    name: String,
    sync_config: &'static str,
    auth_config: &'static str,
    wasm: Option<PathBuf>,
    access_log: bool,
    /// The route named, its name set in the endpoint header, a client's removed: the
    /// shipped configuration. Otherwise the configuration of before endpoints.
    endpoints: bool,
}

impl Variant {
    fn new(name: &str, sync_config: &'static str) -> Self {
        Variant {
            name: name.to_owned(),
            sync_config,
            auth_config: AUTH_DEFAULT,
            wasm: None,
            access_log: false,
            endpoints: false,
        }
    }

    fn start(&self, keysync: &Keysync, peer: &AccessLogPeer) -> Gateway {
        let mut options = GatewayOptions::new(keysync.grpc, "direct");
        options.concurrency = 1;
        options.sync_config = self.sync_config.into();
        options.auth_config = self.auth_config.into();
        if let Some(wasm) = &self.wasm {
            options
                .env
                .push(("KEYSYNC_FILTER_WASM".into(), wasm.display().to_string()));
        }
        if self.endpoints {
            options
                .env
                .push(("DIRECT_ROUTE_NAME".into(), ROUTE_NAME.into()));
        } else {
            options.config_edits.push(ConfigEdit {
                find: ENDPOINT_REMOVAL.into(),
                replace: NO_MUTATIONS.into(),
            });
        }
        if self.access_log {
            options.config_edits.push(ConfigEdit {
                find: "stat_prefix: gateway\n".into(),
                replace: format!(
                    "stat_prefix: gateway\n          {}",
                    AccessLogPeer::access_log_config()
                ),
            });
            options.config_edits.push(ConfigEdit {
                find: "  clusters:\n".into(),
                replace: format!("  clusters:\n  {}", peer.cluster_config()),
            });
        }
        Gateway::start(options)
    }
}

/// `NAME=PATH` of `--with-wasm`.
pub fn parse_named_wasm(arg: &str) -> Result<(String, PathBuf), String> {
    match arg.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_owned(), PathBuf::from(path)))
        }
        _ => Err(format!("expected NAME=PATH.wasm, got {arg:?}")),
    }
}

fn variants(before_wasm: Option<&Path>, with_wasm: &[(String, PathBuf)]) -> Vec<Variant> {
    let mut variants = Vec::new();
    if let Some(wasm) = before_wasm {
        let mut before = Variant::new("(b) before", SYNC_METERING_ON);
        before.wasm = Some(wasm.to_owned());
        variants.push(before);
    }
    variants.push(Variant::new("(off) metering off", SYNC_METERING_OFF));
    variants.push(Variant::new("(off') metering off again", SYNC_METERING_OFF));
    variants.push(Variant::new("(on) metering on", SYNC_METERING_ON));
    let mut header = Variant::new("(ep) on, by endpoint (header)", SYNC_METERING_ON);
    (header.auth_config, header.endpoints) = (AUTH_ENDPOINT_HEADER, true);
    variants.push(header);
    let mut property = Variant::new(
        "(rn) on, by endpoint (route name property)",
        SYNC_METERING_ON,
    );
    (property.auth_config, property.endpoints) = (AUTH_ENDPOINT_PROPERTY, true);
    variants.push(property);
    let mut all = Variant::new("(all) on, every request timed", SYNC_METERING_ON);
    all.auth_config = AUTH_TIME_ALL;
    variants.push(all);
    let mut access_log = Variant::new("(als) off + gRPC access log", SYNC_METERING_OFF);
    access_log.access_log = true;
    variants.push(access_log);
    for (name, wasm) in with_wasm {
        // A NAME ending in `-off`: metering off (with the shipped `.wasm`, an A/A
        // control).
        let sync = if name.ends_with("-off") {
            SYNC_METERING_OFF
        } else {
            SYNC_METERING_ON
        };
        let mut other = Variant::new(&format!("(w) {name}"), sync);
        other.wasm = Some(wasm.clone());
        variants.push(other);
    }
    variants
}

pub fn run(
    rounds: usize,
    seconds: u64,
    before_wasm: Option<&Path>,
    with_wasm: &[(String, PathBuf)],
) {
    let dir = ScratchDir::new("bench-usage-cost").expect("scratch dir");
    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    ks::migrate(&database_url);
    let org = ks::create_org(&database_url, "bench");
    let keys: Vec<String> = (0..KEYS)
        .map(|n| ks::create_key(&database_url, &org, &format!("bench {n}"), &[]).key)
        .collect();
    let keysync = Keysync::start(&database_url, &[]);
    let peer = AccessLogPeer::start();
    let script = dir.path().join("keys.lua");
    std::fs::write(&script, wrk::rotating_keys_script(&keys)).expect("write wrk script");

    let pinned = cpu_pin::leave_cpu_0_to_envoy("wrk and the access log receiver");

    let variants = variants(before_wasm, with_wasm);
    let index = |prefix: &str| variants.iter().position(|v| v.name.starts_with(prefix));
    let (off_index, on_index) = (index("(off)").expect("off"), index("(on)").expect("on"));
    let access_log_index = index("(als)").expect("als");
    let duration = Duration::from_secs(seconds);
    let me = std::process::id();
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut receiver_cpu = Vec::new();
    let mut sent_to_peer = 0;
    let mut flushed = 0;
    for round in 0..rounds {
        let gateways: Vec<Gateway> = variants.iter().map(|v| v.start(&keysync, &peer)).collect();
        for gateway in &gateways {
            if pinned {
                assert!(
                    cpu_pin::pin(gateway.process.pid(), "0"),
                    "pin Envoy to CPU 0"
                );
            }
            gateway.wait_for_status("/", &keys[0], 200, Duration::from_secs(30));
        }
        let mut line = format!("round {round}:");
        // The order turns by one each round, so that every variant runs in every
        // position equally often: a run's place in its round (first after the starts,
        // last, between which others) measurably moves its figure.
        for position in 0..variants.len() {
            let i = (position + round) % variants.len();
            let (name, gateway) = (&variants[i].name, &gateways[i]);
            let warm_up = wrk::run_with(gateway.addr, 16, WARM_UP, &[], Some(&script));
            if i == access_log_index {
                sent_to_peer += warm_up.requests;
            }
            let pid = gateway.process.pid();
            let before_envoy = cpu_time::process_cpu_ns(pid);
            let before_me = cpu_time::process_cpu_ns(me);
            let report = wrk::run_with(gateway.addr, 16, duration, &[], Some(&script));
            let envoy_us = (cpu_time::process_cpu_ns(pid) - before_envoy) as f64
                / 1_000.0
                / report.requests.max(1) as f64;
            assert_eq!(report.non_2xx, 0, "{name} answered non-2xx");
            cpu[i].push(envoy_us);
            wall[i].push(report.us_per_request());
            let _ = write!(
                line,
                " {name} {:.0} req/s, {envoy_us:.2} us Envoy CPU;",
                report.requests_per_sec
            );
            if i == access_log_index {
                // The receiver is the only thing this process runs during the round.
                let me_us = (cpu_time::process_cpu_ns(me) - before_me) as f64
                    / 1_000.0
                    / report.requests.max(1) as f64;
                receiver_cpu.push(me_us);
                sent_to_peer += report.requests;
                let _ = write!(line, " receiver {me_us:.2} us CPU;");
            }
        }
        println!("{line}");
        // The variants did what they are measured for.
        assert_eq!(gateways[off_index].stat("usage_flushes_ok"), 0);
        flushed += gateways[on_index].stat("usage_flushes_ok");
    }
    // The access log is flushed to the receiver about once a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while peer.requests() < sent_to_peer && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(flushed > 0, "metering on never flushed");
    // The endpoint variants counted their requests under the route's name.
    let by_endpoint = ks::cli_json(
        &database_url,
        &[
            "usage", "--org-id", &org, "--by", "endpoint", "--since", "1d",
        ],
    );
    let rows: Vec<String> = by_endpoint["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| format!("{} {}", row["endpoint"], row["requests"]))
        .collect();
    println!("keysync usage --by endpoint: {}", rows.join(", "));
    assert!(
        rows.iter()
            .any(|row| row.starts_with(&format!("\"{ROUTE_NAME}\""))),
        "nothing counted under the route's name"
    );
    println!(
        "metering on: {flushed} flushes taken; access log receiver: {} of the {sent_to_peer} requests wrk saw answered counted (+ readiness probes), in {} counters",
        peer.requests(),
        peer.counters()
    );

    // Round by round differences.
    let paired = |series: &[Vec<f64>], a: usize, b: usize| -> Vec<f64> {
        series[a]
            .iter()
            .zip(&series[b])
            .map(|(x, y)| x - y)
            .collect()
    };
    for (i, variant) in variants.iter().enumerate().filter(|(i, _)| *i != off_index) {
        let mut cpu_added = paired(&cpu, i, off_index);
        let mut wall_added = paired(&wall, i, off_index);
        // `median` leaves them sorted: the quartiles follow.
        if let (Some(cpu_median), Some(wall_added)) =
            (median(&mut cpu_added), median(&mut wall_added))
        {
            let (low, high) = (
                cpu_added[cpu_added.len() / 4],
                cpu_added[cpu_added.len() * 3 / 4],
            );
            println!(
                "{}: {cpu_median:+.2} us of Envoy CPU a request against metering off (median of {rounds} paired rounds, {seconds}s each; middle half of the rounds {low:+.2} to {high:+.2}); by throughput {wall_added:+.2} us",
                variant.name
            );
        }
    }
    // What endpoints add to metering as it was: each endpoint variant against (on).
    for (i, variant) in variants.iter().enumerate() {
        if !variant.endpoints {
            continue;
        }
        let mut added = paired(&cpu, i, on_index);
        if let Some(cpu_median) = median(&mut added) {
            let (low, high) = (added[added.len() / 4], added[added.len() * 3 / 4]);
            println!(
                "{}: {cpu_median:+.2} us of Envoy CPU a request against metering on without endpoints (middle half {low:+.2} to {high:+.2})",
                variant.name
            );
        }
    }
    if let Some(receiver) = median(&mut receiver_cpu) {
        println!("the access log receiver's own CPU: {receiver:.2} us a request (median)");
    }
}
