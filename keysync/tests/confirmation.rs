//! "Confirmed", not "alive", against a real PostgreSQL behind a proxy the test turns
//! into a blackhole: every answer says how long ago keysync last confirmed its key set,
//! a silent database is noticed within seconds, readiness and the gRPC health service
//! follow, open WatchKeys streams end, and all of it comes back with the database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::blackhole::Blackhole;
use common::serve::*;
use common::*;

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

/// Confirmation every 500 ms, waits of at most 1 s, not serving after 5 s unconfirmed.
const FAST: [(&str, &str); 4] = [
    ("KEYSYNC_CONFIRM_INTERVAL", "500ms"),
    ("KEYSYNC_DB_TIMEOUT", "1s"),
    ("KEYSYNC_MAX_UNCONFIRMED", "5s"),
    ("KEYSYNC_WATCH_HEARTBEAT", "500ms"),
];

fn confirmed_age(serve: &Serve) -> f64 {
    let (_, text) = http_get(serve.http, "/metrics");
    metric(&text, "keysync_confirmed_age_seconds")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_database_is_noticed_within_seconds_and_recovery_too() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "existing", &[]);
    let proxy = Blackhole::start(([127, 0, 0, 1], postgres.port()).into()).await;
    let serve = start_serve(&proxy.url(&url), &FAST).await;
    let channel = &serve.channel;

    // Healthy: answers are fresh, and say in which history.
    let found = lookup(channel, &key_hash(&key.key)).await.unwrap();
    let provenance = found.provenance.unwrap();
    assert_ne!(provenance.epoch, 0);
    assert!(provenance.confirmed_age_ms < 2000, "{provenance:?}");
    assert_eq!(http_get(serve.http, "/readyz").0, 200);
    assert_eq!(health(channel, "").await, SERVING);
    assert_eq!(health(channel, "keysync.v1.KeySync").await, SERVING);
    let mut stream = watch(channel, found.revision).await;
    let beat = next_message(&mut stream, Duration::from_secs(2)).await;
    assert!(beat.provenance.unwrap().confirmed_age_ms < 2000);

    // The network to PostgreSQL goes silent: no error, no closed connection.
    let offset = serve.process.log_len();
    let cut_at = Instant::now();
    proxy.cut();
    serve.process.wait_for_log_after(
        offset,
        "confirmation lost: key set not confirmed against PostgreSQL for",
        Duration::from_secs(10),
    );
    assert!(
        cut_at.elapsed() < Duration::from_secs(5),
        "noticed after {:?}",
        cut_at.elapsed()
    );
    // A confirmation that failed (timed out here) stops serving at once: the stream
    // ends, so the filter reconnects, perhaps to a keysync that can confirm.
    serve.process.wait_for_log_after(
        offset,
        "not serving: key set not confirmed against PostgreSQL for",
        Duration::from_secs(10),
    );
    assert!(
        cut_at.elapsed() < Duration::from_secs(5),
        "stopped serving after {:?}",
        cut_at.elapsed()
    );
    assert!(confirmed_age(&serve) > 1.0);
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(message))) => {
                // A heartbeat sent before the stop still tells its age honestly.
                assert!(message.provenance.unwrap().confirmed_age_ms > 0);
            }
            Ok(Err(status)) => break status,
            other => panic!("the stream did not end with a status: {other:?}"),
        }
    };
    // The listener notices its silent connection too.
    serve.process.wait_for_log_after(
        offset,
        "database error: change listener: no answer from PostgreSQL within 1s",
        Duration::from_secs(10),
    );
    assert_eq!(ended.code(), tonic::Code::Unavailable);
    assert!(
        ended.message().contains("against PostgreSQL"),
        "{}",
        ended.message()
    );
    let (status, body) = http_get(serve.http, "/readyz");
    assert_eq!(status, 503);
    assert!(
        body.starts_with("not ready: ") && body.contains("against PostgreSQL"),
        "{body}"
    );
    assert_eq!(health(channel, "").await, NOT_SERVING);
    assert_eq!(health(channel, "keysync.v1.KeySync").await, NOT_SERVING);
    assert_eq!(
        health(channel, "envoy.service.ratelimit.v3.RateLimitService").await,
        SERVING
    );
    let refused = watch_in(channel, found.revision, 0).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    // Lookups of held keys still answer, and say how old they are.
    let stale = lookup(channel, &key_hash(&key.key)).await.unwrap();
    assert!(stale.key.is_some());
    assert!(stale.provenance.unwrap().confirmed_age_ms >= 1000);
    let (_, text) = http_get(serve.http, "/metrics");
    assert_eq!(metric(&text, "keysync_ready"), 0.0);
    assert!(metric(&text, "keysync_revision_probes_total{result=\"error\"}") >= 1.0);

    // Back: confirmed again within a second or two, serving, streams open again.
    proxy.restore();
    serve.process.wait_for_log_after(
        offset,
        "confirmation regained: key set confirmed against PostgreSQL again; serving again",
        Duration::from_secs(15),
    );
    eventually!(
        Duration::from_secs(5),
        "ready again",
        http_get(serve.http, "/readyz").0 == 200
    );
    assert_eq!(health(channel, "").await, SERVING);
    assert!(confirmed_age(&serve) < 2.0);
    let mut again = watch(channel, found.revision).await;
    let beat = next_message(&mut again, Duration::from_secs(2)).await;
    assert!(beat.provenance.unwrap().confirmed_age_ms < 2000);
    // And a revocation made now reaches the stream as before.
    ok(&url, &["keys", "revoke", &key.key_id]);
    let gone = next_change(&mut again, Duration::from_secs(5)).await;
    assert_eq!(gone.removals, vec![key_hash(&key.key)]);
    assert_no_secrets(&serve.process.log(), &[&key]);
}
