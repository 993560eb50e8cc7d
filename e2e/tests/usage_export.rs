//! The usage export through real Envoy, keysync, PostgreSQL and a Kafka-protocol broker
//! (tansu): the CloudEvents on the topic add up to exactly what `keysync usage` reports
//! (by outcome and by endpoint) and what the gateway served on each route, one event per
//! grown counter and flush; and a broker that
//! goes away never stops the gateway or the rollups, drops beyond the backlog are
//! counted and logged, and events flow again once the broker (and its topic) is back.
//! Alerts go out on the same topic: quota thresholds, and anomalies (a spike of real
//! traffic through the gateway against a history seeded in the rollup), once each.

// Helpers outside `#[test]` functions check events too: a missing field is a failure.
#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keysync_e2e::kafka::{ConsumedRecord, TestKafka};
use keysync_e2e::keysync::{self, CreatedKey};
use keysync_e2e::poll;
use keysync_e2e::postgres::database_of;
use keysync_e2e::stack::Stack;
use keysync_e2e::usage_sums::{
    add, as_sums, count_request, counter_of, grouped, requests, rollup_sums, values_of, Counter,
    Sums,
};
use serde_json::Value;

/// The sync service's configuration: usage reported every second.
const SYNC_WITH_USAGE: &str = r#"{"role":"sync","refresh_interval":"2s","max_retry_interval":"1s","usage_flush_interval":"1s"}"#;
const TOPIC: &str = "keysync.usage";
/// How long events may take to reach the topic once the rollups have them.
const EXPORT_DEADLINE: Duration = Duration::from_secs(60);

/// The events' data summed by (org, key, endpoint, outcome).
fn event_sums(records: &[ConsumedRecord]) -> Sums {
    let mut sums = Sums::new();
    for record in records {
        let data = &record.json()["data"];
        add(&mut sums, counter_of(data), values_of(data));
    }
    sums
}

/// Waits until the topic's events add up to `expected` requests per counter.
fn wait_for_events(kafka: &TestKafka, expected: &BTreeMap<Counter, i64>) -> Vec<ConsumedRecord> {
    poll::within(EXPORT_DEADLINE, Duration::from_millis(250), || {
        let records = kafka.records(TOPIC);
        if &requests(&event_sums(&records)) == expected {
            Ok(records)
        } else {
            Err(requests(&event_sums(&records)))
        }
    })
    .unwrap_or_else(|last| panic!("the events never added up to {expected:?}; last {last:?}"))
}

/// Whether `text` is RFC 3339 in UTC with milliseconds (`2026-12-01T14:00:05.250Z`),
/// the export's one format: such times sort as strings.
fn is_rfc3339_millis(text: &str) -> bool {
    let digits = [0..4, 5..7, 8..10, 11..13, 14..16, 17..19, 20..23];
    let separators = [
        (4, '-'),
        (7, '-'),
        (10, 'T'),
        (13, ':'),
        (16, ':'),
        (19, '.'),
        (23, 'Z'),
    ];
    text.len() == 24
        && digits.into_iter().all(|range| {
            text.get(range)
                .is_some_and(|part| part.bytes().all(|byte| byte.is_ascii_digit()))
        })
        && separators
            .iter()
            .all(|(at, separator)| text[*at..].starts_with(*separator))
}

