//! Usage metering of each request: outcomes, durations, bytes, and what it costs.

use super::*;
use crate::host::fake_log::logged_line;
use crate::host::HostError;
use crate::usage::counters::Totals;
use crate::usage::duration_sample;
use keysync_contract::usage_endpoint::ENDPOINT_HEADER;

#[test]
fn usage_counts_each_outcome_of_a_recognized_key() {
    let worker = metered_worker("{}");
    store(&worker, limited(KEY, 5));
    for status in [200, 201, 404, 503, 101] {
        forwarded(&worker, status, Duration::from_millis(1));
    }
    // The budget (5) is spent: refused by the rate limit, counted at its end.
    let (request, _) = send_key(&worker, KEY);
    assert_eq!(status(&worker), Some(429));
    drop(request);
    // Refused by its policy.
    store(&worker, with_policy(KEY, &[], &["10.0.0.0/8"]));
    worker.on_tick();
    let (request, _) = send_key(&worker, KEY);
    assert_eq!(status(&worker), Some(403));
    drop(request);
    assert_eq!(
        requests(&counted(&worker)),
        [(1, 1), (2, 2), (4, 1), (5, 1), (6, 1), (8, 1)],
        "101 is 'other'; 201 and 200 are both 2xx"
    );
    assert_eq!(Totals::read(&worker.host).unattributed, 0);
}

#[test]
fn requests_without_a_recognized_key_count_per_envoy_only() {
    let worker = metered_worker("{}");
    send(&worker, &[(":path", "/orders")]);
    send(&worker, &[("authorization", "Bearer sk_live_x")]);
    let (mut lookup, _) = send_key(&worker, OTHER_KEY);
    answer(&mut lookup, &worker, not_found());
    assert_eq!(status(&worker), Some(403));
    drop(lookup);
    // A public path passes without a key: not a key's request either.
    send(&worker, &[(":path", "/health")]);
    worker.on_tick();
    assert_eq!(Totals::read(&worker.host).unattributed, 4);
    assert!(counted(&worker).is_empty());
}

