//! What a usage flush may add, against a real PostgreSQL and a real `keysync serve` over
//! gRPC: a holder of a gateway token cannot bill a tenant for a key keysync never
//! issued, nor for another organization's key, nor for more than a gateway can serve
//! (`KEYSYNC_GATEWAY_MAX_RATE`). What is refused changes nothing in `keysync usage`,
//! in quota use or in what the usage export is handed, and is counted in `/metrics`.
//! A key revoked before the flush still counts, and an instance's first flush (a gateway
//! that just started) may carry a window's worth.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Utc;
use common::serve::*;
use common::usage_flush::*;
use common::*;
use keysync::usage::allowance::{Ceiling, WINDOW};
use keysync::usage::flush::Flush;
use keysync::usage::store::UsageStore;
use uuid::Uuid;

/// The requests `reason` refused, from `/metrics`.
fn refused(serve: &Serve, reason: &str) -> f64 {
    let (_, metrics) = http_get(serve.http, "/metrics");
    metric(
        &metrics,
        &format!("keysync_usage_refused_requests_total{{reason=\"{reason}\"}}"),
    )
}

/// A monthly quota for `org`, so that flushes keep its use.
fn set_quota(postgres: &keysync_e2e::TestPostgres, url: &str, org: &str) {
    sql(
        postgres,
        url,
        &format!(
            "INSERT INTO quotas (subject_kind, subject_id, org_id, monthly_limit, reset_day) \
             VALUES (1, '{org}', '{org}', 1000000000000, 1)"
        ),
    );
}

