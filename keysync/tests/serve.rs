//! `keysync serve` as a real process against a real PostgreSQL, driven through its
//! gRPC API and admin port: paging, lookups of new keys, following revocations and
//! rate-limit changes, riding out a database outage, and the operator API on its own
//! listener (or none).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::serve::*;
use common::*;
use keysync_e2e::Signal;
use tonic::transport::Channel;
use tonic::Code;
use uuid::Uuid;

/// The rate limit of every listed key, in hash order.
async fn limits(channel: &Channel) -> Vec<Option<(u32, u32)>> {
    list_all(channel, 0, 10_000)
        .await
        .iter()
        .map(|key| key.rate_limit.map(|l| (l.requests_per_minute, l.burst)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_lookups_through_the_catch_up_path() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    sql(
        &postgres,
        &url,
        &format!(
            "INSERT INTO rate_limit_configs (org_id, requests_per_minute, burst) \
             VALUES ('{org}', 600, 50)"
        ),
    );
    // 25 keys straight into the table, plus one through the CLI.
    sql(
        &postgres,
        &url,
        &format!(
            "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix) \
             SELECT gen_random_uuid(), '{org}', 'bulk ' || i, sha256(('bulk' || i)::bytea), \
                    'sk_live_bulk' \
             FROM generate_series(1, 25) AS i"
        ),
    );
    let first = create_key(&url, &org, "first", &[]);

    // Hour-long poll: anything found below came through a catch-up triggered by a
    // change notification or by the lookup itself.
    let serve = start_serve(
        &url,
        &[
            ("KEYSYNC_MAX_PAGE_SIZE", "10"),
            ("KEYSYNC_POLL_INTERVAL", "1h"),
        ],
    )
    .await;
    serve
        .process
        .wait_for_log("snapshot loaded: keys=26 revision=", Duration::from_secs(1));

    let (status, body) = http_get(serve.http, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(http_get(serve.http, "/readyz").0, 200);

    // Page size 0 means the default (1000), capped at KEYSYNC_MAX_PAGE_SIZE.
    let keys = list_all(&serve.channel, 0, 10).await;
    assert_eq!(keys.len(), 26);
    let in_database: Vec<Vec<u8>> = sql(
        &postgres,
        &url,
        "SELECT encode(key_hash, 'hex') FROM api_keys WHERE active ORDER BY key_hash",
    )
    .lines()
    .map(|line| hex::decode(line).unwrap())
    .collect();
    let served: Vec<Vec<u8>> = keys.iter().map(|key| key.key_hash.clone()).collect();
    assert_eq!(served, in_database);
    assert_eq!(list_all(&serve.channel, 3, 3).await.len(), 26);
    for key in &keys {
        let limit = key.rate_limit.unwrap();
        assert_eq!((limit.requests_per_minute, limit.burst), (600, 50));
        assert_eq!(
            key.org_id,
            Uuid::parse_str(&org).unwrap().as_bytes().to_vec()
        );
        assert_eq!(key.expires_at, 0);
    }

    let error = list_page(&serve.channel, &[0; 33], 0).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let error = lookup(&serve.channel, &[0; 31]).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);

    let known = lookup(&serve.channel, &key_hash(&first.key)).await.unwrap();
    let record = known.key.unwrap();
    assert_eq!(
        record.key_id,
        Uuid::parse_str(&first.key_id).unwrap().as_bytes().to_vec()
    );

    // A key created now reaches memory through its notification, though no periodic
    // catch-up runs. (With the listener up, a lookup that beats the notification is
    // answered from memory: tests/misses.rs covers both ways a miss is answered.)
    let fresh = create_key(&url, &org, "fresh", &["--expires-in", "1h"]);
    serve.process.wait_for_log(
        "catch-up applied: changes=1 revision=",
        Duration::from_secs(5),
    );
    let found = lookup(&serve.channel, &key_hash(&fresh.key)).await.unwrap();
    let record = found.key.expect("a new key is found");
    assert_eq!(
        record.key_id,
        Uuid::parse_str(&fresh.key_id).unwrap().as_bytes().to_vec()
    );
    assert!(record.expires_at > chrono::Utc::now().timestamp());
    assert!(found.revision > known.revision);
    assert!(hashes(&list_all(&serve.channel, 0, 10).await).contains(&key_hash(&fresh.key)));

    let unknown = lookup(&serve.channel, &[0xab; 32]).await.unwrap();
    assert_eq!(unknown.key, None);
    serve.process.wait_for_log(
        "cache miss: key_hash=abababab... not found",
        Duration::from_secs(5),
    );

    let (status, text) = http_get(serve.http, "/metrics");
    assert_eq!(status, 200);
    for name in [
        "keysync_snapshot_keys",
        "keysync_store_revision",
        "keysync_db_loads_total{kind=\"full\",result=\"ok\"}",
        "keysync_db_loads_total{kind=\"incremental\",result=\"ok\"}",
        "keysync_db_errors_total",
        "keysync_db_query_duration_seconds_count{kind=\"full\"}",
        "keysync_lookups_total{result=\"found\"}",
        "keysync_grpc_requests_total{method=\"ListKeys\"}",
        "keysync_grpc_request_duration_seconds_count{method=\"LookupKey\"}",
        "keysync_ready",
    ] {
        assert!(text.contains(name), "no {name} in\n{text}");
    }
    assert_eq!(metric(&text, "keysync_snapshot_keys"), 27.0);
    assert_eq!(metric(&text, "keysync_ready"), 1.0);
    assert_eq!(
        metric(&text, "keysync_lookups_total{result=\"found\"}"),
        2.0
    );
    assert_eq!(
        metric(&text, "keysync_lookups_total{result=\"not_found\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "keysync_lookups_total{result=\"error\"}"),
        1.0
    );
    assert_eq!(metric(&text, "keysync_db_errors_total"), 0.0);

    assert_no_secrets(&serve.process.log(), &[&first, &fresh]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_changes_and_rides_out_a_database_outage() {
    let (mut postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let keep = create_key(&url, &org, "keep", &[]);
    let to_revoke = create_key(&url, &org, "revoke me", &[]);
    let to_delete = create_key(&url, &org, "delete me", &[]);

    let mut serve = start_serve(&url, &[("KEYSYNC_POLL_INTERVAL", "200ms")]).await;
    let channel = serve.channel.clone();
    assert_eq!(listed(&channel).await.len(), 3);

    // A new key reaches ListKeys through the periodic catch-up.
    let added = create_key(&url, &org, "added", &[]);
    eventually!(
        Duration::from_secs(5),
        "new key listed",
        listed(&channel).await.contains(&key_hash(&added.key))
    );

    // A revoked key disappears, and a lookup no longer finds it.
    ok(&url, &["keys", "revoke", &to_revoke.key_id]);
    eventually!(
        Duration::from_secs(5),
        "revoked key gone",
        !listed(&channel).await.contains(&key_hash(&to_revoke.key))
    );
    let answer = lookup(&channel, &key_hash(&to_revoke.key)).await.unwrap();
    assert_eq!(answer.key, None);

    // A key deleted outright goes too (through its tombstone).
    sql(
        &postgres,
        &url,
        &format!("DELETE FROM api_keys WHERE id = '{}'", to_delete.key_id),
    );
    eventually!(
        Duration::from_secs(5),
        "deleted key gone",
        !listed(&channel).await.contains(&key_hash(&to_delete.key))
    );

    // A rate-limit change restamps every key of the organization.
    assert_eq!(limits(&channel).await, vec![None, None]);
    sql(
        &postgres,
        &url,
        &format!(
            "INSERT INTO rate_limit_configs (org_id, requests_per_minute, burst) \
             VALUES ('{org}', 100, 10)"
        ),
    );
    eventually!(
        Duration::from_secs(5),
        "limit applied",
        limits(&channel).await == vec![Some((100, 10)); 2]
    );
    sql(
        &postgres,
        &url,
        &format!("UPDATE rate_limit_configs SET requests_per_minute = 250 WHERE org_id = '{org}'"),
    );
    eventually!(
        Duration::from_secs(5),
        "limit changed",
        limits(&channel).await == vec![Some((250, 10)); 2]
    );
    let before_outage = listed(&channel).await;
    assert_eq!(
        before_outage,
        BTreeSet::from([key_hash(&keep.key), key_hash(&added.key)])
    );

    // Outage: errors are logged, the last snapshot keeps being served.
    let offset = serve.process.log_len();
    postgres.stop();
    serve
        .process
        .wait_for_log_after(offset, "database error: ", Duration::from_secs(20));
    assert_eq!(listed(&channel).await, before_outage);
    let error = lookup(&channel, &[0xcd; 32]).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    let known = lookup(&channel, &key_hash(&keep.key)).await.unwrap();
    assert!(known.key.is_some(), "known keys are answered from memory");
    // Not ready the moment PostgreSQL fails a confirmation (streams close, Envoy's
    // health check moves away), though what it holds is still served.
    eventually!(
        Duration::from_secs(5),
        "not ready once a confirmation failed",
        http_get(serve.http, "/readyz").0 == 503
    );
    let (_, text) = http_get(serve.http, "/metrics");
    assert!(metric(&text, "keysync_db_errors_total") >= 1.0, "{text}");
    assert!(
        metric(
            &text,
            "keysync_db_loads_total{kind=\"incremental\",result=\"error\"}"
        ) >= 1.0,
        "{text}"
    );

    // Back up: keysync catches up on its own (after its backoff).
    postgres.start_again();
    let late = create_key(&url, &org, "after the outage", &[]);
    eventually!(
        Duration::from_secs(60),
        "catch-up after outage",
        listed(&channel).await.contains(&key_hash(&late.key))
    );

    let log = serve.process.log();
    assert_no_secrets(&log, &[&keep, &to_revoke, &to_delete, &added, &late]);
    assert!(log.contains("catch-up applied: changes="), "{log}");

    // SIGTERM: a clean, prompt exit.
    serve.process.signal(Signal::Term);
    let status = serve
        .process
        .wait_exit(Duration::from_secs(10))
        .expect("keysync exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", serve.process.log());
    assert!(serve
        .process
        .log()
        .contains("received SIGTERM, shutting down"));
}

/// The operator API has a listener of its own, or none: `/v1/` is never on the admin
/// port, which serves probes and metrics alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_api_listens_apart_or_not_at_all() {
    let (_postgres, url) = migrated_database();
    let serve = start_serve(&url, &[]).await;
    let api = serve.api.expect("an API listener by default");
    assert_ne!(api, serve.http);
    let (status, body) = http_get(api, "/v1/openapi.json");
    assert_eq!(status, 200, "{body}");
    assert_eq!(http_get(api, "/v1/orgs").0, 401, "admin tokens, as ever");
    assert_eq!(http_get(api, "/metrics").0, 404);
    assert_eq!(http_get(serve.http, "/v1/openapi.json").0, 404);
    assert_eq!(http_get(serve.http, "/v1/orgs").0, 404);
    assert_eq!(http_get(serve.http, "/readyz").0, 200);
    drop(serve);

    let off = start_serve(&url, &[("KEYSYNC_API_ADDR", "off")]).await;
    assert_eq!(off.api, None);
    assert!(
        off.process.log().contains(" api=off"),
        "{}",
        off.process.log()
    );
    assert_eq!(http_get(off.http, "/v1/openapi.json").0, 404);
    assert_eq!(http_get(off.http, "/metrics").0, 200);
}
