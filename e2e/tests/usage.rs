//! Usage metering through real Envoy, keysync and PostgreSQL: what the gateway served is
//! what `keysync usage` reports, exactly, once a flush has passed, by status and by
//! endpoint (the route's name); a flush that could not reach keysync is made good by
//! the next one, without counting anything twice.

use std::time::Duration;

use keysync_contract::usage_endpoint::ENDPOINT_HEADER;
use keysync_e2e::keysync::{self, Keysync};
use keysync_e2e::poll;
use keysync_e2e::stack::Stack;

/// The sync service's configuration: usage reported every second.
const SYNC_WITH_USAGE: &str = r#"{"role":"sync","refresh_interval":"2s","max_retry_interval":"1s","usage_flush_interval":"1s"}"#;

/// `keysync usage --org-id ORG --by status --json`.
fn usage(stack: &Stack, org: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["usage", "--org-id", org, "--by", "status", "--since", "1d"];
    args.extend_from_slice(extra);
    keysync::cli_json(&stack.database_url, &args)
}

/// Requests of each outcome in a `--by status` answer.
fn by_outcome(answer: &serde_json::Value) -> Vec<(String, u64)> {
    let mut rows: Vec<(String, u64)> = answer["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    (
                        row["outcome"].as_str().unwrap_or_default().to_string(),
                        row["requests"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    rows.sort();
    rows
}

/// The requests timed of each outcome (those in the duration buckets), with their
/// summed duration.
fn timed_by_outcome(answer: &serde_json::Value) -> Vec<(String, u64, u64)> {
    let mut rows: Vec<(String, u64, u64)> = answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let timed = ["le_10ms", "le_100ms", "le_1s", "over_1s"]
                .iter()
                .map(|bucket| row[bucket].as_u64().unwrap_or_default())
                .sum();
            (
                row["outcome"].as_str().unwrap_or_default().to_string(),
                timed,
                row["duration_us"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Polls until the org's total reaches `total`; returns the answer.
fn wait_for_total(stack: &Stack, org: &str, total: u64) -> serde_json::Value {
    poll::within(Duration::from_secs(20), poll::INTERVAL, || {
        let answer = usage(stack, org, &[]);
        if answer["total_requests"].as_u64() == Some(total) {
            Ok(answer)
        } else {
            Err(answer)
        }
    })
    .unwrap_or_else(|last| panic!("usage never reached {total} requests: {last}"))
}

#[test]
fn what_the_gateway_served_is_what_usage_reports() {
    let mut stack = Stack::start(|options| options.sync_config = SYNC_WITH_USAGE.into());
    let org = stack.create_org("metered");
    let other_org = stack.create_org("other");
    let key = stack.create_key(&org, &[]);
    let limited = stack.create_key(&org, &[]);
    stack.set_key_limit(&limited.key_id, &["--rpm", "3", "--burst", "0"]);
    let other = stack.create_key(&other_org, &[]);
    stack
        .gateway
        .wait_for_status("/", &key.key, 200, poll::DEADLINE);
    stack
        .gateway
        .wait_for_status("/", &other.key, 200, poll::DEADLINE);

    // Served so far: one 200 each for `key` and `other` (the waits above).
    let mut served_ok = 1;
    for _ in 0..24 {
        let response = stack.gateway.get_with_key("/orders", &key.key);
        assert_eq!(response.status, 200, "{}", response.text());
        served_ok += 1;
    }
    // Until the limit has reached the gateway and refused five: every answer counts.
    let mut limited_ok = 0;
    let mut limited_refused = 0;
    for _ in 0..200 {
        match stack.gateway.get_with_key("/orders", &limited.key).status {
            200 => limited_ok += 1,
            429 => limited_refused += 1,
            other => panic!("the limited key got {other}"),
        }
        if limited_refused == 5 {
            break;
        }
    }
    assert_eq!(limited_refused, 5, "the limit never refused");
    // Neither missing nor unknown keys count for any organization.
    assert_eq!(stack.gateway.get("/orders", &[]).status, 401);
    assert_eq!(
        stack
            .gateway
            .get_with_key("/orders", "sk_live_NeverIssued000000000001")
            .status,
        403
    );

    let total = served_ok + limited_ok + limited_refused;
    let answer = wait_for_total(&stack, &org, total);
    assert_eq!(
        by_outcome(&answer),
        vec![
            ("2xx".to_string(), served_ok + limited_ok),
            ("rate_limited".to_string(), limited_refused),
        ],
        "{answer}"
    );
    // Forwarded requests are timed (a sample of a busy key's), refused ones never.
    let timed = timed_by_outcome(&answer);
    let (_, forwarded_timed, forwarded_us) = &timed[0];
    assert!(
        (1..=served_ok + limited_ok).contains(forwarded_timed) && *forwarded_us > 0,
        "{answer}"
    );
    assert_eq!(
        timed[1],
        ("rate_limited".to_string(), 0, 0),
        "refusals are not timed: {answer}"
    );
    let one_key = usage(&stack, &org, &["--key-id", &limited.key_id]);
    assert_eq!(
        one_key["total_requests"].as_u64(),
        Some(limited_ok + limited_refused),
        "{one_key}"
    );
    let others = wait_for_total(&stack, &other_org, 1);
    assert_eq!(by_outcome(&others), vec![("2xx".to_string(), 1)]);

    // Later flushes repeat the same cumulative counters: nothing is added twice.
    let flushes = stack
        .gateway
        .wait_for_stat("usage_flushes_ok", poll::DEADLINE, |n| n > 0);
    stack
        .gateway
        .wait_for_stat("usage_flushes_ok", poll::DEADLINE, |n| n >= flushes + 2);
    assert_eq!(
        usage(&stack, &org, &[])["total_requests"].as_u64(),
        Some(total)
    );

    // keysync down: the gateway serves from its store and cannot flush; the flush after
    // keysync is back carries what was served meanwhile, once.
    let grpc = stack.keysync.grpc.to_string();
    let failed = stack.gateway.stat("usage_flush_failed");
    stack.keysync.process.kill();
    for _ in 0..7 {
        assert_eq!(stack.gateway.get_with_key("/orders", &key.key).status, 200);
    }
    stack
        .gateway
        .wait_for_stat("usage_flush_failed", poll::DEADLINE, |n| n > failed);
    stack.keysync = Keysync::start_on(&stack.database_url, &grpc, &[]);
    let answer = wait_for_total(&stack, &org, total + 7);
    // The echo backend's answers have bodies: their sizes are counted (the wasm filter sees
    // each chunk go by, the native one asks Envoy for `response.size` at the stream's end).
    let response_bytes: i64 = answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row["response_bytes"].as_i64())
        .sum();
    assert!(response_bytes > 0, "no response bytes counted: {answer}");
    let log = stack.gateway.process.log();
    assert!(!log.contains("Unsupported attribute"), "{log}");
    assert_eq!(
        by_outcome(&answer),
        vec![
            ("2xx".to_string(), served_ok + limited_ok + 7),
            ("rate_limited".to_string(), limited_refused),
        ],
        "{answer}"
    );
}

/// `GET path` with `key`, and a client's own `x-keysync-endpoint` when given.
fn get_on(stack: &Stack, path: &str, key: &str, forged: Option<&str>) -> serde_json::Value {
    let bearer = format!("Bearer {key}");
    let mut headers: Vec<(&str, &[u8])> = vec![("authorization", bearer.as_bytes())];
    if let Some(forged) = forged {
        headers.push((ENDPOINT_HEADER, forged.as_bytes()));
    }
    let response = stack.gateway.get(path, &headers);
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    serde_json::from_slice(&response.body).unwrap_or_default()
}

/// (endpoint, requests) rows of `keysync usage --by endpoint --json`, in its order.
fn by_endpoint(answer: &serde_json::Value) -> Vec<(String, u64)> {
    answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            (
                row["endpoint"].as_str().unwrap_or_default().to_string(),
                row["requests"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn usage_by_endpoint_is_what_each_named_route_served() {
    // Two named routes (BACKEND_URLS names them: orders, search) to the echo backend,
    // and /health, a route without a name.
    let stack = Stack::start(|options| {
        options.sync_config = SYNC_WITH_USAGE.into();
        // /health as a plain route without a name: the filter's own readiness answer
        // (`ready_paths`, which meters nothing) off.
        options.auth_config = format!(
            r#"{{"role":"auth",{},"ready_paths":[]}}"#,
            options.route_facts()
        );
        options.name_routes(&["orders", "search"]);
    });
    let org = stack.create_org("routed");
    let key = stack.create_key(&org, &[]);
    stack
        .gateway
        .wait_for_status("/orders/", &key.key, 200, poll::DEADLINE);
    let (mut orders, mut search, mut unnamed) = (1, 0, 0);
    for _ in 0..5 {
        let echoed = get_on(&stack, "/orders/list", &key.key, None);
        // The route's header is the filter's: the backend never sees it.
        assert!(echoed["headers"].get(ENDPOINT_HEADER).is_none(), "{echoed}");
        orders += 1;
    }
    for _ in 0..3 {
        get_on(&stack, "/search/q", &key.key, None);
        search += 1;
    }
    // A client naming another endpoint is counted under the route it took: the route
    // sets the header, and a route without a name removes it.
    get_on(&stack, "/orders/list", &key.key, Some("search"));
    orders += 1;
    get_on(&stack, "/search/q", &key.key, Some("orders"));
    search += 1;
    for forged in [None, Some("orders"), Some("made-up")] {
        let response = stack.gateway.get(
            "/health",
            &[
                ("authorization", format!("Bearer {}", key.key).as_bytes()),
                (ENDPOINT_HEADER, forged.unwrap_or_default().as_bytes()),
            ],
        );
        assert_eq!(response.status, 200);
        unnamed += 1;
    }

    let total = orders + search + unnamed;
    wait_for_total(&stack, &org, total);
    let answer = keysync::cli_json(
        &stack.database_url,
        &[
            "usage", "--org-id", &org, "--by", "endpoint", "--since", "1d",
        ],
    );
    assert_eq!(
        by_endpoint(&answer),
        vec![
            ("orders".to_string(), orders),
            ("search".to_string(), search),
            ("-".to_string(), unnamed),
        ],
        "{answer}"
    );
    assert_eq!(answer["total_requests"].as_u64(), Some(total));
    // The table: the same rows.
    let text = keysync::cli(
        &stack.database_url,
        &[
            "usage", "--org-id", &org, "--by", "endpoint", "--since", "1d",
        ],
    );
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let firsts: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .take(3)
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap_or_default().to_string();
            (name, words.next().unwrap_or_default().to_string())
        })
        .collect();
    assert_eq!(
        firsts,
        [
            ("orders".to_string(), orders.to_string()),
            ("search".to_string(), search.to_string()),
            ("-".to_string(), unnamed.to_string()),
        ],
        "{text}"
    );
    assert_eq!(stack.gateway.stat("usage_endpoint_other"), 0);
}

/// `GET /v1/usage`, the console's overview, with `token`.
fn fleet_usage(stack: &Stack, token: &str) -> serde_json::Value {
    let raw = format!(
        "GET /v1/usage?since=1d HTTP/1.1\r\nhost: keysync\r\nauthorization: Bearer {token}\r\n\
         connection: close\r\n\r\n"
    );
    let response = keysync_e2e::http::send_raw(stack.keysync.api(), raw.as_bytes())
        .unwrap_or_else(|error| panic!("GET /v1/usage: {error}"));
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

/// The fleet's overview adds every organization's requests by outcome, counts the
/// gateway's refusals of missing and unknown keys as `unauthenticated`, and ranks the
/// organizations by traffic and by refusals.
#[test]
fn the_fleet_overview_counts_every_organization_and_ranks_them() {
    let stack = Stack::start(|options| options.sync_config = SYNC_WITH_USAGE.into());
    let busy = stack.create_org("busy");
    let refused = stack.create_org("refused");
    let busy_key = stack.create_key(&busy, &[]);
    let limited = stack.create_key(&refused, &[]);
    stack.set_key_limit(&limited.key_id, &["--rpm", "3", "--burst", "0"]);
    stack
        .gateway
        .wait_for_status("/", &busy_key.key, 200, poll::DEADLINE);
    for _ in 0..9 {
        assert_eq!(
            stack.gateway.get_with_key("/orders", &busy_key.key).status,
            200
        );
    }
    let (mut limited_ok, mut limited_refused) = (0u64, 0u64);
    while limited_refused < 3 && limited_ok + limited_refused < 200 {
        match stack.gateway.get_with_key("/orders", &limited.key).status {
            200 => limited_ok += 1,
            429 => limited_refused += 1,
            other => panic!("the limited key got {other}"),
        }
    }
    assert_eq!(limited_refused, 3, "the limit never refused");
    assert_eq!(stack.gateway.get("/orders", &[]).status, 401);
    assert_eq!(
        stack
            .gateway
            .get_with_key("/orders", "sk_live_NeverIssued000000000001")
            .status,
        403
    );

    let token = keysync::cli_json(
        &stack.database_url,
        &[
            "admin-tokens",
            "create",
            "--name",
            "overview",
            "--read-only",
        ],
    )["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let outcome_sum = |fleet: &serde_json::Value, outcome: &str| -> u64 {
        fleet["series"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|point| point["outcome"] == outcome)
            .map(|point| point["requests"].as_u64().unwrap_or_default())
            .sum()
    };
    let ok_total = 10 + limited_ok;
    let fleet = poll::within(Duration::from_secs(30), poll::INTERVAL, || {
        let fleet = fleet_usage(&stack, &token);
        let seen = (
            outcome_sum(&fleet, "2xx"),
            outcome_sum(&fleet, "rate_limited"),
            outcome_sum(&fleet, "unauthenticated"),
        );
        if seen == (ok_total, 3, 2) {
            Ok(fleet)
        } else {
            Err(fleet)
        }
    })
    .unwrap_or_else(|last| panic!("the overview never counted everything: {last:#}"));
    assert_eq!(fleet["total_requests"], ok_total + 3 + 2, "{fleet:#}");
    let ranked = |list: &str| -> Vec<(String, u64, u64)> {
        fleet[list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|org| {
                (
                    org["name"].as_str().unwrap_or_default().to_owned(),
                    org["requests"].as_u64().unwrap_or_default(),
                    org["refused"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    };
    let by_requests = ranked("top_by_requests");
    let busy_row = ("busy".to_owned(), 10, 0);
    let refused_row = ("refused".to_owned(), limited_ok + 3, 3);
    if limited_ok + 3 > 10 {
        assert_eq!(by_requests, [refused_row.clone(), busy_row], "{fleet:#}");
    } else if limited_ok + 3 < 10 {
        assert_eq!(by_requests, [busy_row, refused_row.clone()], "{fleet:#}");
    }
    assert_eq!(ranked("top_by_refusals"), [refused_row], "{fleet:#}");
}
