//! The Flink job of `analytics/` on a real Flink (PyFlink's local mini-cluster on the
//! JVM) against the Kafka-protocol broker (tansu), fed by a real keysync and gateway:
//! its per-minute aggregates add up to what `keysync usage` reports, value by value,
//! and a spike of real traffic against a history seeded both in keysync's rollup and
//! on the topic (some of it sent twice, as the export may) raises exactly one alert, the
//! same alert (id, hour, baseline) keysync's own detector raises.
//!
//! Slow (a JVM and Python workers start on a shared 2-core machine: about two minutes),
//! so not part of `cargo test`: `make analytics-e2e` runs it (CI does, from `.ci/run`).

// Helpers outside `#[test]` functions check records too: a missing field is a failure.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// A usage event as keysync's export writes it: `requests` 2xx of `key_id` on the
/// endpoint `-`, cut at `window_end_ms`; `n` makes its id.
fn usage_event(org: &str, key_id: &str, n: usize, window_end_ms: i64, requests: i64) -> Value {
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
            "org_id": org, "key_id": key_id, "endpoint": "-", "outcome": "2xx",
            "requests": requests, "duration_us": 0, "le_10ms": 0, "le_100ms": 0, "le_1s": 0,
            "over_1s": 0, "request_bytes": 0, "response_bytes": 0,
            "window_start": null, "window_end": time, "instance_id": "seeded-history",
        }
    })
}

/// Five weeks of 2 requests an hour of `org` before `hour` (each in the middle of its
/// hour), ids from `first_id`.
fn history(org: &str, key_id: &str, hour: i64, first_id: usize) -> Vec<(String, Value)> {
    (0..5 * 7 * 24)
        .map(|n| {
            let at = hour - (5 * 7 * 24 - n) * HOUR_MS + HOUR_MS / 2;
            let id = first_id + usize::try_from(n).expect("positive");
            (org.to_string(), usage_event(org, key_id, id, at, 2))
        })
        .collect()
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since.as_millis()).expect("in range")
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
    let now = now_ms();
    let this_hour = now - now % HOUR_MS;
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
    // The export is at least once: three of the baseline hours' events come twice (a
    // batch sent again). Counted twice, they would make the baseline's median 4.
    let mut seeded = Vec::new();
    for (n, event) in history(&surging, &surge_key.key_id, this_hour, 0)
        .into_iter()
        .enumerate()
    {
        let again = [1, 2, 3].iter().any(|week| n == 5 * 7 * 24 - week * 7 * 24);
        if again {
            seeded.push(event.clone());
        }
        seeded.push(event);
    }
    assert_eq!(seeded.len(), 5 * 7 * 24 + 3);
    kafka.produce_events(USAGE_TOPIC, &seeded);

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

/// Organizations of the measurement, each with five weeks of hourly events.
const MEASURED_ORGS: usize = 100;

/// How many usage events a second the job takes on one slot, here: five weeks of an
/// event an hour for each of 100 organizations (84,000 events, in time order, so that
/// every hour of every organization is judged whole as the stream's time passes it),
/// then a spike of the first one in this hour, whose alert marks the end. A warm-up
/// organization, five weeks earlier, first brings the job up and its Python workers
/// warm. Prints the figure (docs/analytics.md).
#[test]
#[ignore = "a measurement: cargo test -p keysync-e2e --test analytics -- --ignored --nocapture events_a_second"]
fn the_jobs_events_a_second() {
    let kafka = TestKafka::start();
    for topic in [USAGE_TOPIC, ALERTS_TOPIC, MINUTES_TOPIC] {
        kafka.create_topic(topic, 1);
    }
    let org = |n: usize| format!("00000000-0000-4000-8000-{n:012}");
    let key = "00000000-0000-4000-8000-00000000ffff";
    let now = now_ms();
    let this_hour = now - now % HOUR_MS;
    let warm_up_hour = this_hour - 6 * 7 * 24 * HOUR_MS;
    let warm_up = org(MEASURED_ORGS);
    let mut events = history(&warm_up, key, warm_up_hour, 1_000_000);
    events.push((
        warm_up.clone(),
        usage_event(&warm_up, key, 2_000_000, warm_up_hour + 60_000, 1_000),
    ));
    kafka.produce_events(USAGE_TOPIC, &events);
    let job = AnalyticsJob::start(
        &kafka.brokers(),
        &[
            ("KEYSYNC_ANALYTICS_USAGE_TOPIC", USAGE_TOPIC),
            ("KEYSYNC_ANALYTICS_ALERTS_TOPIC", ALERTS_TOPIC),
            ("KEYSYNC_ANALYTICS_MINUTES_TOPIC", MINUTES_TOPIC),
        ],
    );
    let started = Instant::now();
    let alerts = |count: usize| {
        poll::within(Duration::from_secs(600), Duration::from_secs(1), || {
            assert!(job.is_running(), "the job ended:\n{}", job.log());
            let raised = anomaly_events(&kafka, ALERTS_TOPIC).len();
            if raised >= count {
                Ok(raised)
            } else {
                Err(raised)
            }
        })
        .unwrap_or_else(|raised| panic!("{raised} alerts of {count}; the job:\n{}", job.log()))
    };
    alerts(1);
    let ready = started.elapsed();

    // Hour by hour, every organization's event of the hour.
    let mut load = Vec::with_capacity(MEASURED_ORGS * 5 * 7 * 24);
    let histories: Vec<Vec<(String, Value)>> = (0..MEASURED_ORGS)
        .map(|n| history(&org(n), key, this_hour, n * 10_000))
        .collect();
    for hour in 0..5 * 7 * 24 {
        for history in &histories {
            load.push(history[hour].clone());
        }
    }
    let first = org(0);
    load.push((
        first.clone(),
        usage_event(&first, key, 3_000_000, this_hour + 60_000, 1_000),
    ));
    let measured = Instant::now();
    kafka.produce_events(USAGE_TOPIC, &load);
    assert_eq!(alerts(2), 2);
    let elapsed = measured.elapsed();
    let rate = (load.len() as f64) / elapsed.as_secs_f64();
    println!(
        "job up and warm (first alert) after {:.1} s; {} events in {:.1} s: {:.0} events a second",
        ready.as_secs_f64(),
        load.len(),
        elapsed.as_secs_f64(),
        rate
    );
}