/// Every envelope field of every record, and ids unique. `subjects` maps the
/// organizations with an external id to it: their events' subject.
fn check_envelopes(records: &[ConsumedRecord], subjects: &BTreeMap<String, String>) {
    let mut ids = BTreeSet::new();
    for record in records {
        let event = record.json();
        let data = &event["data"];
        let org = data["org_id"].as_str().expect("data.org_id");
        let instance = data["instance_id"].as_str().expect("data.instance_id");
        assert_eq!(event["specversion"], "1.0", "{event}");
        assert_eq!(event["type"], "io.keysync.usage.v1", "{event}");
        assert_eq!(event["datacontenttype"], "application/json", "{event}");
        let subject = subjects.get(org).map_or(org, String::as_str);
        assert_eq!(event["subject"], subject, "{event}");
        assert_eq!(
            event["source"],
            format!("keysync/gateway/{instance}"),
            "{event}"
        );
        assert_eq!(record.key.as_deref(), Some(org.as_bytes()), "{event}");
        assert_eq!(
            record.headers.get("content-type").map(Vec::as_slice),
            Some(&b"application/cloudevents+json"[..]),
            "{event}"
        );
        let id = event["id"].as_str().expect("id").to_string();
        assert_eq!(id.len(), 36, "a UUID: {id}");
        assert!(ids.insert(id), "id repeated: {event}");
        let time = event["time"].as_str().expect("time");
        assert!(is_rfc3339_millis(time), "{event}");
        assert_eq!(data["window_end"], time, "{event}");
        if let Some(start) = data["window_start"].as_str() {
            assert!(is_rfc3339_millis(start) && start <= time, "{event}");
        } else {
            assert!(data["window_start"].is_null(), "{event}");
        }
        assert!(
            ["2xx", "rate_limited", "policy_denied"]
                .contains(&data["outcome"].as_str().unwrap_or("")),
            "{event}"
        );
        // The route's name: the routes of these tests are all named.
        assert!(
            ["orders", "search", "api-service"].contains(&data["endpoint"].as_str().unwrap_or("")),
            "{event}"
        );
        // Only counters that grew.
        assert!(data["requests"].as_i64() > Some(0), "{event}");
        // The buckets count the timed requests: some forwarded ones, no refused one.
        let values = values_of(data);
        let timed = values[2] + values[3] + values[4] + values[5];
        if data["outcome"] == "2xx" {
            assert!(timed <= values[0], "{event}");
        } else {
            assert_eq!((timed, values[1]), (0, 0), "{event}");
        }
    }
}

