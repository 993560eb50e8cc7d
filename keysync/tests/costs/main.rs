//! The cost calculation engine against a real PostgreSQL: price plans made, listed,
//! shown and archived, organizations put on them, and what a month costs, through the
//! CLI ([`cli`]) and the HTTP API ([`http_api`]); every misuse one line and nothing
//! written ([`misuse`]); and the invoices issued at a month's close, once, with their
//! `io.keysync.invoice.v1` events on a real Kafka-protocol broker ([`close`]).
//!
//! The invoices are checked against amounts computed by hand in the comments, from
//! usage seeded straight into `usage_hourly` in a past month (November 2026: 720 hours)
//! and plan changes written into `org_plans` at chosen instants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod close;
mod http_api;
mod misuse;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// Outcome codes of the rollup.
const OK_2XX: i16 = 2;
const UPSTREAM_5XX: i16 = 5;
const RATE_LIMITED: i16 = 6;
const QUOTA_EXCEEDED: i16 = 7;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

async fn pool(url: &str) -> PgPool {
    keysync::database::connect(url).await.unwrap()
}

/// `starter`: EUR 10.00 a month, 100,000 units included, then 1.00 per 1,000.
const STARTER: &[&str] = &[
    "plans",
    "create",
    "--name",
    "starter",
    "--currency",
    "EUR",
    "--base-fee",
    "10.00",
    "--included",
    "100000",
    "--tier",
    "inf:1.00",
    "--json",
];

/// `pro`: EUR 49.00 a month, 1,000,000 units included, 0.50 per 1,000 up to unit
/// 10,000,000, 0.30 beyond; `search` counts 5, `health` 0.
const PRO: &[&str] = &[
    "plans",
    "create",
    "--name",
    "pro",
    "--currency",
    "EUR",
    "--base-fee",
    "49",
    "--included",
    "1000000",
    "--tier",
    "10000000:0.50",
    "--tier",
    "inf:0.30",
    "--weight",
    "search=5",
    "--weight",
    "health=0",
    "--json",
];

/// Makes a plan with the CLI; its id.
fn plan(url: &str, args: &[&str]) -> Uuid {
    let created = common::json(url, args);
    Uuid::parse_str(created["plan_id"].as_str().unwrap()).unwrap()
}

/// An organization made with the CLI.
fn org(url: &str, name: &str) -> Uuid {
    Uuid::parse_str(&common::create_org(url, name)).unwrap()
}

/// `keysync usage --org-id ORG --cost --period PERIOD`, with `extra` (`--json`).
fn cost(url: &str, org: Uuid, period: &str, extra: &[&str]) -> String {
    let org = org.to_string();
    let mut args = vec!["usage", "--org-id", &org, "--cost", "--period", period];
    args.extend_from_slice(extra);
    common::ok(url, &args)
}

/// The same with `--json`, parsed.
fn cost_json(url: &str, org: Uuid, period: &str) -> Value {
    serde_json::from_str(&cost(url, org, period, &["--json"])).unwrap()
}

/// Puts `org` on `plan` from `from`, straight into `org_plans` (a change in the past,
/// which the commands only make for the current hour).
async fn plan_from(pool: &PgPool, org: Uuid, from: &str, plan: Uuid) {
    sqlx::query("INSERT INTO org_plans (org_id, effective_from, plan_id) VALUES ($1, $2, $3)")
        .bind(org)
        .bind(at(from))
        .bind(plan)
        .execute(pool)
        .await
        .unwrap();
}

/// `requests` of `org` in `hour` on `endpoint` with `outcome`, into the rollup (a key
/// of their own each: the sums run over keys).
async fn usage(pool: &PgPool, org: Uuid, hour: &str, endpoint: &str, outcome: i16, requests: i64) {
    sqlx::query(
        "INSERT INTO usage_hourly (hour, org_id, key_id, endpoint, outcome, requests, \
             duration_us, le_10ms, le_100ms, le_1s, over_1s, request_bytes, response_bytes) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0, 0, 0, 0, 0)",
    )
    .bind(at(hour))
    .bind(org)
    .bind(Uuid::new_v4())
    .bind(endpoint)
    .bind(outcome)
    .bind(requests)
    .execute(pool)
    .await
    .unwrap();
}

