//! What gateway traffic costs: real requests through Envoy on named routes, metered by
//! the filter and flushed to keysync, priced by `keysync usage --cost` on the
//! organization's plan, with the endpoint weights the plan gives and without the
//! requests the gateway refused.

use std::time::Duration;

use keysync_e2e::keysync;
use keysync_e2e::poll;
use keysync_e2e::stack::Stack;

/// The sync service's configuration: usage reported every second.
const SYNC_WITH_USAGE: &str = r#"{"role":"sync","refresh_interval":"2s","max_retry_interval":"1s","usage_flush_interval":"1s"}"#;

#[test]
fn usage_cost_prices_what_the_gateway_served_with_the_plans_weights() {
    // Two named routes to the echo backend: orders and search.
    let stack = Stack::start(|options| {
        options.sync_config = SYNC_WITH_USAGE.into();
        let url = options
            .backends
            .split_once('=')
            .map(|(_, url)| url.to_string())
            .unwrap_or_default();
        options.backends = format!("orders={url},search={url}");
    });
    // 1.00 EUR a unit (1000.00 per 1,000), nothing included, no fee: the invoice is the
    // units in cents times 100; a search counts 5.
    keysync::cli_json(
        &stack.database_url,
        &[
            "plans",
            "create",
            "--name",
            "metered",
            "--currency",
            "EUR",
            "--tier",
            "inf:1000.00",
            "--weight",
            "search=5",
        ],
    );
    let org = stack.create_org("priced");
    // The first plan takes effect at once: before any request is sent.
    keysync::cli_json(&stack.database_url, &["orgs", "set-plan", &org, "metered"]);
    let key = stack.create_key(&org, &[]);
    let limited = stack.create_key(&org, &[]);
    stack.set_key_limit(&limited.key_id, &["--rpm", "3", "--burst", "0"]);
    stack
        .gateway
        .wait_for_status("/orders/", &key.key, 200, poll::DEADLINE);

    let get = |path: &str, key: &str| {
        let bearer = format!("Bearer {key}");
        stack
            .gateway
            .get(path, &[("authorization", bearer.as_bytes())])
            .status
    };
    let (mut orders, mut search, mut refused) = (1_i64, 0_i64, 0_i64);
    for _ in 0..4 {
        assert_eq!(get("/orders/list", &key.key), 200);
        orders += 1;
    }
    for _ in 0..3 {
        assert_eq!(get("/search/q", &key.key), 200);
        search += 1;
    }
    // Over its limit, a key is refused 429: those requests are never billed. Until the
    // limit has reached the gateway and refused three, every answer counts.
    let deadline = std::time::Instant::now() + poll::DEADLINE;
    while refused < 3 && std::time::Instant::now() < deadline {
        match get("/orders/list", &limited.key) {
            200 => orders += 1,
            429 => refused += 1,
            other => panic!("status {other}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(refused, 3, "the limit never refused ({orders} served)");

    // Once the flushes are in, the month so far: orders x 1 + search x 5 units.
    let total = orders + search + refused;
    poll::within(Duration::from_secs(20), poll::INTERVAL, || {
        let answer = keysync::cli_json(
            &stack.database_url,
            &["usage", "--org-id", &org, "--by", "status", "--since", "1d"],
        );
        if answer["total_requests"].as_i64() == Some(total) {
            Ok(())
        } else {
            Err(answer)
        }
    })
    .unwrap_or_else(|last| panic!("usage never reached {total} requests: {last}"));
    let invoice = keysync::cli_json(&stack.database_url, &["usage", "--org-id", &org, "--cost"]);
    assert_eq!(invoice["closed"], false, "{invoice}");
    assert_eq!(invoice["currency"], "EUR");
    let segment = &invoice["segments"][0];
    assert_eq!(segment["plan_name"], "metered", "{invoice}");
    assert_eq!(
        segment["endpoints"],
        serde_json::json!([
            {"endpoint": "search", "requests": search, "weight": 5, "units": search * 5},
            {"endpoint": null, "requests": orders, "weight": 1, "units": orders},
        ]),
        "{invoice}"
    );
    let units = orders + search * 5;
    assert_eq!(segment["units"], units);
    assert_eq!(segment["tiers"][0]["units"], units);
    assert_eq!(invoice["total_minor"], units * 100, "{invoice}");
    assert_eq!(invoice["total"], format!("{units}.00"));
}
