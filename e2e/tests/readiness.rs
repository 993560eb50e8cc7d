//! Ready means synced: the gateway's `/health` and its probe port's `/ready` answer 503
//! until the gateway can decide keys (the wasm filter's store holds a complete sync; in
//! ext_authz mode, keysync has loaded its key snapshot), 200 after; and a key keysync
//! answered on the miss path before that keeps working while keysync is frozen.

use keysync_contract::key_hash::KeyHash;
use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::http::{self, Response};
use keysync_e2e::key_population::KeyPopulation;
use keysync_e2e::keysync::{self, Keysync};
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::postgres::database_of;
use keysync_e2e::replies::forwarded_header;
use keysync_e2e::stack::Backend;
use keysync_e2e::{Signal, TestPostgres};
use std::net::SocketAddr;
use std::time::Duration;

/// A gateway in front of `keysync` with its probe listener on, and the probe address.
fn gateway(
    template: &str,
    keysync: &Keysync,
    backend: &Backend,
    sync_config: Option<&str>,
) -> (Gateway, SocketAddr) {
    let mut options = GatewayOptions::new(keysync.grpc, backend.backend_urls());
    options.template = template.into();
    let probes = options.probe_listener();
    if let Some(config) = sync_config {
        options.sync_config = config.into();
    }
    (Gateway::start(options), probes)
}

fn ready(probes: SocketAddr) -> Response {
    http::get(probes, "/ready", &[]).unwrap_or_else(|e| panic!("GET /ready on the probe port: {e}"))
}

fn assert_unavailable(response: &Response, what: &str) {
    assert_eq!(response.status, 503, "{what}: {}", response.text());
}

#[test]
fn ready_and_health_answer_503_until_the_gateway_can_decide_keys_then_200() {
    for template in ["gateway.yaml", "ext-authz.yaml"] {
        let postgres = TestPostgres::start();
        let database_url = postgres.create_database();
        keysync::migrate(&database_url);
        let org = keysync::create_org(&database_url, "readiness");
        let key = keysync::create_key(&database_url, &org, "ready", &[]);
        let keysync = Keysync::start(&database_url, &[]);
        let backend = Backend::start();
        // Frozen before the gateway starts: nothing can be synced or checked.
        keysync.process.signal(Signal::Stop);
        let (gateway, probes) = gateway(template, &keysync, &backend, None);

        assert_unavailable(
            &ready(probes),
            &format!("{template}: /ready before any sync"),
        );
        let health = gateway.get("/health", &[]);
        assert_unavailable(&health, &format!("{template}: /health before any sync"));
        if template == "gateway.yaml" {
            assert_eq!(
                health.json()["error"],
                "auth_unavailable",
                "{}",
                health.text()
            );
            assert_eq!(health.header("retry-after"), Some("5"));
        }
        // /stats/prometheus is not held back: metrics matter most while not ready.
        let metrics = http::get(probes, "/stats/prometheus", &[]).unwrap();
        assert_eq!(metrics.status, 200, "{template}: /stats/prometheus");

        keysync.process.signal(Signal::Cont);
        poll::eventually(
            &format!("{template}: /ready 200 once keysync runs"),
            DEADLINE,
            || ready(probes).status,
            |&status| status == 200,
        );
        let health = gateway.get("/health", &[]);
        assert_eq!(health.status, 200, "{template}: /health: {}", health.text());
        let answered = gateway.get_with_key("/orders", &key.key);
        assert_eq!(answered.status, 200, "{template}: {}", answered.text());
        assert_eq!(
            forwarded_header(&answered, "x-org-id"),
            std::slice::from_ref(&org)
        );
    }
}

/// Keys in the store before the one this test uses: with pages of 10, the first full
/// refresh takes thousands of round trips, so the test acts well before it completes.
const POPULATION: usize = 30_000;

#[test]
fn a_key_answered_on_the_miss_path_keeps_working_while_keysync_is_frozen() {
    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    keysync::migrate(&database_url);
    let org = keysync::create_org(&database_url, "miss-path");
    let population = KeyPopulation::new(&postgres, database_of(&database_url), &org, "ready");
    population.insert(0..POPULATION);
    // The key of highest hash: the refresh, in hash order, pages it last.
    let last = (0..POPULATION)
        .max_by_key(|&n| KeyHash::of_key(population.secret(n).as_bytes()))
        .unwrap();
    let key = population.secret(last);
    let keysync = Keysync::start(&database_url, &[]);
    let backend = Backend::start();
    let (gateway, probes) = gateway(
        "gateway.yaml",
        &keysync,
        &backend,
        Some(r#"{"role":"sync","refresh_interval":"1h","max_retry_interval":"1s","page_size":10}"#),
    );

    // The first full refresh is under way: the key is not in the store yet.
    assert_unavailable(&ready(probes), "/ready during the first refresh");
    let answered = gateway.get_with_key("/orders", &key);
    assert_eq!(answered.status, 200, "{}", answered.text());

    keysync.process.signal(Signal::Stop);
    // The sync cannot complete now; each request still asks keysync first (a
    // revocation would show), and when no answer comes the store's copy decides.
    for _ in 0..3 {
        let answered = gateway.get_with_key("/orders", &key);
        assert_eq!(
            answered.status,
            200,
            "keysync frozen: {}\n{}",
            answered.text(),
            gateway.process.log_tail(20)
        );
        assert_eq!(
            forwarded_header(&answered, "x-org-id"),
            std::slice::from_ref(&org)
        );
    }
    assert_unavailable(&ready(probes), "/ready while keysync is frozen mid-refresh");
    // Counted (stats reach Envoy on the workers' ticks).
    gateway.wait_for_stat("lookup_vouched", DEADLINE, |n| n >= 1);

    keysync.process.signal(Signal::Cont);
    poll::eventually(
        "/ready 200 once the first refresh completes",
        Duration::from_secs(120),
        || ready(probes).status,
        |&status| status == 200,
    );
    let answered = gateway.get_with_key("/orders", &key);
    assert_eq!(answered.status, 200, "{}", answered.text());
}
