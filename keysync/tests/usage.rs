//! Usage metering against a real PostgreSQL and a real `keysync serve`: flushes of
//! cumulative counters through the gRPC `ReportUsage` call add their increments exactly
//! once (repeats add nothing, instances add up, a flush during an outage is refused and
//! its retry counted once), per endpoint too; the monthly partitions are kept ahead and
//! dropped after the retention; the endpoint migration keeps the rows it finds;
//! `keysync usage` and `GET /v1/orgs/{id}/usage` report the rollup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use common::serve::*;
use common::usage_flush::*;
use common::*;
use keysync::usage::partitions::{self, Month};
use keysync_proto::v1::{ReportUsageResponse, UsageCounter};
use serde_json::Value;
use tonic::Code;
use uuid::Uuid;

const TOKEN: &str = "usage-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushes_add_their_increments_once_and_instances_add_up() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "main", &[]);
    let serve = start_serve(&url, &[]).await;
    let channel = &serve.channel;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());

    let first = flush(
        a,
        vec![
            counter(&org, &key.key_id, 2, 10),
            counter(&org, &key.key_id, 6, 1),
        ],
    );
    assert_eq!(report(channel, first.clone()).await.unwrap(), 2);
    assert_eq!(total(&url, &org), 11);
    // The same flush again (a retry whose answer was lost): nothing more.
    assert_eq!(report(channel, first).await.unwrap(), 2);
    assert_eq!(total(&url, &org), 11);
    // The counters grew by 5 and 0.
    let grown = flush(
        a,
        vec![
            counter(&org, &key.key_id, 2, 15),
            counter(&org, &key.key_id, 6, 1),
        ],
    );
    report(channel, grown.clone()).await.unwrap();
    assert_eq!(total(&url, &org), 16);
    // Another instance counts on its own.
    report(channel, flush(b, vec![counter(&org, &key.key_id, 2, 7)]))
        .await
        .unwrap();
    assert_eq!(total(&url, &org), 23);
    // An older flush of instance a arriving late adds nothing, and does not lower what
    // is stored: the next real flush adds only its own growth.
    report(channel, flush(a, vec![counter(&org, &key.key_id, 2, 12)]))
        .await
        .unwrap();
    assert_eq!(total(&url, &org), 23);
    report(channel, flush(a, vec![counter(&org, &key.key_id, 2, 16)]))
        .await
        .unwrap();
    assert_eq!(total(&url, &org), 24);

    // Every sum, not only requests, is the increments' sum.
    let by_status = usage_json(&url, &["--org-id", &org, "--since", "1d", "--by", "status"]);
    let rows = by_status["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{by_status}");
    assert_eq!(rows[0]["outcome"], "2xx");
    assert_eq!(rows[0]["requests"], 23);
    assert_eq!(rows[0]["duration_us"], 46_000);
    assert_eq!(rows[0]["le_10ms"], 23);
    assert_eq!(rows[0]["response_bytes"], 23_000);
    assert_eq!(rows[1]["outcome"], "rate_limited");
    assert_eq!(rows[1]["requests"], 1);

    // Keys keysync never issued add nothing (they are counted as refused); the
    // instance's totals of requests no key accounts for are stored.
    let (ghost_org, ghost_key) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    let mut with_totals = flush(Uuid::new_v4(), vec![counter(&ghost_org, &ghost_key, 5, 3)]);
    with_totals.unattributed_requests = 40;
    with_totals.dropped_requests = 2;
    assert_eq!(report(channel, with_totals).await.unwrap(), 1);
    let stored = sql(
        &postgres,
        &url,
        &format!("SELECT count(*) FROM usage_hourly WHERE org_id = '{ghost_org}'"),
    );
    assert_eq!(stored, "0");
    assert_eq!(
        sql(
            &postgres,
            &url,
            "SELECT sum(unattributed_requests) || ' ' || sum(dropped_requests) FROM usage_gateway_hourly"
        ),
        "40 2"
    );

    // Malformed flushes are refused whole.
    let mut short = flush(a, vec![counter(&org, &key.key_id, 2, 100)]);
    short.instance_id = vec![1; 8];
    let mut outcome = flush(a, vec![counter(&org, &key.key_id, 9, 100)]);
    outcome.counters.push(counter(&org, &key.key_id, 2, 100));
    let mut buckets = flush(a, vec![counter(&org, &key.key_id, 2, 100)]);
    buckets.counters[0].duration_buckets.pop();
    let twice = flush(
        a,
        vec![
            counter(&org, &key.key_id, 2, 100),
            counter(&org, &key.key_id, 2, 100),
        ],
    );
    for bad in [short, outcome, buckets, twice] {
        let status = report(channel, bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    assert_eq!(total(&url, &org), 24);

    let (_, metrics) = http_get(serve.http, "/metrics");
    assert_eq!(
        metric(&metrics, "keysync_usage_flushes_total{result=\"ok\"}"),
        7.0
    );
    assert_eq!(
        metric(&metrics, "keysync_usage_flushes_total{result=\"invalid\"}"),
        4.0
    );
    assert_eq!(metric(&metrics, "keysync_usage_requests_total"), 24.0);
    assert_eq!(
        metric(
            &metrics,
            "keysync_usage_refused_requests_total{reason=\"unknown_key\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(&metrics, "keysync_usage_flush_duration_seconds_count"),
        11.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_flush_is_one_transaction_of_a_few_statements() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Big");
    // As many keys as the largest flush has counters, made in one statement.
    sql(
        &postgres,
        &url,
        &format!(
            "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix) \
             SELECT gen_random_uuid(), '{org}', 'k' || i, sha256(i::text::bytea), 'sk_test_' \
             FROM generate_series(1, {}) AS i",
            keysync::usage::flush::MAX_COUNTERS
        ),
    );
    let keys = sql(
        &postgres,
        &url,
        &format!("SELECT string_agg(id::text, ',') FROM api_keys WHERE org_id = '{org}'"),
    );
    let serve = start_serve(&url, &[]).await;
    let counters: Vec<UsageCounter> = keys
        .split(',')
        .map(|key| counter(&org, key, 2, 1))
        .collect();
    assert_eq!(counters.len(), keysync::usage::flush::MAX_COUNTERS);
    let request = flush(Uuid::new_v4(), counters);
    let started = Instant::now();
    assert_eq!(
        report(&serve.channel, request.clone()).await.unwrap(),
        50_000
    );
    let took = started.elapsed();
    assert_eq!(total(&url, &org), 50_000);
    report(&serve.channel, request).await.unwrap();
    assert_eq!(total(&url, &org), 50_000);
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_token_guards_report_usage() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let serve = start_serve(&url, &[("KEYSYNC_GRPC_TOKEN", TOKEN)]).await;
    let key = create_key(&url, &org, "main", &[]).key_id;
    let request = flush(Uuid::new_v4(), vec![counter(&org, &key, 2, 4)]);
    let refused: Result<ReportUsageResponse, _> =
        call_with(&serve.channel, REPORT, request.clone(), &[]).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(total(&url, &org), 0);
    let bearer = format!("Bearer {TOKEN}");
    let answer: ReportUsageResponse = call_with(
        &serve.channel,
        REPORT,
        request,
        &[("authorization", &bearer)],
    )
    .await
    .unwrap();
    assert_eq!(answer.accepted, 1);
    assert_eq!(total(&url, &org), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_postgres_cannot_take_is_refused_and_its_retry_counted_once() {
    let (mut postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "main", &[]).key_id;
    let serve = start_serve(&url, &[("KEYSYNC_DB_TIMEOUT", "1s")]).await;
    let instance = Uuid::new_v4();
    report(
        &serve.channel,
        flush(instance, vec![counter(&org, &key, 2, 5)]),
    )
    .await
    .unwrap();

    postgres.stop();
    let during = flush(instance, vec![counter(&org, &key, 2, 9)]);
    let status = report(&serve.channel, during.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // What PostgreSQL said stays in keysync's log: the caller gets a fixed message.
    assert_eq!(
        status.message(),
        "cannot store usage now; send the counters again later"
    );
    postgres.start_again();

    // The gateway retries the flush it could not deliver (or a later one) until it goes
    // through.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match report(&serve.channel, during.clone()).await {
            Ok(_) => break,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(Instant::now() < deadline, "no flush taken after the outage");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    report(&serve.channel, during).await.unwrap();
    assert_eq!(total(&url, &org), 9);
    let (_, metrics) = http_get(serve.http, "/metrics");
    assert!(
        metric(
            &metrics,
            "keysync_usage_flushes_total{result=\"unavailable\"}"
        ) >= 1.0
    );
    assert_eq!(metric(&metrics, "keysync_usage_requests_total"), 9.0);
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

async fn partition_names(url: &str) -> Vec<String> {
    let pool = keysync::database::connect(url).await.unwrap();
    partitions::partitions(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, name)| name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_kept_ahead_and_dropped_after_the_retention() {
    let (postgres, url) = migrated_database();
    // serve creates this month's and the next three months' partitions on start.
    let now = Utc::now();
    let current = Month::of(now);
    let _serve = start_serve(&url, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !partition_names(&url)
        .await
        .contains(&current.plus(3).partition())
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            partition_names(&url).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let pool = keysync::database::connect(&url).await.unwrap();
    // A month with rows in the default partition: its partition takes them over.
    let later = current.plus(8);
    let hour = later.start() + TimeDelta::hours(5);
    sql(
        &postgres,
        &url,
        &format!(
            "INSERT INTO usage_hourly VALUES ('{}', '{}', '{}', 2, 3, 0, 3, 0, 0, 0, 0, 0)",
            hour.to_rfc3339(),
            Uuid::new_v4(),
            Uuid::new_v4()
        ),
    );
    assert_eq!(
        sql(&postgres, &url, "SELECT count(*) FROM usage_hourly_default"),
        "1"
    );
    let done = partitions::maintain(&pool, later.start() - TimeDelta::days(40), 13)
        .await
        .unwrap();
    assert!(done.created.contains(&later.partition()), "{done:?}");
    assert_eq!(done.moved_rows, 1);
    assert_eq!(
        sql(&postgres, &url, "SELECT count(*) FROM usage_hourly_default"),
        "0"
    );
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!("SELECT sum(requests) FROM {}", later.partition())
        ),
        "3"
    );

    // An old month's partition, and an instance not seen for long.
    let old = Month::of(at("2020-01-15T00:00:00Z"));
    sql(
        &postgres,
        &url,
        &format!(
            "CREATE TABLE {} PARTITION OF usage_hourly FOR VALUES FROM ('2020-01-01 00:00Z') TO ('2020-02-01 00:00Z')",
            old.partition()
        ),
    );
    let stale = Uuid::new_v4();
    sql(
        &postgres,
        &url,
        &format!(
            "INSERT INTO usage_instance_totals (instance_id, last_seen) VALUES ('{stale}', now() - interval '8 days'); \
             INSERT INTO usage_instances VALUES ('{stale}', '{}', '{}', 2, 1, 1, 1, 0, 0, 0, 0, 0); \
             INSERT INTO quota_leases (instance_id, subject_kind, subject_id, period_start, granted, updated_at) \
                 VALUES ('{stale}', 1, '{}', date_trunc('month', now()), 5, now() - interval '8 days'), \
                        ('{}', 1, '{}', date_trunc('month', now()), 5, now()); \
             INSERT INTO quota_usage (subject_kind, subject_id, period_start, used) \
                 VALUES (1, '{}', '2020-01-01 00:00Z', 7), (1, '{}', date_trunc('month', now()), 3)",
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4()
        ),
    );
    let done = partitions::maintain(&pool, now, 13).await.unwrap();
    assert_eq!(done.dropped, vec![old.partition()]);
    assert_eq!(done.counters_pruned, 1);
    assert_eq!(done.leases_pruned, 1, "the live lease stays");
    assert_eq!(
        sql(
            &postgres,
            &url,
            "SELECT string_agg(used::text, ',') FROM quota_usage"
        ),
        "3",
        "the quota use of a period older than the retention goes, this period's stays"
    );
    let names = partition_names(&url).await;
    assert!(!names.contains(&old.partition()), "{names:?}");
    assert!(names.contains(&current.partition()), "{names:?}");
    // 13 months back is kept, 14 is not.
    let kept = partitions::maintain(&pool, Month::of(at("2021-01-10T00:00:00Z")).start(), 13)
        .await
        .unwrap();
    assert!(kept.dropped.is_empty(), "{kept:?}");
    assert_eq!(
        sql(&postgres, &url, "SELECT count(*) FROM usage_instances"),
        "0"
    );
}

/// Rows straight into the rollup: (hour, key, outcome, requests).
fn seed(
    postgres: &keysync_e2e::TestPostgres,
    url: &str,
    org: &str,
    rows: &[(&str, &str, i16, i64)],
) {
    for (hour, key, outcome, requests) in rows {
        sql(
            postgres,
            url,
            &format!(
                "INSERT INTO usage_hourly VALUES ('{hour}', '{org}', '{key}', {outcome}, {requests}, \
                 {}, {requests}, 0, 0, 0, {}, {})",
                requests * 1500,
                requests * 10,
                requests * 20
            ),
        );
    }
}

#[test]
fn the_usage_command_groups_by_hour_day_month_key_and_status() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let other = create_org(&url, "Other");
    let (k1, k2) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    seed(
        &postgres,
        &url,
        &org,
        &[
            ("2026-01-31T22:00:00Z", &k1, 2, 5),
            ("2026-01-31T23:00:00Z", &k1, 4, 2),
            ("2026-02-01T00:00:00Z", &k2, 2, 7),
            ("2026-02-01T00:00:00Z", &k1, 6, 1),
            ("2026-02-03T10:00:00Z", &k2, 5, 4),
            ("2026-03-01T00:00:00Z", &k2, 2, 1000),
        ],
    );
    seed(
        &postgres,
        &url,
        &other,
        &[("2026-02-01T00:00:00Z", &k1, 2, 99)],
    );
    let range = [
        "--org-id",
        org.as_str(),
        "--from",
        "2026-01-01",
        "--to",
        "2026-03-01",
    ];
    let by = |group: &str| {
        let mut args = range.to_vec();
        args.extend(["--by", group]);
        usage_json(&url, &args)
    };
    let column = |report: &Value, field: &str| -> Vec<Value> {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| serde_json::json!([row[field], row["requests"]]))
            .collect()
    };

    let hourly = by("hour");
    assert_eq!(hourly["total_requests"], 19);
    assert_eq!(hourly["from"], "2026-01-01T00:00:00Z");
    assert_eq!(hourly["to"], "2026-03-01T00:00:00Z");
    assert_eq!(hourly["by"], "hour");
    assert_eq!(
        column(&hourly, "period"),
        [
            serde_json::json!(["2026-01-31T22:00:00Z", 5]),
            serde_json::json!(["2026-01-31T23:00:00Z", 2]),
            serde_json::json!(["2026-02-01T00:00:00Z", 8]),
            serde_json::json!(["2026-02-03T10:00:00Z", 4]),
        ]
    );
    let daily = by("day");
    assert_eq!(
        column(&daily, "period"),
        [
            serde_json::json!(["2026-01-31T00:00:00Z", 7]),
            serde_json::json!(["2026-02-01T00:00:00Z", 8]),
            serde_json::json!(["2026-02-03T00:00:00Z", 4]),
        ]
    );
    let monthly = by("month");
    assert_eq!(
        column(&monthly, "period"),
        [
            serde_json::json!(["2026-01-01T00:00:00Z", 7]),
            serde_json::json!(["2026-02-01T00:00:00Z", 12]),
        ]
    );
    assert_eq!(monthly["rows"][1]["duration_us"], 18_000);
    assert_eq!(monthly["rows"][1]["response_bytes"], 240);
    let keyed = by("key");
    assert_eq!(
        column(&keyed, "key_id"),
        [serde_json::json!([k2, 11]), serde_json::json!([k1, 8])]
    );
    let status = by("status");
    assert_eq!(
        column(&status, "outcome"),
        [
            serde_json::json!(["2xx", 12]),
            serde_json::json!(["4xx", 2]),
            serde_json::json!(["5xx", 4]),
            serde_json::json!(["rate_limited", 1]),
        ]
    );
    // One key; the default grouping is by day.
    let mut one = range.to_vec();
    one.extend(["--key-id", k1.as_str()]);
    let one_key = usage_json(&url, &one);
    assert_eq!(one_key["total_requests"], 8);
    assert_eq!(one_key["by"], "day");
    assert_eq!(one_key["key_id"], k1.as_str());

    // Text: a table, then the total.
    let mut text_args = vec!["usage"];
    text_args.extend(range);
    text_args.extend(["--by", "month"]);
    let text = ok(&url, &text_args);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("PERIOD  "), "{text}");
    assert!(lines[1].starts_with("2026-01-01T00:00:00Z  7 "), "{text}");
    assert!(lines[2].starts_with("2026-02-01T00:00:00Z  12 "), "{text}");
    assert_eq!(
        lines[3],
        "total_requests: 19 (from 2026-01-01T00:00:00Z to 2026-03-01T00:00:00Z)"
    );
    // Nothing in the range: no rows, a zero total.
    let empty = usage_json(&url, &["--org-id", &org, "--since", "1h"]);
    assert_eq!(empty["total_requests"], 0);
    assert_eq!(empty["rows"], serde_json::json!([]));
}

#[test]
fn bad_usage_arguments_are_one_line_errors() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    for (args, expected) in [
        (
            vec!["--by", "week"],
            "invalid --by 'week': expected hour, day, month, key, endpoint or status",
        ),
        (
            vec!["--since", "7d", "--from", "2026-01-01"],
            "--since cannot be combined with --from or --to",
        ),
        (vec!["--to", "2026-01-01"], "--to needs --from as well"),
        (
            vec!["--from", "2026-02-01", "--to", "2026-01-01"],
            "invalid range: --from 2026-02-01T00:00:00Z is not before --to 2026-01-01T00:00:00Z",
        ),
        (
            vec!["--from", "2026-13-01"],
            "invalid --from '2026-13-01': expected a date",
        ),
        (vec!["--since", "soon"], "invalid --since 'soon'"),
        (
            vec!["--key-id", "nope"],
            "invalid key id 'nope': not a UUID",
        ),
    ] {
        let mut all = vec!["usage", "--org-id", org.as_str()];
        all.extend(args);
        assert_one_line_error(&keysync(Some(&url), &all), expected);
    }
    let unknown = Uuid::new_v4().to_string();
    assert_one_line_error(
        &keysync(Some(&url), &["usage", "--org-id", &unknown]),
        &format!("organization {unknown} not found"),
    );
    assert_one_line_error(
        &keysync(Some(&url), &["usage", "--org-id", "x"]),
        "invalid org id 'x': not a UUID",
    );
    // Checked before connecting.
    assert_one_line_error(
        &keysync(None, &["usage", "--org-id", &org, "--by", "week"]),
        "invalid --by 'week'",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_what_the_command_prints() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = Uuid::new_v4().to_string();
    seed(
        &postgres,
        &url,
        &org,
        &[
            ("2026-01-31T22:00:00Z", &key, 2, 5),
            ("2026-02-01T00:00:00Z", &key, 6, 2),
        ],
    );
    let token = json(
        &url,
        &[
            "admin-tokens",
            "create",
            "--name",
            "t",
            "--read-only",
            "--json",
        ],
    );
    let token = token["token"].as_str().unwrap().to_owned();
    let serve = start_serve(&url, &[]).await;
    let bearer = format!("Bearer {token}");
    let get = |path: String| {
        let response = keysync_e2e::http::get(
            serve.api.unwrap(),
            &path,
            &[("authorization", bearer.as_bytes())],
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        (response.status, body)
    };

    let (status, body) = get(format!(
        "/v1/orgs/{org}/usage?from=2026-01-01&to=2026-03-01&by=status"
    ));
    assert_eq!(status, 200, "{body}");
    let printed = usage_json(
        &url,
        &[
            "--org-id",
            &org,
            "--from",
            "2026-01-01",
            "--to",
            "2026-03-01",
            "--by",
            "status",
        ],
    );
    assert_eq!(body, printed);
    assert_eq!(body["total_requests"], 7);

    // By endpoint: the same as the command, the route names as stored.
    sql(
        &postgres,
        &url,
        &format!(
            "INSERT INTO usage_hourly (hour, org_id, key_id, endpoint, outcome, requests, \
                 duration_us, le_10ms, le_100ms, le_1s, over_1s, request_bytes, response_bytes) \
             VALUES ('2026-02-01T01:00:00Z', '{org}', '{key}', 'orders', 2, 9, 0, 0, 0, 0, 0, \
                 0, 0)"
        ),
    );
    let (status, body) = get(format!(
        "/v1/orgs/{org}/usage?from=2026-01-01&to=2026-03-01&by=endpoint"
    ));
    assert_eq!(status, 200, "{body}");
    let printed = usage_json(
        &url,
        &[
            "--org-id",
            &org,
            "--from",
            "2026-01-01",
            "--to",
            "2026-03-01",
            "--by",
            "endpoint",
        ],
    );
    assert_eq!(body, printed);
    assert_eq!(
        endpoint_rows(&body),
        [("orders".to_owned(), 9), ("-".to_owned(), 7)]
    );

    for (query, expected) in [
        ("by=week", "invalid by 'week'"),
        (
            "since=7d&from=2026-01-01",
            "since cannot be combined with from or to",
        ),
        ("from=2026-02-01&to=2026-01-01", "invalid range: from "),
        ("limit=3", "unknown field"),
    ] {
        let (status, body) = get(format!("/v1/orgs/{org}/usage?{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "invalid_request");
        assert!(
            body["message"].as_str().unwrap().contains(expected),
            "{query}: {body}"
        );
    }
    let (status, body) = get(format!("/v1/orgs/{}/usage", Uuid::new_v4()));
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("org_not_found"))
    );
}

/// What the usage export gets from a stored flush: the grown counters with their
/// increments, and the window from the instance's previous cut to this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_flush_returns_its_increments_and_their_window() {
    use keysync::usage::flush::Flush;
    use keysync::usage::store::UsageStore;
    use keysync::usage::Outcome;

    let (_postgres, url) = migrated_database();
    let store = UsageStore::new(
        sqlx::PgPool::connect(&url).await.unwrap(),
        keysync::usage::allowance::Ceiling { rate: 1_000 },
    );
    let instance = Uuid::new_v4();
    let org = create_org(&url, "Acme");
    let (key, quiet) = (
        create_key(&url, &org, "main", &[]).key_id,
        create_key(&url, &org, "quiet", &[]).key_id,
    );
    let now = Utc::now();
    let at = |cut: DateTime<Utc>, counters| {
        let mut request = flush(instance, counters);
        request.cut_at_ms = cut.timestamp_millis();
        Flush::check(&request, now).unwrap()
    };
    let first_cut = now - TimeDelta::seconds(20);
    let first = store
        .record(&at(
            first_cut,
            vec![counter(&org, &key, 2, 5), counter(&org, &quiet, 6, 1)],
        ))
        .await
        .unwrap();
    assert_eq!(first.window_start, None, "an instance's first flush");
    assert_eq!(
        first.window_end.timestamp_millis(),
        first_cut.timestamp_millis()
    );
    assert_eq!(first.increments.len(), 2);
    assert_eq!(first.increments[0].outcome, Outcome::Status2xx);
    assert_eq!(
        first.increments[0].values,
        [5, 10_000, 5, 0, 0, 0, 500, 5_000]
    );

    let second_cut = now - TimeDelta::seconds(10);
    let second = store
        .record(&at(
            second_cut,
            vec![counter(&org, &key, 2, 8), counter(&org, &quiet, 6, 1)],
        ))
        .await
        .unwrap();
    assert_eq!(
        second.window_start.map(|start| start.timestamp_millis()),
        Some(first_cut.timestamp_millis())
    );
    assert_eq!(
        second.window_end.timestamp_millis(),
        second_cut.timestamp_millis()
    );
    // Only the counter that grew, by what it grew.
    assert_eq!(second.increments.len(), 1);
    assert_eq!(second.increments[0].key_id.to_string(), key);
    assert_eq!(
        second.increments[0].values,
        [3, 6_000, 3, 0, 0, 0, 300, 3_000]
    );

    // The same flush again adds nothing and exports nothing.
    let repeated = store
        .record(&at(
            second_cut,
            vec![counter(&org, &key, 2, 8), counter(&org, &quiet, 6, 1)],
        ))
        .await
        .unwrap();
    assert!(repeated.increments.is_empty());

    // A delayed flush cut before the stored one: an empty window at its own cut.
    let delayed = store
        .record(&at(first_cut, vec![counter(&org, &key, 2, 6)]))
        .await
        .unwrap();
    assert!(delayed.increments.is_empty());
    assert_eq!(delayed.window_start, Some(delayed.window_end));

    // The next window starts at the latest cut, not the delayed one.
    let third = store
        .record(&at(now, vec![counter(&org, &key, 2, 9)]))
        .await
        .unwrap();
    assert_eq!(
        third.window_start.map(|start| start.timestamp_millis()),
        Some(second_cut.timestamp_millis())
    );
    assert_eq!(third.increments[0].values[0], 1);
}

#[test]
fn a_bad_export_setting_is_one_line_at_start() {
    for (name, value, expected) in [
        (
            "KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS",
            "kafka-1",
            "invalid KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS='kafka-1': ",
        ),
        (
            "KEYSYNC_USAGE_EXPORT_TOPIC",
            "usage",
            "invalid KEYSYNC_USAGE_EXPORT_TOPIC='usage': needs KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS",
        ),
    ] {
        // Settings are read before the database is reached: none is needed.
        let mut serve = command(Some("postgres://keysync@127.0.0.1:1/db"), &["serve"]);
        serve.env(name, value);
        let run: Run = serve.output().unwrap().into();
        assert_one_line_error(&run, expected);
    }
}

/// (endpoint, requests) of a `--by endpoint` answer, in its order.
fn endpoint_rows(report: &Value) -> Vec<(String, i64)> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["endpoint"].as_str().unwrap().to_owned(),
                row["requests"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoints_counters_add_up_on_their_own_and_in_every_rollup() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    // Keys that exist in the organization: keysync refuses counters of any other.
    let (k1, k2) = (
        create_key(&url, &org, "main", &[]).key_id,
        create_key(&url, &org, "second", &[]).key_id,
    );
    // A quota: its use is every endpoint's forwarded requests together.
    ok(&url, &["orgs", "set-quota", &org, "--monthly", "1000"]);
    let serve = start_serve(&url, &[]).await;
    let channel = &serve.channel;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());

    let first = flush(
        a,
        vec![
            on("orders", counter(&org, &k1, 2, 10)),
            on("search", counter(&org, &k1, 2, 4)),
            on("search", counter(&org, &k1, 6, 1)),
            counter(&org, &k1, 2, 3),
            on("(other)", counter(&org, &k2, 2, 2)),
        ],
    );
    assert_eq!(report(channel, first.clone()).await.unwrap(), 5);
    assert_eq!(
        report(channel, first).await.unwrap(),
        5,
        "repeated: nothing more"
    );
    // Each endpoint's counter grows on its own: orders by 5, search by nothing.
    report(
        channel,
        flush(
            a,
            vec![
                on("orders", counter(&org, &k1, 2, 15)),
                on("search", counter(&org, &k1, 2, 4)),
            ],
        ),
    )
    .await
    .unwrap();
    // A gateway from before endpoints sends none: its requests are the endpoint "-".
    report(channel, flush(b, vec![on("", counter(&org, &k2, 2, 7))]))
        .await
        .unwrap();

    let range = ["--org-id", org.as_str(), "--since", "1d"];
    let by = |group: &str, extra: &[&str]| {
        let mut args = range.to_vec();
        args.extend(["--by", group]);
        args.extend(extra);
        usage_json(&url, &args)
    };
    let endpoints = by("endpoint", &[]);
    assert_eq!(endpoints["by"], "endpoint");
    assert_eq!(endpoints["total_requests"], 32);
    assert_eq!(
        endpoint_rows(&endpoints),
        [
            ("orders".to_owned(), 15),
            ("-".to_owned(), 10),
            ("search".to_owned(), 5),
            ("(other)".to_owned(), 2),
        ],
        "most requests first: {endpoints}"
    );
    assert_eq!(endpoints["rows"][0]["duration_us"], 30_000);
    assert_eq!(endpoints["rows"][0]["response_bytes"], 15_000);
    assert!(endpoints["rows"][0].get("key_id").is_none());
    let one_key = by("endpoint", &["--key-id", &k1]);
    assert_eq!(
        endpoint_rows(&one_key),
        [
            ("orders".to_owned(), 15),
            ("search".to_owned(), 5),
            ("-".to_owned(), 3),
        ]
    );
    // Other groupings sum every endpoint.
    assert_eq!(by("key", &[])["total_requests"], 32);
    let status = by("status", &[]);
    assert_eq!(status["rows"][0]["outcome"], "2xx");
    assert_eq!(status["rows"][0]["requests"], 31);
    // Text: the table by endpoint, then the total.
    let mut text_args = vec!["usage"];
    text_args.extend(range);
    text_args.extend(["--by", "endpoint"]);
    let text = ok(&url, &text_args);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ENDPOINT  REQUESTS  MEAN_MS"),
        "{text}"
    );
    assert!(lines[1].starts_with("orders    15        2.0 "), "{text}");
    assert!(lines[4].starts_with("(other)   2 "), "{text}");
    assert!(lines[5].starts_with("total_requests: 32 "), "{text}");

    // The rollup and its views, by endpoint.
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!(
                "SELECT string_agg(endpoint || '=' || requests, ',' ORDER BY endpoint) \
                 FROM usage_daily WHERE org_id = '{org}' AND key_id = '{k1}' AND outcome = 2"
            )
        ),
        "-=3,orders=15,search=4"
    );
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!(
                "SELECT string_agg(endpoint || '=' || requests, ',' ORDER BY endpoint) \
                 FROM usage_monthly WHERE org_id = '{org}' AND key_id = '{k2}'"
            )
        ),
        "(other)=2,-=7"
    );
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!("SELECT count(*) FROM usage_hourly WHERE org_id = '{org}'")
        ),
        "6",
        "one row per hour, key, endpoint and outcome"
    );
    // The quota's use: the forwarded requests of every endpoint (refusals use none).
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!("SELECT used FROM quota_usage WHERE subject_id = '{org}'")
        ),
        "31"
    );

    // A bad endpoint, or too many, refuse the flush whole.
    let bad = flush(a, vec![on("two words", counter(&org, &k1, 2, 99))]);
    let status = report(channel, bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("endpoint \"two words\""),
        "{status:?}"
    );
    let many: Vec<UsageCounter> = (0..=1000)
        .map(|n| on(&format!("route-{n}"), counter(&org, &k1, 2, 1)))
        .collect();
    let status = report(channel, flush(a, many)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "more than 1000 distinct endpoints in one flush"
    );
    assert_eq!(usage_json(&url, &range)["total_requests"], 32);
}