/// November 2026 for `org`: `starter` since October, `pro` from the 16th (each half of
/// the month's 720 hours), usage in both halves, refused requests among it. Its invoice,
/// by hand:
///
/// - starter, 360 of 720 hours: fee 10.00 / 2 = 5.00; included 100,000 / 2 = 50,000.
///   Billable: 80,000 2xx + 500 5xx = 80,500 (the 5,000 refused by the quota and the
///   1,000 by the rate limit are not billed); 30,500 beyond the included at 1.00 per
///   1,000 = 30.50. Amount 35.50.
/// - pro, 360 of 720 hours: fee 49.00 / 2 = 24.50; included 500,000; tier bound
///   5,000,000. Units: 200,000 search x 5 + 10,000 health x 0 + 300,010 others =
///   1,300,010; 800,010 beyond at 0.50 per 1,000 = 400.005, a half cent: rounded up
///   to 400.01. Amount 424.51.
/// - Total 460.01.
async fn november(pool: &PgPool, org: Uuid, starter: Uuid, pro: Uuid) {
    plan_from(pool, org, "2026-10-01T00:00:00Z", starter).await;
    plan_from(pool, org, "2026-11-16T00:00:00Z", pro).await;
    usage(pool, org, "2026-11-02T10:00:00Z", "orders", OK_2XX, 80_000).await;
    usage(
        pool,
        org,
        "2026-11-02T10:00:00Z",
        "orders",
        UPSTREAM_5XX,
        500,
    )
    .await;
    usage(
        pool,
        org,
        "2026-11-03T10:00:00Z",
        "orders",
        QUOTA_EXCEEDED,
        5_000,
    )
    .await;
    usage(
        pool,
        org,
        "2026-11-03T10:00:00Z",
        "search",
        RATE_LIMITED,
        1_000,
    )
    .await;
    usage(pool, org, "2026-11-20T08:00:00Z", "search", OK_2XX, 200_000).await;
    usage(pool, org, "2026-11-20T08:00:00Z", "health", OK_2XX, 10_000).await;
    usage(pool, org, "2026-11-21T08:00:00Z", "orders", OK_2XX, 300_000).await;
    usage(pool, org, "2026-11-30T23:00:00Z", "-", OK_2XX, 10).await;
    // December belongs to the next invoice.
    usage(pool, org, "2026-12-01T00:00:00Z", "orders", OK_2XX, 999_999).await;
}

/// Checks an invoice of [`november`], as `usage --cost --json` prints it and the API and
/// the event carry it.
fn assert_november(invoice: &Value, org: Uuid) {
    assert_eq!(invoice["org_id"], org.to_string(), "{invoice}");
    assert_eq!(invoice["period"], "2026-11");
    assert_eq!(invoice["from"], "2026-11-01T00:00:00Z");
    assert_eq!(invoice["to"], "2026-12-01T00:00:00Z");
    assert_eq!(invoice["currency"], "EUR");
    let segments = invoice["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 2, "{invoice}");
    let (starter, pro) = (&segments[0], &segments[1]);
    assert_eq!(starter["plan_name"], "starter");
    assert_eq!(starter["to"], "2026-11-16T00:00:00Z");
    assert_eq!(
        (starter["hours"].as_i64(), starter["period_hours"].as_i64()),
        (Some(360), Some(720))
    );
    assert_eq!(starter["base_fee"], "5.00");
    assert_eq!(starter["units"], 80_500);
    assert_eq!(starter["tiers"][0]["last_unit"], 50_000);
    assert_eq!(starter["tiers"][1]["units"], 30_500);
    assert_eq!(starter["tiers"][1]["amount"], "30.50");
    assert_eq!(starter["amount_minor"], 3_550);
    assert_eq!(pro["plan_name"], "pro");
    assert_eq!(pro["from"], "2026-11-16T00:00:00Z");
    assert_eq!(pro["base_fee"], "24.50");
    assert_eq!(pro["units"], 1_300_010);
    let endpoints: Vec<(Value, i64, i64, i64)> = pro["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["endpoint"].clone(),
                line["requests"].as_i64().unwrap(),
                line["weight"].as_i64().unwrap(),
                line["units"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        [
            (Value::from("health"), 10_000, 0, 0),
            (Value::from("search"), 200_000, 5, 1_000_000),
            (Value::Null, 300_010, 1, 300_010),
        ]
    );
    let tiers: Vec<(i64, Value, i64, &str)> = pro["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["first_unit"].as_i64().unwrap(),
                line["last_unit"].clone(),
                line["units"].as_i64().unwrap(),
                line["amount"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tiers,
        [
            (1, Value::from(500_000), 500_000, "0.00"),
            (500_001, Value::from(5_000_000), 800_010, "400.01"),
            (5_000_001, Value::Null, 0, "0.00"),
        ]
    );
    assert_eq!(pro["amount"], "424.51");
    assert_eq!(invoice["total_minor"], 46_001);
    assert_eq!(invoice["total"], "460.01");
}
