//! A month's close: each organization's invoice stored once, with a deterministic event
//! id, whoever closes and however often; and `keysync serve` publishing it on a real
//! Kafka-protocol broker (tansu) as an `io.keysync.invoice.v1` CloudEvent.

use std::time::Duration;

use chrono::TimeDelta;
use keysync::billing::close::{close, Closed, Closing, CLOSE_DELAY};
use keysync::billing::event::event_id;
use keysync::billing::period::BillingPeriod;
use keysync_e2e::kafka::TestKafka;

use super::*;
use crate::common::serve::start_process;
use crate::common::{migrated_database, sql};

/// A close at `now`, `batch` organizations a transaction; the batches it handed over.
async fn closed_in(pool: &PgPool, now: &str, batch: usize) -> (Closed, Vec<Vec<Uuid>>) {
    let mut batches = Vec::new();
    let mut issued = |invoices: &[keysync::billing::invoice::Invoice]| {
        batches.push(invoices.iter().map(|invoice| invoice.org_id).collect());
    };
    match close(pool, at(now), batch, &mut issued).await.unwrap() {
        Closing::Closed(closed) => (closed, batches),
        Closing::Skipped => panic!("skipped: nobody else closes here"),
    }
}

async fn closed(pool: &PgPool, now: &str) -> Closed {
    let (closed, batches) = closed_in(pool, now, keysync::billing::close::BATCH).await;
    assert_eq!(batches.concat().len(), closed.issued.len());
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_invoice_is_issued_once_under_its_own_id() {
    let (postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let (starter, pro) = (plan(&url, STARTER), plan(&url, PRO));
    let (acme, idle) = (org(&url, "acme"), org(&url, "idle"));
    november(&pool, acme, starter, pro).await;
    // On starter since December: nothing to invoice for November.
    plan_from(&pool, idle, "2026-12-01T00:00:00Z", starter).await;

    // Ten minutes after November ends, the close delay has not passed: October closes.
    let early = closed(&pool, "2026-12-01T00:10:00Z").await;
    assert_eq!(early.period.unwrap().to_string(), "2026-10");
    assert_eq!(early.issued.len(), 1);
    assert_eq!(early.issued[0].total, "10.00");

    let first = closed(&pool, "2026-12-01T00:20:00Z").await;
    assert_eq!(first.period.unwrap().to_string(), "2026-11");
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert_eq!(first.issued.len(), 1, "{:?}", first.issued);
    let invoice = serde_json::to_value(&first.issued[0]).unwrap();
    assert_november(&invoice, acme);
    assert_eq!(invoice["closed"], true);
    let november_start = at("2026-11-01T00:00:00Z");
    assert_eq!(
        sql(
            &postgres,
            &url,
            "SELECT org_id, period_start = '2026-11-01T00:00:00Z', event_id, currency, \
                    total_minor, document->>'total' FROM invoices ORDER BY period_start DESC LIMIT 1"
        ),
        format!("{acme}|t|{}|EUR|46001|460.01", event_id(acme, november_start))
    );

    // Closed again, later, or by another replica: nothing more is issued.
    assert!(closed(&pool, "2026-12-01T00:25:00Z")
        .await
        .issued
        .is_empty());
    assert!(closed(&pool, "2026-12-20T00:00:00Z")
        .await
        .issued
        .is_empty());
    assert_eq!(sql(&postgres, &url, "SELECT count(*) FROM invoices"), "2");

    // Many organizations are closed a batch a transaction, each batch handed over once
    // committed, none twice. Three more on starter all of November; batches of two.
    let mut more: Vec<Uuid> = Vec::new();
    for name in ["b", "c", "d"] {
        let id = org(&url, name);
        plan_from(&pool, id, "2026-11-01T00:00:00Z", starter).await;
        more.push(id);
    }
    more.sort();
    let (batched, batches) = closed_in(&pool, "2026-12-02T00:00:00Z", 2).await;
    assert_eq!(batches, [more[..2].to_vec(), more[2..].to_vec()]);
    assert!(batched
        .issued
        .iter()
        .all(|invoice| invoice.total == "10.00"));
    assert_eq!(sql(&postgres, &url, "SELECT count(*) FROM invoices"), "5");
}

/// Synchronous: the broker's client runs a runtime of its own.
#[test]
fn serve_publishes_last_months_invoices_on_the_export() {
    let kafka = TestKafka::start();
    kafka.create_topic("keysync.usage", 1);
    let (_postgres, url) = migrated_database();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Last month, as serve closes it now: pro all month, 1,500,000 requests of
    // `orders`: 500,000 beyond the included at 0.50 per 1,000 = 250.00, plus the 49.00
    // fee: 299.00 whatever the month's length.
    let delay = TimeDelta::from_std(CLOSE_DELAY).unwrap();
    let month = BillingPeriod::containing(Utc::now() - delay).previous();
    let pro = plan(&url, PRO);
    let acme = org(&url, "acme");
    let before = month.previous().start.to_rfc3339();
    let hour = (month.start + TimeDelta::days(2)).to_rfc3339();
    runtime.block_on(async {
        let pool = pool(&url).await;
        plan_from(&pool, acme, &before, pro).await;
        usage(&pool, acme, &hour, "orders", OK_2XX, 1_500_000).await;
    });

    let serve = start_process(
        &url,
        &[("KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS", &kafka.brokers())],
    );
    let invoices = || -> Vec<Value> {
        kafka
            .records("keysync.usage")
            .iter()
            .map(|record| record.json())
            .filter(|event| event["type"] == "io.keysync.invoice.v1")
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut published = invoices();
    while published.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no invoice event on the topic; keysync's log:\n{}",
            serve.process.log()
        );
        std::thread::sleep(Duration::from_millis(200));
        published = invoices();
    }
    assert_eq!(published.len(), 1, "{published:?}");
    let event = &published[0];
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["source"], "keysync/billing");
    assert_eq!(event["id"], event_id(acme, month.start).to_string());
    assert_eq!(event["subject"], acme.to_string());
    assert_eq!(
        event["time"],
        keysync::usage::cloud_event::rfc3339(month.end)
    );
    assert_eq!(event["datacontenttype"], "application/json");
    let data = &event["data"];
    assert_eq!(data["period"], month.to_string());
    assert_eq!(data["closed"], true);
    assert_eq!(data["segments"][0]["plan_name"], "pro");
    assert_eq!(data["segments"][0]["units"], 1_500_000);
    assert_eq!(data["total_minor"], 29_900);
    assert_eq!(data["total"], "299.00");
    let metric = |name: &str| {
        let text = keysync_e2e::http::get(serve.http, "/metrics", &[])
            .expect("GET /metrics")
            .text();
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    assert_eq!(metric("keysync_invoices_issued_total"), 1.0);
    // Counted once the close returns, just after it queued the event.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric("keysync_invoice_closes_total{result=\"ok\"}") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "no close counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric("keysync_invoices_not_issued_total"), 0.0);
    assert!(serve
        .process
        .log()
        .contains(&format!("invoices issued for {month}: 1 organizations in ")));
}