/// The endpoint migration (0013) on a database that has usage: the rows it finds are
/// the endpoint `-`, and flushes go on from the values stored before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_migration_keeps_the_rows_it_finds_as_no_name() {
    let postgres = keysync_e2e::TestPostgres::start();
    let url = postgres.create_database();
    // Every migration before the endpoints, from a copy of the folder.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let scratch = keysync_e2e::scratch::ScratchDir::new("migrations-before-endpoints").unwrap();
    let before = scratch.path();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0013" {
            std::fs::copy(&path, before.join(&name)).unwrap();
        }
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(before)
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // The organization and a key that exists (keysync takes no counter of a key it does
    // not know), written as that schema has them: this keysync's `orgs create` and
    // `keys create` also write what later migrations add (external ids, the webhook
    // outbox), and keysync is migrated before it runs.
    let org = sql(
        &postgres,
        &url,
        "INSERT INTO organizations (id, name) VALUES (gen_random_uuid(), 'Before') RETURNING id",
    )
    .lines()
    .next()
    .unwrap()
    .trim()
    .to_owned();
    let key = Uuid::parse_str(
        sql(
            &postgres,
            &url,
            &format!(
                "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix) \
                 VALUES (gen_random_uuid(), '{org}', 'main', sha256('main'::bytea), \
                         'sk_live_main') RETURNING id"
            ),
        )
        .lines()
        .next()
        .unwrap()
        .trim(),
    )
    .unwrap();
    let instance = Uuid::new_v4();
    sql(
        &postgres,
        &url,
        &format!(
            "INSERT INTO usage_hourly VALUES (date_trunc('hour', now()), '{org}', '{key}', 2, \
                 5, 0, 5, 0, 0, 0, 0, 0); \
             INSERT INTO usage_instances VALUES ('{instance}', '{org}', '{key}', 2, \
                 5, 10000, 5, 0, 0, 0, 500, 5000); \
             INSERT INTO usage_instance_totals (instance_id) VALUES ('{instance}')"
        ),
    );

    assert_eq!(ok(&url, &["migrate"]), "migrations applied\n");
    assert_eq!(
        sql(
            &postgres,
            &url,
            "SELECT endpoint || ' ' || requests FROM usage_hourly"
        ),
        "- 5"
    );
    assert_eq!(
        sql(&postgres, &url, "SELECT endpoint FROM usage_instances"),
        "-"
    );
    assert_eq!(
        sql(
            &postgres,
            &url,
            "SELECT string_agg(a.attname, ',' ORDER BY array_position(i.indkey, a.attnum)) \
             FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
                  AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = 'usage_hourly'::regclass AND i.indisprimary"
        ),
        "org_id,hour,key_id,endpoint,outcome"
    );
    // The instance flushes on (as a gateway from before endpoints would, and as one
    // after): only the growth since the stored values is added, once.
    let serve = start_serve(&url, &[]).await;
    let key = key.to_string();
    report(
        &serve.channel,
        flush(instance, vec![on("", counter(&org, &key, 2, 8))]),
    )
    .await
    .unwrap();
    report(
        &serve.channel,
        flush(
            instance,
            vec![
                counter(&org, &key, 2, 8),
                on("orders", counter(&org, &key, 2, 2)),
            ],
        ),
    )
    .await
    .unwrap();
    let by_endpoint = usage_json(
        &url,
        &["--org-id", &org, "--since", "1d", "--by", "endpoint"],
    );
    assert_eq!(
        endpoint_rows(&by_endpoint),
        [("-".to_owned(), 8), ("orders".to_owned(), 2)],
        "{by_endpoint}"
    );
    // A partition made after the migration has the column and the key too.
    let pool = keysync::database::connect(&url).await.unwrap();
    let later = Month::of(Utc::now()).plus(6);
    partitions::maintain(&pool, later.start(), 13)
        .await
        .unwrap();
    let hour = later.start() + TimeDelta::hours(1);
    sql(
        &postgres,
        &url,
        &format!(
            "INSERT INTO usage_hourly (hour, org_id, key_id, endpoint, outcome, requests, \
                 duration_us, le_10ms, le_100ms, le_1s, over_1s, request_bytes, response_bytes) \
             VALUES ('{}', '{org}', '{key}', 'search', 2, 1, 0, 0, 0, 0, 0, 0, 0)",
            hour.to_rfc3339()
        ),
    );
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!("SELECT endpoint FROM {}", later.partition())
        ),
        "search"
    );
}
