//! The Flink job of `analytics/` on a real Flink (PyFlink's local mini-cluster on the
//! JVM) against the Kafka-protocol broker (tansu), fed by a real keysync and gateway:
//! its per-minute aggregates add up to what `keysync usage` reports, value by value,
//! and a spike of real traffic against a history seeded both in keysync's rollup and
//! on the topic raises exactly one alert, the same alert (id, hour, numbers) keysync's
//! own detector raises.
//!
//! Slow (a JVM and Python workers start on a shared 2-core machine: about two minutes),
//! so not part of `cargo test`: `make analytics-e2e` runs it (CI does, from `.ci/run`).

// Helpers outside `#[test]` functions check records too: a missing field is a failure.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat};
use keysync_e2e::analytics_job::AnalyticsJob;
use keysync_e2e::kafka::{ConsumedRecord, TestKafka};
use keysync_e2e::keysync::CreatedKey;
use keysync_e2e::poll;
use keysync_e2e::postgres::database_of;
use keysync_e2e::stack::Stack;
use keysync_e2e::usage_sums::{
    add, as_sums, count_request, counter_of, grouped, requests, rollup_sums, values_of, Counter,
    GroupSums, Sums,
};
use serde_json::{json, Value};

/// The sync service's configuration: usage reported every second.
const SYNC_WITH_USAGE: &str = r#"{"role":"sync","refresh_interval":"2s","max_retry_interval":"1s","usage_flush_interval":"1s"}"#;
const USAGE_TOPIC: &str = "keysync.usage";
const ALERTS_TOPIC: &str = "keysync.analytics.alerts";
const MINUTES_TOPIC: &str = "keysync.analytics.minutes";
/// A JVM, a Flink mini-cluster and its Python workers starting on a busy machine, then
/// the events through it.
const JOB_DEADLINE: Duration = Duration::from_secs(240);
const HOUR_MS: i64 = 3_600_000;
/// The spike floor of both detectors: five times the seeded median (2) is 10, so the
/// floor decides.
const SPIKE_FLOOR: &str = "50";