#[test]
fn the_events_add_up_to_what_usage_reports_and_the_gateway_served() {
    let kafka = TestKafka::start();
    kafka.create_topic(TOPIC, 3);
    let brokers = kafka.brokers();
    // Two named routes to the echo backend: each request is counted under its route.
    let stack = Stack::start_with(
        &[("KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS", &brokers)],
        |options| {
            options.sync_config = SYNC_WITH_USAGE.into();
            options.name_routes(&["orders", "search"]);
        },
    );
    let org = stack.create_org("metered");
    // The other organization has an id in the operator's billing system: its events
    // carry it as their subject.
    let other_org = keysync::cli_json(
        &stack.database_url,
        &[
            "orgs",
            "create",
            "--name",
            "other",
            "--external-id",
            "cus_other",
        ],
    )["org_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = stack.create_key(&org, &[]);
    let limited = stack.create_key(&org, &[]);
    stack.set_key_limit(&limited.key_id, &["--rpm", "3", "--burst", "0"]);
    let elsewhere = stack.create_key(&org, &["--allow-cidr", "203.0.113.0/24"]);
    let other = stack.create_key(&other_org, &[]);
    let mut counts = BTreeMap::new();
    stack
        .gateway
        .wait_for_status("/orders/", &key.key, 200, poll::DEADLINE);
    count_request(&mut counts, &org, &key, "orders", "2xx");
    stack
        .gateway
        .wait_for_status("/search/", &other.key, 200, poll::DEADLINE);
    count_request(&mut counts, &other_org, &other, "search", "2xx");

    for round in 0..6 {
        for n in 0..5 {
            // Three of five on orders, two on search.
            let endpoint = if n < 3 { "orders" } else { "search" };
            let path = format!("/{endpoint}/list");
            assert_eq!(stack.gateway.get_with_key(&path, &key.key).status, 200);
            count_request(&mut counts, &org, &key, endpoint, "2xx");
        }
        let status = stack
            .gateway
            .get_with_key("/orders/list", &limited.key)
            .status;
        match status {
            200 => count_request(&mut counts, &org, &limited, "orders", "2xx"),
            429 => count_request(&mut counts, &org, &limited, "orders", "rate_limited"),
            other => panic!("the limited key got {other}"),
        }
        assert_eq!(
            stack
                .gateway
                .get_with_key("/search/list", &elsewhere.key)
                .status,
            403
        );
        count_request(&mut counts, &org, &elsewhere, "search", "policy_denied");
        if round % 2 == 0 {
            assert_eq!(
                stack
                    .gateway
                    .get_with_key("/orders/list", &other.key)
                    .status,
                200
            );
            count_request(&mut counts, &other_org, &other, "orders", "2xx");
        }
        // Spread over a few flushes, so a counter's events come from several windows.
        stack
            .gateway
            .wait_for_stat("usage_flushes_ok", poll::DEADLINE, |n| n > 0);
        let flushes = stack.gateway.stat("usage_flushes_ok");
        stack
            .gateway
            .wait_for_stat("usage_flushes_ok", poll::DEADLINE, |n| n > flushes);
    }
    // Until the limit has refused one at least (it reaches the gateway with a refresh).
    let refused = poll::within(poll::DEADLINE, poll::INTERVAL, || {
        match stack
            .gateway
            .get_with_key("/orders/list", &limited.key)
            .status
        {
            200 => {
                count_request(&mut counts, &org, &limited, "orders", "2xx");
                Err(())
            }
            429 => {
                count_request(&mut counts, &org, &limited, "orders", "rate_limited");
                Ok(())
            }
            other => panic!("the limited key got {other}"),
        }
    });
    assert_eq!(refused, Ok(()), "the limit never refused");

    let keys = [
        (org.as_str(), &key),
        (org.as_str(), &limited),
        (org.as_str(), &elsewhere),
        (other_org.as_str(), &other),
    ];
    // The rollups have exactly what was served, by outcome and by endpoint...
    let served_sums = as_sums(&counts);
    let by_status = poll::within(Duration::from_secs(30), Duration::from_millis(250), || {
        let rollups = rollup_sums(&stack.database_url, &keys, "status");
        if requests(&rollups) == requests(&grouped(&served_sums, "status")) {
            Ok(rollups)
        } else {
            Err(requests(&rollups))
        }
    })
    .unwrap_or_else(|last| panic!("the rollups never reached {counts:?}; last {last:?}"));
    let by_endpoint = rollup_sums(&stack.database_url, &keys, "endpoint");
    assert_eq!(
        requests(&by_endpoint),
        requests(&grouped(&served_sums, "endpoint"))
    );
    // ... and so do the events, value by value, counter by counter.
    let records = wait_for_events(&kafka, &counts);
    let events = event_sums(&records);
    assert_eq!(grouped(&events, "status"), by_status);
    assert_eq!(grouped(&events, "endpoint"), by_endpoint);
    check_envelopes(
        &records,
        &BTreeMap::from([(other_org.clone(), "cus_other".to_owned())]),
    );
    let total: i64 = counts.values().sum();
    assert!(
        records.len() < usize::try_from(total).unwrap(),
        "{} events for {total} requests: one per counter and flush, not per request",
        records.len()
    );
    // Several windows per busy counter (the busy key's 2xx on orders), each starting
    // where the previous one ended.
    let mut windows: BTreeMap<String, Vec<(Value, Value)>> = BTreeMap::new();
    for record in &records {
        let data = record.json()["data"].clone();
        if data["key_id"] == key.key_id.as_str()
            && data["endpoint"] == "orders"
            && data["outcome"] == "2xx"
        {
            windows
                .entry(data["instance_id"].as_str().unwrap_or_default().to_string())
                .or_default()
                .push((data["window_start"].clone(), data["window_end"].clone()));
        }
    }
    let (_, mut spans) = windows.into_iter().next().expect("events of the busy key");
    spans.sort_by(|a, b| a.1.as_str().cmp(&b.1.as_str()));
    assert!(spans.len() >= 3, "{spans:?}");
    for pair in spans.windows(2) {
        assert!(
            pair[1].0.as_str() >= pair[0].1.as_str(),
            "windows overlap: {pair:?}"
        );
    }
    assert_eq!(
        stack
            .keysync
            .metric("keysync_usage_export_dropped_total", &[]),
        0.0
    );
    assert!(
        stack
            .keysync
            .metric("keysync_usage_export_published_total", &[])
            >= records.len() as f64
    );

    // Later flushes repeat the same cumulative counters: no new events.
    let flushes = stack.gateway.stat("usage_flushes_ok");
    stack
        .gateway
        .wait_for_stat("usage_flushes_ok", poll::DEADLINE, |n| n >= flushes + 2);
    assert_eq!(kafka.records(TOPIC).len(), records.len());
}

#[test]
fn kafka_down_never_stops_the_gateway_and_drops_are_counted() {
    let mut kafka = TestKafka::start();
    kafka.create_topic(TOPIC, 1);
    let brokers = kafka.brokers();
    let stack = Stack::start_with(
        &[
            ("KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS", &brokers),
            ("KEYSYNC_USAGE_EXPORT_BACKLOG", "2"),
        ],
        |options| options.sync_config = SYNC_WITH_USAGE.into(),
    );
    let org = stack.create_org("metered");
    let before = stack.create_key(&org, &[]);
    let during: Vec<CreatedKey> = (0..4).map(|_| stack.create_key(&org, &[])).collect();
    let after = stack.create_key(&org, &[]);
    let mut counts = BTreeMap::new();
    stack
        .gateway
        .wait_for_status("/", &before.key, 200, poll::DEADLINE);
    // One backend: its route, for every path, is named after it.
    count_request(&mut counts, &org, &before, "api-service", "2xx");
    wait_for_events(&kafka, &counts);
    // Acknowledged too, so no batch of before the outage is retried during it.
    poll::eventually(
        "the backlog published",
        poll::DEADLINE,
        || stack.keysync.metric("keysync_usage_export_backlog", &[]),
        |held| *held == 0.0,
    );

    // The broker goes away: the gateway answers, the flushes are stored, and the events
    // beyond the backlog of two are dropped, counted and logged.
    kafka.stop();
    let log_offset = stack.keysync.process.log_len();
    let flush_failures = stack.gateway.stat("usage_flush_failed");
    for round in 0..3 {
        for key in &during {
            for _ in 0..=round {
                assert_eq!(stack.gateway.get_with_key("/orders", &key.key).status, 200);
                count_request(&mut counts, &org, key, "api-service", "2xx");
            }
        }
        let flushes = stack.gateway.stat("usage_flushes_ok");
        stack
            .gateway
            .wait_for_stat("usage_flushes_ok", poll::DEADLINE, |n| n > flushes);
    }
    let keys: Vec<(&str, &CreatedKey)> = std::iter::once(&before)
        .chain(&during)
        .chain([&after])
        .map(|key| (org.as_str(), key))
        .collect();
    let served_endpoints = grouped(&as_sums(&counts), "endpoint");
    poll::within(Duration::from_secs(30), Duration::from_millis(250), || {
        let rollups = requests(&rollup_sums(&stack.database_url, &keys, "endpoint"));
        if rollups == requests(&served_endpoints) {
            Ok(())
        } else {
            Err(rollups)
        }
    })
    .unwrap_or_else(|last| panic!("the rollups never reached {counts:?}; last {last:?}"));
    poll::eventually(
        "dropped events counted",
        poll::DEADLINE,
        || {
            stack
                .keysync
                .metric("keysync_usage_export_dropped_total", &[])
        },
        |dropped| *dropped > 0.0,
    );
    stack.keysync.process.wait_for_log_after(
        log_offset,
        "usage export backlog full (2 events",
        poll::DEADLINE,
    );
    poll::eventually(
        "failed batches counted",
        poll::DEADLINE,
        || {
            stack
                .keysync
                .metric("keysync_usage_export_failed_batches_total", &[])
        },
        |failed| *failed > 0.0,
    );
    assert!(stack.keysync.metric("keysync_usage_export_backlog", &[]) <= 2.0);
    assert_eq!(stack.gateway.stat("usage_flush_failed"), flush_failures);

    // Back, empty (memory storage): the topic is created again, the backlog kept through
    // the outage is published, and later events come.
    kafka.start_again();
    kafka.create_topic(TOPIC, 1);
    poll::eventually(
        "the backlog published",
        EXPORT_DEADLINE,
        || stack.keysync.metric("keysync_usage_export_backlog", &[]),
        |held| *held == 0.0,
    );
    let dropped = stack
        .keysync
        .metric("keysync_usage_export_dropped_total", &[]);
    for _ in 0..3 {
        assert_eq!(
            stack.gateway.get_with_key("/orders", &after.key).status,
            200
        );
    }
    let after_at = (
        org.clone(),
        after.key_id.clone(),
        "api-service".to_string(),
        "2xx".to_string(),
    );
    let records = poll::within(EXPORT_DEADLINE, Duration::from_millis(250), || {
        let records = kafka.records(TOPIC);
        if requests(&event_sums(&records)).get(&after_at) == Some(&3) {
            Ok(records)
        } else {
            Err(requests(&event_sums(&records)))
        }
    })
    .unwrap_or_else(|last| panic!("no events after the broker came back; last {last:?}"));
    check_envelopes(&records, &BTreeMap::new());
    // The new topic holds the backlog kept through the outage (two events of the keys
    // used meanwhile) and what came after.
    let during_events = records
        .iter()
        .filter(|record| {
            let key_id = record.json()["data"]["key_id"].clone();
            during.iter().any(|key| key_id == key.key_id.as_str())
        })
        .count();
    assert_eq!(during_events, 2, "events of the outage");
    assert_eq!(
        stack
            .keysync
            .metric("keysync_usage_export_dropped_total", &[]),
        dropped,
        "nothing dropped once the broker was back"
    );
}

#[test]
fn quota_alerts_go_out_on_the_export_once_each() {
    let kafka = TestKafka::start();
    kafka.create_topic(TOPIC, 1);
    let brokers = kafka.brokers();
    let stack = Stack::start_with(
        &[("KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS", &brokers)],
        |options| options.sync_config = SYNC_WITH_USAGE.into(),
    );
    let org = stack.create_org("alerted");
    let key = stack.create_key(&org, &[]);
    stack
        .gateway
        .wait_for_status("/", &key.key, 200, poll::DEADLINE);
    let output = keysync::cli(
        &stack.database_url,
        &["orgs", "set-quota", &org, "--monthly", "10"],
    );
    assert!(output.status.success(), "{output:?}");
    // 9 of 10 (one before the quota): 80% crossed.
    for _ in 0..8 {
        assert_eq!(stack.gateway.get_with_key("/orders", &key.key).status, 200);
    }
    let alerts_on_topic = |at_least: usize| {
        poll::within(EXPORT_DEADLINE, poll::INTERVAL, || {
            let alerts: Vec<Value> = kafka
                .records(TOPIC)
                .iter()
                .map(ConsumedRecord::json)
                .filter(|event| event["type"] == "io.keysync.quota.threshold.v1")
                .collect();
            if alerts.len() >= at_least {
                Ok(alerts)
            } else {
                Err(alerts)
            }
        })
        .unwrap_or_else(|seen| panic!("fewer than {at_least} alerts on the topic: {seen:?}"))
    };
    let first = alerts_on_topic(1);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["data"]["threshold_percent"], 80);
    // Then past the quota: 100%.
    for _ in 0..6 {
        let status = stack.gateway.get_with_key("/orders", &key.key).status;
        assert!(status == 200 || status == 429, "{status}");
    }
    let alerts = alerts_on_topic(2);
    assert_eq!(alerts.len(), 2, "once each: {alerts:?}");
    let thresholds: BTreeSet<i64> = alerts
        .iter()
        .map(|event| {
            event["data"]["threshold_percent"]
                .as_i64()
                .expect("threshold")
        })
        .collect();
    assert_eq!(thresholds, BTreeSet::from([80, 100]));
    for event in &alerts {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["subject"], org.as_str());
        assert_eq!(event["data"]["org_id"], org.as_str());
        assert_eq!(event["data"]["subject_kind"], "org");
        assert_eq!(event["data"]["key_id"], Value::Null);
        assert_eq!(event["data"]["monthly"], 10);
        assert!(
            event["data"]["used"].as_i64().expect("used") >= 8,
            "{event}"
        );
    }
}