fn quota_used(postgres: &keysync_e2e::TestPostgres, url: &str, org: &str) -> String {
    sql(
        postgres,
        url,
        &format!("SELECT coalesce(sum(used), 0) FROM quota_usage WHERE subject_id = '{org}'"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_flush_for_an_unknown_key_or_another_organization_changes_nothing() {
    let (postgres, url) = migrated_database();
    let victim = create_org(&url, "Victim");
    let other = create_org(&url, "Other");
    let victims_key = create_key(&url, &victim, "main", &[]).key_id;
    let others_key = create_key(&url, &other, "main", &[]).key_id;
    set_quota(&postgres, &url, &victim);
    let serve = start_serve(&url, &[]).await;
    let unknown = Uuid::new_v4().to_string();

    let forged = flush(
        Uuid::new_v4(),
        vec![
            // A key nobody issued, billed to the victim.
            counter(&victim, &unknown, 2, 1_000),
            // Another organization's key, billed to the victim.
            counter(&victim, &others_key, 2, 700),
            // The victim's key, counted under another organization.
            counter(&other, &victims_key, 2, 300),
        ],
    );
    report(&serve.channel, forged.clone()).await.unwrap();
    assert_eq!(total(&url, &victim), 0);
    assert_eq!(total(&url, &other), 0);
    assert_eq!(quota_used(&postgres, &url, &victim), "0");
    assert_eq!(refused(&serve, "unknown_key"), 1_000.0);
    assert_eq!(refused(&serve, "foreign_org"), 1_000.0);
    assert_eq!(refused(&serve, "over_ceiling"), 0.0);
    let (_, metrics) = http_get(serve.http, "/metrics");
    assert_eq!(metric(&metrics, "keysync_usage_requests_total"), 0.0);
    let log = serve.process.log();
    assert!(
        log.contains("requests refused: 1000 of unknown keys, 1000 under another organization"),
        "{log}"
    );

    // The same counters sent again (every flush repeats them): nothing new to refuse.
    report(&serve.channel, forged).await.unwrap();
    assert_eq!(refused(&serve, "unknown_key"), 1_000.0);
    assert_eq!(total(&url, &victim), 0);

    // The victim's own key under its own organization counts as ever.
    report(
        &serve.channel,
        flush(Uuid::new_v4(), vec![counter(&victim, &victims_key, 2, 12)]),
    )
    .await
    .unwrap();
    assert_eq!(total(&url, &victim), 12);
    assert_eq!(quota_used(&postgres, &url, &victim), "12");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increment_beyond_what_a_gateway_serves_is_refused_for_good() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "main", &[]).key_id;
    set_quota(&postgres, &url, &org);
    // 100 requests a second: a new instance may add a window's worth.
    let serve = start_serve(&url, &[("KEYSYNC_GATEWAY_MAX_RATE", "100")]).await;
    let window = 100 * WINDOW.as_secs();
    let instance = Uuid::new_v4();

    report(
        &serve.channel,
        flush(instance, vec![counter(&org, &key, 2, 1_000_000_000)]),
    )
    .await
    .unwrap();
    assert_eq!(total(&url, &org), window as i64);
    assert_eq!(quota_used(&postgres, &url, &org), window.to_string());
    assert_eq!(
        refused(&serve, "over_ceiling"),
        (1_000_000_000 - window) as f64
    );
    // What was taken keeps its proportions: 2 ms a request.
    let answer = usage_json(&url, &["--org-id", &org, "--since", "1d", "--by", "status"]);
    assert_eq!(answer["rows"][0]["duration_us"], window * 2_000, "{answer}");

    // Ten seconds later (the instance's allowance as PostgreSQL's clock would have it),
    // the counter grew by 50: those count; the refused billion never does.
    sql(
        &postgres,
        &url,
        &format!(
            "UPDATE usage_instance_totals SET allowance_at = allowance_at - interval '10 s' \
             WHERE instance_id = '{instance}'"
        ),
    );
    let grown = flush(instance, vec![counter(&org, &key, 2, 1_000_000_050)]);
    report(&serve.channel, grown.clone()).await.unwrap();
    assert_eq!(total(&url, &org), window as i64 + 50);
    report(&serve.channel, grown).await.unwrap();
    assert_eq!(total(&url, &org), window as i64 + 50);
    assert_eq!(quota_used(&postgres, &url, &org), (window + 50).to_string());
    assert_eq!(
        refused(&serve, "over_ceiling"),
        (1_000_000_000 - window) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_keys_still_count_and_a_first_flush_takes_a_window() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let revoked = create_key(&url, &org, "revoked", &[]).key_id;
    ok(&url, &["keys", "revoke", &revoked]);
    let expired = create_key(&url, &org, "expired", &[]).key_id;
    sql(
        &postgres,
        &url,
        &format!(
            "UPDATE api_keys SET expires_at = now() - interval '1 hour' WHERE id = '{expired}'"
        ),
    );
    let live = create_key(&url, &org, "live", &[]).key_id;
    let serve = start_serve(&url, &[("KEYSYNC_GATEWAY_MAX_RATE", "100")]).await;

    // A gateway that served these keys before they were revoked or expired, and
    // flushes afterwards: counted.
    report(
        &serve.channel,
        flush(
            Uuid::new_v4(),
            vec![counter(&org, &revoked, 2, 4), counter(&org, &expired, 4, 3)],
        ),
    )
    .await
    .unwrap();
    assert_eq!(total(&url, &org), 7);

    // A gateway that just started (or could not reach keysync for ten minutes) flushes
    // ten minutes' worth at 100 a second in its first flush, split in two calls with
    // the same cut as the filter sends a large flush: all of it counts.
    let instance = Uuid::new_v4();
    let cut = Utc::now().timestamp_millis();
    for part in [
        counter(&org, &live, 2, 30_000),
        counter(&org, &live, 5, 30_000),
    ] {
        let mut request = flush(instance, vec![part]);
        request.cut_at_ms = cut;
        report(&serve.channel, request).await.unwrap();
    }
    assert_eq!(total(&url, &org), 60_007);
    assert_eq!(refused(&serve, "over_ceiling"), 0.0);
    assert_eq!(refused(&serve, "unknown_key"), 0.0);
}

/// What the usage export would be handed (a stored flush's increments) holds nothing
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_increments_are_not_handed_to_the_export() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let other = create_org(&url, "Other");
    let key = create_key(&url, &org, "main", &[]).key_id;
    let store = UsageStore::new(
        sqlx::PgPool::connect(&url).await.unwrap(),
        Ceiling { rate: 1 },
    );
    let request = flush(
        Uuid::new_v4(),
        vec![
            counter(&org, &Uuid::new_v4().to_string(), 2, 5),
            counter(&other, &key, 2, 5),
            counter(&org, &key, 2, 10_000),
        ],
    );
    let recorded = store
        .record(&Flush::check(&request, Utc::now()).unwrap())
        .await
        .unwrap();
    let capacity = Ceiling { rate: 1 }.capacity();
    assert_eq!(recorded.increments.len(), 1);
    assert_eq!(recorded.increments[0].key_id.to_string(), key);
    assert_eq!(recorded.increments[0].values[0], capacity);
    assert_eq!(recorded.requests, capacity);
    assert_eq!(recorded.refused.unknown_key, 5);
    assert_eq!(recorded.refused.foreign_org, 5);
    assert_eq!(recorded.refused.over_ceiling, 10_000 - capacity);
}