#[test]
fn durations_go_into_their_buckets() {
    let worker = metered_worker(r#"{"usage_durations":"all"}"#);
    store(&worker, record(KEY));
    for ms in [3, 10, 50, 999, 1_500] {
        forwarded(&worker, 200, Duration::from_millis(ms));
    }
    let counters = counted(&worker);
    let (_, counts) = counters.first().unwrap();
    assert_eq!(counts.requests, 5);
    assert_eq!(counts.duration_us, (3 + 10 + 50 + 999 + 1_500) * 1000);
    assert_eq!(counts.buckets, [2, 1, 1, 1]);
}

#[test]
fn a_busy_key_has_a_sample_of_its_requests_timed() {
    let worker = metered_worker("{}");
    store(&worker, record(KEY));
    for ms in [1, 2, 3, 4, 500, 600] {
        forwarded(&worker, 200, Duration::from_millis(ms));
    }
    // `counted` ticks: the next tick's first requests are timed again.
    let (_, first) = counted(&worker)[0];
    assert_eq!(first.requests, 6);
    assert_eq!(
        first.buckets,
        [4, 0, 0, 0],
        "the first 4 of the tick, timed"
    );
    assert_eq!(first.duration_us, 10_000, "the timed ones' sum alone");
    forwarded(&worker, 200, Duration::from_millis(20));
    let (_, second) = counted(&worker)[0];
    assert_eq!(second.requests, 7);
    assert_eq!(second.buckets, [4, 1, 0, 0]);
    assert_eq!(second.duration_us, 30_000);
}

#[test]
fn an_untimed_request_costs_only_its_status() {
    let worker = metered_worker("{}");
    store(&worker, record(KEY));
    for _ in 0..duration_sample::PER_TICK {
        forwarded(&worker, 200, Duration::from_millis(1));
    }
    worker.host.host_calls.set(0);
    let (mut request, action) = send_key(&worker, KEY);
    assert_forwarded_with_identity(&worker, action);
    assert_eq!(worker.host.host_calls.get(), 6, "as without metering");
    worker.host.host_calls.set(0);
    worker.host.respond(503, Duration::from_millis(5));
    request.on_response_headers();
    assert_eq!(worker.host.host_calls.get(), 1, "its :status alone");
    request.finish();
    let counters = counted(&worker);
    assert_eq!(requests(&counters), [(2, 4), (5, 1)]);
    let (_, failed) = counters[1];
    assert_eq!((failed.duration_us, failed.buckets), (0, [0; 4]));
}

#[test]
fn body_bytes_are_counted_without_a_host_call() {
    let worker = metered_worker("{}");
    store(&worker, record(KEY));
    let (mut request, _) = send_key(&worker, KEY);
    worker.host.respond(200, Duration::from_millis(2));
    request.on_request_body(100);
    request.on_request_body(23);
    request.on_response_headers();
    let calls = worker.host.host_calls.get();
    request.on_response_body(4_000);
    request.finish();
    assert_eq!(worker.host.host_calls.get(), calls);
    let (_, counts) = counted(&worker)[0];
    assert_eq!((counts.request_bytes, counts.response_bytes), (123, 4_000));
}

#[test]
fn counting_a_request_costs_one_clock_read_on_its_request_path() {
    let worker = metered_worker("{}");
    store(&worker, record(KEY));
    send_key(&worker, KEY);
    let (mut request, action) = send_key(&worker, KEY);
    assert_forwarded_with_identity(&worker, action);
    assert_eq!(
        worker.host.host_calls.get(),
        7,
        "as without metering, and the clock at admission"
    );
    worker.host.respond(200, Duration::from_millis(5));
    request.on_response_headers();
    assert_eq!(
        worker.host.host_calls.get(),
        2,
        "the response path: its :status and the clock"
    );
    assert!(worker.host.property_reads.borrow().is_empty());
    worker.host.host_calls.set(0);
    request.finish();
    drop(request);
    assert_eq!(worker.host.host_calls.get(), 0, "counting itself is free");
    // Refusals and requests without a key pay nothing on any path.
    send(&worker, &[(":path", "/orders")]);
    let calls = worker.host.host_calls.get();
    assert_eq!(
        requests(&counted(&worker)),
        [(1, 1), (2, 1)],
        "the first request ended without response headers: 'other'"
    );
    assert_eq!(
        calls, 4,
        "authorization, x-api-key, :path (public-path check), the reply: as without metering"
    );
}

#[test]
fn a_request_that_waited_for_its_rate_limit_counts_as_it_ended() {
    use crate::limits::local_rate_limit::{check, Leases};
    let worker = metered_worker("{}");
    let limited = limited(KEY, 128);
    store(&worker, limited.clone());
    let (subject, limit) = limited.limit_subject().unwrap();
    // Another worker holds a lease that never comes back.
    check(
        &worker.host,
        &mut Leases::default(),
        &subject,
        limit,
        NOW_MS / 1000,
    )
    .unwrap();
    let mut forwarded_before = 0;
    let waiting = loop {
        let (mut request, action) = send_key(&worker, KEY);
        if action == Action::Pause {
            break request;
        }
        worker.host.respond(200, Duration::ZERO);
        request.on_response_headers();
        forwarded_before += 1;
    };
    for _ in 0..5 {
        worker.host.new_request(&[]);
        worker.on_tick();
    }
    assert_eq!(status(&worker), Some(429));
    drop(waiting);
    assert_eq!(requests(&counted(&worker)), [(2, forwarded_before), (6, 1)]);
}

#[test]
fn metering_off_counts_nothing_and_reads_nothing() {
    let worker = synced_worker("{}");
    Meta {
        enabled: false,
        instance_id: [9; 16],
    }
    .write(&worker.host)
    .unwrap();
    worker.on_tick();
    store(&worker, record(KEY));
    let (mut request, _) = send_key(&worker, KEY);
    worker.host.respond(200, Duration::from_millis(5));
    request.on_response_headers();
    assert_eq!(worker.host.host_calls.get(), 0, "no response-path reads");
    request.finish();
    send(&worker, &[(":path", "/orders")]);
    worker.on_tick();
    assert!(
        worker.host.shared.value(&counters::slot_name(0)).is_none(),
        "no slots"
    );
    assert_eq!(worker.host.shared.value(counters::TOTALS_ENTRY), None);
}

#[test]
fn counts_wait_in_the_worker_until_the_sync_service_made_the_slots() {
    let worker = synced_worker("{}");
    store(&worker, record(KEY));
    forwarded(&worker, 200, Duration::from_millis(1));
    worker.on_tick();
    assert_eq!(worker.host.shared.value(counters::TOTALS_ENTRY), None);
    counters::ensure_slots(&worker.host).unwrap();
    Meta {
        enabled: true,
        instance_id: [9; 16],
    }
    .write(&worker.host)
    .unwrap();
    assert_eq!(requests(&counted(&worker)), [(2, 1)]);
}

/// A request of `KEY` through a route that hands the filter `endpoint` in the header,
/// forwarded and answered 200.
fn forwarded_on(worker: &Worker, endpoint: Option<&str>) {
    let bearer = format!("Bearer {KEY}");
    let mut headers = vec![(":path", "/orders"), ("authorization", bearer.as_str())];
    headers.extend(endpoint.map(|name| (ENDPOINT_HEADER, name)));
    let (mut request, action) = send(worker, &headers);
    assert_eq!(action, Action::Continue);
    worker.host.respond(200, Duration::from_millis(1));
    request.on_response_headers();
    request.finish();
}

fn requests_by_endpoint(worker: &Worker) -> Vec<(String, u8, u64)> {
    counted_by_endpoint(worker)
        .into_iter()
        .map(|(endpoint, outcome, counts)| (endpoint, outcome, counts.requests))
        .collect()
}

const ENDPOINTS_FROM_HEADER: &str = r#"{"usage_endpoints":"header"}"#;

#[test]
fn each_route_name_is_an_endpoint_and_no_name_counts_as_a_dash() {
    let worker = metered_worker(ENDPOINTS_FROM_HEADER);
    // A budget of 5: the sixth request is refused by the rate limit on a named route,
    // and counted under its route too.
    store(&worker, limited(KEY, 5));
    for endpoint in [
        Some("orders"),
        Some("search"),
        Some("orders"),
        None,
        Some(""),
    ] {
        forwarded_on(&worker, endpoint);
    }
    let bearer = format!("Bearer {KEY}");
    let (request, _) = send(
        &worker,
        &[("authorization", &bearer), (ENDPOINT_HEADER, "search")],
    );
    assert_eq!(status(&worker), Some(429));
    drop(request);
    assert_eq!(
        requests_by_endpoint(&worker),
        [
            ("-".to_string(), 2, 2),
            ("orders".to_string(), 2, 2),
            ("search".to_string(), 2, 1),
            ("search".to_string(), 6, 1),
        ]
    );
}

#[test]
fn the_route_name_can_be_read_as_a_property_instead() {
    let worker = metered_worker(r#"{"usage_endpoints":"route_name"}"#);
    store(&worker, record(KEY));
    *worker.host.route_name.borrow_mut() = Ok(Some("orders".into()));
    // The header is not what this configuration reads.
    forwarded_on(&worker, Some("search"));
    *worker.host.route_name.borrow_mut() = Ok(None);
    forwarded_on(&worker, None);
    *worker.host.route_name.borrow_mut() = Err(HostError(1));
    forwarded_on(&worker, None);
    assert_eq!(
        requests_by_endpoint(&worker),
        [("-".to_string(), 2, 2), ("orders".to_string(), 2, 1)],
        "a failed read counts as no name"
    );
}

#[test]
fn endpoints_off_count_every_request_under_a_dash_and_read_nothing() {
    let worker = metered_worker("{}");
    store(&worker, record(KEY));
    *worker.host.route_name.borrow_mut() = Ok(Some("orders".into()));
    forwarded_on(&worker, Some("search"));
    assert_eq!(requests_by_endpoint(&worker), [("-".to_string(), 2, 1)]);
    assert!(
        !worker
            .host
            .property_reads
            .borrow()
            .contains(&"xds.route_name"),
        "no route name read"
    );
}

#[test]
fn distinct_endpoints_are_bounded_and_the_rest_count_as_other() {
    let worker = metered_worker(r#"{"usage_endpoints":"header","usage_max_endpoints":2}"#);
    store(&worker, record(KEY));
    for endpoint in ["a", "b", "c", "a", "d", "not a name"] {
        forwarded_on(&worker, Some(endpoint));
    }
    assert_eq!(
        requests_by_endpoint(&worker),
        [
            ("(other)".to_string(), 2, 3),
            ("a".to_string(), 2, 2),
            ("b".to_string(), 2, 1),
        ]
    );
    assert_eq!(
        endpoints::read_table(&worker.host),
        ["a", "b"],
        "the shared table holds the bound, no more"
    );
    assert_eq!(worker.host.metric("keysync.usage_endpoint_other"), Some(3));
    assert!(logged_line("usage: requests counted under the endpoint (other)").is_some());
    assert!(logged_line(r#"the route name "not a name" is not a usable endpoint name"#).is_some());
    // Once the table is full, a new name costs nothing more than a known one.
    worker.host.host_calls.set(0);
    forwarded_on(&worker, Some("e"));
    let new_name = worker.host.host_calls.get();
    worker.host.host_calls.set(0);
    forwarded_on(&worker, Some("a"));
    assert_eq!(worker.host.host_calls.get(), new_name);
}

#[test]
fn the_endpoint_costs_one_header_read_a_request_and_only_while_metering() {
    let worker = metered_worker(ENDPOINTS_FROM_HEADER);
    store(&worker, record(KEY));
    forwarded_on(&worker, Some("orders"));
    worker.on_tick();
    let bearer = format!("Bearer {KEY}");
    let headers = [
        (":path", "/orders"),
        ("authorization", bearer.as_str()),
        (ENDPOINT_HEADER, "orders"),
    ];
    // The sample of timed requests is spent: the clock is not read at admission.
    for _ in 0..duration_sample::PER_TICK {
        send(&worker, &headers);
    }
    worker.host.host_calls.set(0);
    let (_, action) = send(&worker, &headers);
    assert_forwarded_with_identity(&worker, action);
    assert_eq!(
        worker.host.host_calls.get(),
        7,
        "authorization, the route's scopes, the endpoint, two identity headers, two \
         credential headers removed: one more than without endpoints"
    );
    assert_eq!(
        *worker.host.property_reads.borrow(),
        ["xds.route_metadata.filter_metadata.keysync.scopes"],
        "the header, not the route name property"
    );
    // A refused request without a key reads no endpoint.
    worker.host.host_calls.set(0);
    send(
        &worker,
        &[(":path", "/orders"), (ENDPOINT_HEADER, "orders")],
    );
    assert_eq!(worker.host.host_calls.get(), 4, "as without metering");

    // Metering off: the endpoint is not read.
    Meta {
        enabled: false,
        instance_id: [9; 16],
    }
    .write(&worker.host)
    .unwrap();
    worker.on_tick();
    worker.host.host_calls.set(0);
    send(&worker, &headers);
    assert_eq!(worker.host.host_calls.get(), 6, "no endpoint read");
}