#[test]
fn an_anomaly_alert_goes_out_on_the_export_once() {
    let kafka = TestKafka::start();
    kafka.create_topic(TOPIC, 1);
    let brokers = kafka.brokers();
    let stack = Stack::start_with(
        &[
            ("KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS", &brokers),
            ("KEYSYNC_ANOMALY_INTERVAL", "1s"),
            ("KEYSYNC_ANOMALY_SPIKE_FLOOR", "50"),
        ],
        |options| options.sync_config = SYNC_WITH_USAGE.into(),
    );
    let org = stack.create_org("surging");
    let key = stack.create_key(&org, &[]);
    // Five weeks of 2 requests an hour, up to the hour before this one: a spike is 50
    // requests in an hour (the floor; five times the median is 10).
    stack.postgres.psql(
        database_of(&stack.database_url),
        &format!(
            "INSERT INTO usage_hourly (hour, org_id, key_id, outcome, requests, duration_us, \
                 le_10ms, le_100ms, le_1s, over_1s, request_bytes, response_bytes) \
             SELECT h, '{org}', '{}', 2, 2, 0, 0, 0, 0, 0, 0, 0 \
             FROM generate_series(date_trunc('hour', now()) - interval '5 weeks', \
                                  date_trunc('hour', now()) - interval '1 hour', \
                                  interval '1 hour') h",
            key.key_id
        ),
    );
    let anomalies = || -> Vec<ConsumedRecord> {
        kafka
            .records(TOPIC)
            .into_iter()
            .filter(|record| record.json()["type"] == "io.keysync.anomaly.v1")
            .collect()
    };
    stack
        .gateway
        .wait_for_status("/", &key.key, 200, poll::DEADLINE);
    // Real traffic through the gateway until its flushes take the running hour past the
    // threshold and the next evaluation raises the spike.
    let raised = poll::within(EXPORT_DEADLINE, Duration::from_millis(500), || {
        for _ in 0..10 {
            assert_eq!(stack.gateway.get_with_key("/orders", &key.key).status, 200);
        }
        let raised = anomalies();
        if raised.is_empty() {
            Err(())
        } else {
            Ok(raised)
        }
    })
    .unwrap_or_else(|()| panic!("no anomaly event on the topic"));
    let record = &raised[0];
    let event = record.json();
    assert_eq!(event["specversion"], "1.0", "{event}");
    assert_eq!(event["source"], "keysync/anomaly", "{event}");
    assert_eq!(event["subject"], org.as_str(), "{event}");
    assert_eq!(event["datacontenttype"], "application/json", "{event}");
    assert!(
        is_rfc3339_millis(event["time"].as_str().expect("time")),
        "{event}"
    );
    assert_eq!(record.key.as_deref(), Some(org.as_bytes()), "{event}");
    assert_eq!(
        record.headers.get("content-type").map(Vec::as_slice),
        Some(&b"application/cloudevents+json"[..]),
        "{event}"
    );
    let data = &event["data"];
    assert_eq!(data["org_id"], org.as_str(), "{event}");
    assert_eq!(data["kind"], "spike", "{event}");
    let hour = data["hour"].as_str().expect("hour");
    assert!(
        is_rfc3339_millis(hour) && hour.ends_with(":00:00.000Z"),
        "{event}"
    );
    assert_eq!(data["baseline"], 2.0, "{event}");
    assert_eq!(data["threshold"], 50.0, "{event}");
    assert_eq!(data["baseline_weeks"], 4, "{event}");
    let observed = data["observed"].as_f64().expect("observed");
    assert!(observed >= 50.0, "{event}");
    assert_eq!(data["requests"].as_f64(), Some(observed), "{event}");
    assert_eq!(data["matching_requests"], data["requests"], "{event}");
    assert!(data["hour_complete"].is_boolean(), "{event}");

    // keysync alerts lists it under the same id.
    let listed = keysync::cli_json(&stack.database_url, &["alerts", "--org-id", &org]);
    let listed = listed.as_array().expect("a list");
    assert!(
        listed
            .iter()
            .any(|alert| alert["event_id"] == event["id"] && alert["kind"] == "spike"),
        "{listed:?}"
    );

    // Evaluations go on every second; the alert is not raised again.
    let evaluations = || {
        stack
            .keysync
            .metric("keysync_anomaly_evaluations_total", &["result=\"ok\""])
    };
    let before = evaluations();
    poll::eventually("three more evaluations", poll::DEADLINE, evaluations, |n| {
        *n >= before + 3.0
    });
    let spikes_of_the_hour: Vec<Value> = anomalies()
        .iter()
        .map(ConsumedRecord::json)
        .filter(|later| later["data"]["hour"] == hour)
        .collect();
    assert_eq!(spikes_of_the_hour.len(), 1, "{spikes_of_the_hour:?}");
    assert_eq!(spikes_of_the_hour[0]["id"], event["id"]);
    assert!(
        stack
            .keysync
            .metric("keysync_anomaly_alerts_total", &["kind=\"spike\""])
            >= 1.0
    );
}