fn rfc3339(epoch_ms: i64) -> String {
    DateTime::from_timestamp_millis(epoch_ms)
        .expect("a time in range")
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A usage event as keysync's export writes it, for the seeded history.
fn history_event(org: &str, key: &CreatedKey, n: usize, window_end_ms: i64) -> Value {
    let time = rfc3339(window_end_ms);
    json!({
        "specversion": "1.0",
        "id": format!("00000000-0000-8000-8000-{n:012}"),
        "source": "keysync/gateway/seeded-history",
        "type": "io.keysync.usage.v1",
        "subject": org,
        "time": time,
        "datacontenttype": "application/json",
        "data": {
            "org_id": org, "key_id": key.key_id, "endpoint": "-", "outcome": "2xx",
            "requests": 2, "duration_us": 0, "le_10ms": 0, "le_100ms": 0, "le_1s": 0,
            "over_1s": 0, "request_bytes": 0, "response_bytes": 0,
            "window_start": null, "window_end": time, "instance_id": "seeded-history",
        }
    })
}

/// The job's per-minute aggregates: the last record of each key (an upsert topic),
/// added up by (org, key, endpoint, outcome) over the minutes.
fn minute_sums(kafka: &TestKafka) -> Sums {
    let mut latest: BTreeMap<Vec<u8>, Value> = BTreeMap::new();
    for record in kafka.records(MINUTES_TOPIC) {
        let key = record.key.clone().expect("an upsert record has a key");
        match record.value {
            Some(_) => latest.insert(key, record.json()),
            None => latest.remove(&key),
        };
    }
    let mut sums = Sums::new();
    for row in latest.values() {
        add(&mut sums, counter_of(row), values_of(row));
    }
    sums
}

/// One request of `key` on the route `endpoint`, answered 200, and counted.
fn served_ok(
    stack: &Stack,
    served: &mut BTreeMap<Counter, i64>,
    org: &str,
    key: &CreatedKey,
    endpoint: &str,
) {
    let status = stack
        .gateway
        .get_with_key(&format!("/{endpoint}/list"), &key.key)
        .status;
    assert_eq!(status, 200, "{endpoint}");
    count_request(served, org, key, endpoint, "2xx");
}

/// `sums` without the seeded history (endpoint `-`: every real route is named).
fn without_history(sums: GroupSums) -> GroupSums {
    sums.into_iter()
        .filter(|((_, _, endpoint), _)| endpoint != "-")
        .collect()
}

fn anomaly_events(kafka: &TestKafka, topic: &str) -> Vec<ConsumedRecord> {
    kafka
        .records(topic)
        .into_iter()
        .filter(|record| record.json()["type"] == "io.keysync.anomaly.v1")
        .collect()
}

#[test]
#[ignore = "needs a JVM and PyFlink (make analytics-deps): make analytics-e2e runs it"]
fn the_flink_job_adds_up_what_keysync_counts_and_raises_a_seeded_spike_once() {
    let kafka = TestKafka::start();
    for topic in [USAGE_TOPIC, ALERTS_TOPIC, MINUTES_TOPIC] {
        kafka.create_topic(topic, 1);
    }
    let brokers = kafka.brokers();
    // Two named routes to the echo backend; keysync judges anomalies every second.
    let stack = Stack::start_with(
        &[
            ("KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS", &brokers),
            ("KEYSYNC_ANOMALY_INTERVAL", "1s"),
            ("KEYSYNC_ANOMALY_SPIKE_FLOOR", SPIKE_FLOOR),
        ],
        |options| {
            options.sync_config = SYNC_WITH_USAGE.into();
            options.name_routes(&["orders", "search"]);
        },
    );
    let steady = stack.create_org("steady");
    let key = stack.create_key(&steady, &[]);
    let limited = stack.create_key(&steady, &[]);
    stack.set_key_limit(&limited.key_id, &["--rpm", "3", "--burst", "0"]);
    let elsewhere = stack.create_key(&steady, &["--allow-cidr", "203.0.113.0/24"]);
    let surging = stack.create_org("surging");
    let surge_key = stack.create_key(&surging, &[]);

    // Five weeks of 2 requests an hour for `surging`, up to the hour before this one:
    // in keysync's rollup (its detector's baseline) and as events on the topic (the
    // job's: it has no PostgreSQL, its baseline is what it read).
    let now_ms = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("in range");
    let this_hour = now_ms - now_ms % HOUR_MS;
    let first_hour = this_hour - 5 * 7 * 24 * HOUR_MS;
    stack.postgres.psql(
        database_of(&stack.database_url),
        &format!(
            "INSERT INTO usage_hourly (hour, org_id, key_id, outcome, requests, duration_us, \
                 le_10ms, le_100ms, le_1s, over_1s, request_bytes, response_bytes) \
             SELECT h, '{surging}', '{}', 2, 2, 0, 0, 0, 0, 0, 0, 0 \
             FROM generate_series(to_timestamp({}), to_timestamp({}), interval '1 hour') h",
            surge_key.key_id,
            first_hour / 1000,
            (this_hour - HOUR_MS) / 1000,
        ),
    );
    let history: Vec<(String, Value)> = (first_hour..this_hour)
        .step_by(usize::try_from(HOUR_MS).expect("in range"))
        .enumerate()
        .map(|(n, hour)| {
            (
                surging.clone(),
                history_event(&surging, &surge_key, n, hour + HOUR_MS / 2),
            )
        })
        .collect();
    assert_eq!(history.len(), 5 * 7 * 24);
    kafka.produce_events(USAGE_TOPIC, &history);

    let job = AnalyticsJob::start(
        &brokers,
        &[
            ("KEYSYNC_ANALYTICS_USAGE_TOPIC", USAGE_TOPIC),
            ("KEYSYNC_ANALYTICS_ALERTS_TOPIC", ALERTS_TOPIC),
            ("KEYSYNC_ANALYTICS_MINUTES_TOPIC", MINUTES_TOPIC),
            ("KEYSYNC_ANOMALY_SPIKE_FLOOR", SPIKE_FLOOR),
        ],
    );

    // `steady`: traffic on both routes, some of it refused; too new to be judged.
    let mut served = BTreeMap::new();
    stack
        .gateway
        .wait_for_status("/orders/", &key.key, 200, poll::DEADLINE);
    count_request(&mut served, &steady, &key, "orders", "2xx");
    for _ in 0..6 {
        for n in 0..5 {
            let endpoint = if n < 3 { "orders" } else { "search" };
            served_ok(&stack, &mut served, &steady, &key, endpoint);
        }
        let outcome = match stack
            .gateway
            .get_with_key("/orders/list", &limited.key)
            .status
        {
            200 => "2xx",
            429 => "rate_limited",
            other => panic!("the limited key got {other}"),
        };
        count_request(&mut served, &steady, &limited, "orders", outcome);
        let status = stack
            .gateway
            .get_with_key("/search/list", &elsewhere.key)
            .status;
        assert_eq!(status, 403);
        count_request(&mut served, &steady, &elsewhere, "search", "policy_denied");
    }
    // `surging`: real traffic until keysync's own detector sees the spike.
    stack
        .gateway
        .wait_for_status("/orders/", &surge_key.key, 200, poll::DEADLINE);
    count_request(&mut served, &surging, &surge_key, "orders", "2xx");
    let keysyncs_alert = poll::within(JOB_DEADLINE, Duration::from_millis(500), || {
        for _ in 0..10 {
            served_ok(&stack, &mut served, &surging, &surge_key, "orders");
        }
        anomaly_events(&kafka, USAGE_TOPIC).pop().ok_or(())
    })
    .unwrap_or_else(|()| panic!("keysync raised no alert; the job:\n{}", job.log()));
    let keysyncs_alert = keysyncs_alert.json();

    // The job raises the same alert: same id (organization, kind, hour), same numbers
    // of the baseline.
    let raised = poll::within(JOB_DEADLINE, Duration::from_secs(1), || {
        assert!(job.is_running(), "the job ended:\n{}", job.log());
        let raised = anomaly_events(&kafka, ALERTS_TOPIC);
        if raised.is_empty() {
            Err(())
        } else {
            Ok(raised)
        }
    })
    .unwrap_or_else(|()| panic!("the job raised no alert; its log:\n{}", job.log()));
    let record = &raised[0];
    let event = record.json();
    assert_eq!(record.key.as_deref(), Some(surging.as_bytes()), "{event}");
    assert_eq!(
        record.headers.get("content-type").map(Vec::as_slice),
        Some(&b"application/cloudevents+json"[..]),
        "{event}"
    );
    assert_eq!(event["specversion"], "1.0", "{event}");
    assert_eq!(event["source"], "keysync/anomaly", "{event}");
    assert_eq!(event["type"], "io.keysync.anomaly.v1", "{event}");
    assert_eq!(event["subject"], surging.as_str(), "{event}");
    assert_eq!(
        event["id"], keysyncs_alert["id"],
        "{event} vs {keysyncs_alert}"
    );
    let data = &event["data"];
    for field in [
        "org_id",
        "kind",
        "hour",
        "baseline",
        "threshold",
        "baseline_weeks",
    ] {
        assert_eq!(
            data[field], keysyncs_alert["data"][field],
            "{field}: {event} vs {keysyncs_alert}"
        );
    }
    assert_eq!(data["kind"], "spike", "{event}");
    assert_eq!(data["hour"], rfc3339(this_hour).as_str(), "{event}");
    assert_eq!(data["hour_complete"], false, "{event}");
    assert_eq!(data["baseline"], 2.0, "{event}");
    assert_eq!(data["threshold"], 50.0, "{event}");
    let observed = data["observed"].as_f64().expect("observed");
    assert!(observed >= 50.0, "{event}");
    assert_eq!(data["requests"].as_f64(), Some(observed), "{event}");

    // More of the spike after the alert: once the job has counted it (its minutes
    // show every request keysync stored), still the one alert, and none for `steady`.
    for _ in 0..20 {
        served_ok(&stack, &mut served, &surging, &surge_key, "orders");
    }
    // keysync's rollups first hold every request served (the last flushes stored) ...
    let keys = [
        (steady.as_str(), &key),
        (steady.as_str(), &limited),
        (steady.as_str(), &elsewhere),
        (surging.as_str(), &surge_key),
    ];
    let served_by_endpoint = grouped(&as_sums(&served), "endpoint");
    let by_endpoint = poll::within(poll::DEADLINE, Duration::from_millis(250), || {
        let rollups = without_history(rollup_sums(&stack.database_url, &keys, "endpoint"));
        if requests(&rollups) == requests(&served_by_endpoint) {
            Ok(rollups)
        } else {
            Err(requests(&rollups))
        }
    })
    .unwrap_or_else(|last| panic!("usage never reached {served_by_endpoint:?}; last {last:?}"));
    let steady_keys = &keys[..3];
    let by_status = rollup_sums(&stack.database_url, steady_keys, "status");
    assert_eq!(
        requests(&by_status),
        requests(&grouped(&as_sums(&served), "status"))
            .into_iter()
            .filter(|((org, ..), _)| org == &steady)
            .collect::<BTreeMap<_, _>>()
    );
    // ... then the job's minutes add up to them, value by value (`steady` by endpoint
    // and by outcome; `surging`'s real traffic by endpoint, its seeded history aside).
    let job_sums = poll::within(JOB_DEADLINE, Duration::from_secs(1), || {
        assert!(job.is_running(), "the job ended:\n{}", job.log());
        let sums: Sums = minute_sums(&kafka)
            .into_iter()
            .filter(|((_, _, endpoint, _), _)| endpoint != "-")
            .collect();
        let steady_sums: Sums = sums
            .iter()
            .filter(|((org, ..), _)| org == &steady)
            .map(|(at, values)| (at.clone(), *values))
            .collect();
        if grouped(&sums, "endpoint") == by_endpoint && grouped(&steady_sums, "status") == by_status
        {
            Ok(sums)
        } else {
            Err(requests(&sums))
        }
    })
    .unwrap_or_else(|last| {
        panic!(
            "the job's minutes never added up to keysync's {:?}; last {last:?}",
            requests(&by_endpoint)
        )
    });
    // Refusals are counted under their own outcomes, not as served requests.
    let outcomes: Vec<&str> = job_sums
        .keys()
        .map(|(.., outcome)| outcome.as_str())
        .collect();
    assert!(outcomes.contains(&"policy_denied"), "{outcomes:?}");
    let alerts = anomaly_events(&kafka, ALERTS_TOPIC);
    assert_eq!(
        alerts.len(),
        1,
        "{:?}",
        alerts.iter().map(ConsumedRecord::json).collect::<Vec<_>>()
    );
}
