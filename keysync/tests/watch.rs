//! Push from PostgreSQL through `keysync serve` to WatchKeys clients, against a real
//! PostgreSQL: notifications drive catch-ups with the poll an hour away, streams replay
//! and follow changes, the listener survives a database restart without losing what
//! was committed while it was away, and several keysync processes all converge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::serve::*;
use common::*;
use keysync_e2e::Signal;
use keysync_proto::v1::KeyChanges;
use uuid::Uuid;

/// How fast a committed change must reach keysync's store and its watchers.
const PROPAGATION: Duration = Duration::from_secs(2);

/// With this poll interval, only notifications (or a lookup) can start a catch-up.
const NO_POLL: (&str, &str) = ("KEYSYNC_POLL_INTERVAL", "1h");

fn hashes(hashes: &[Vec<u8>]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

fn upserted(message: &KeyChanges) -> Vec<String> {
    hashes(
        &message
            .upserts
            .iter()
            .map(|record| record.key_hash.clone())
            .collect::<Vec<_>>(),
    )
}

fn removed(message: &KeyChanges) -> Vec<String> {
    hashes(&message.removals)
}

fn hash_hex(key: &str) -> String {
    hex::encode(key_hash(key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_bring_changes_without_polling() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    create_key(&url, &org, "existing", &[]);
    let serve = start_serve(&url, &[NO_POLL]).await;
    let channel = &serve.channel;
    assert_eq!(listed(channel).await.len(), 1);

    // ListKeys never catches up by itself: what it shows came through notifications.
    let created = create_key(&url, &org, "created", &[]);
    eventually!(
        PROPAGATION,
        "created key listed",
        listed(channel).await.contains(&key_hash(&created.key))
    );
    ok(&url, &["keys", "revoke", &created.key_id]);
    eventually!(
        PROPAGATION,
        "revoked key gone",
        !listed(channel).await.contains(&key_hash(&created.key))
    );

    let revision = store_revision(channel).await;
    let (_, text) = http_get(serve.http, "/metrics");
    assert!(
        metric(&text, "keysync_notifications_total") >= 2.0,
        "{text}"
    );
    assert_eq!(metric(&text, "keysync_database_revision"), revision as f64);
    assert_eq!(metric(&text, "keysync_store_revision"), revision as f64);
    assert_eq!(metric(&text, "keysync_changelog_batches"), 2.0, "{text}");
    assert_eq!(metric(&text, "keysync_watch_streams"), 0.0);
    assert_eq!(
        metric(&text, "keysync_lookups_total{result=\"found\"}")
            + metric(&text, "keysync_lookups_total{result=\"not_found\"}"),
        0.0
    );
    assert_no_secrets(&serve.process.log(), &[&created]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_changes_heartbeats_resyncs_and_replays() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let existing = create_key(&url, &org, "existing", &[]);
    let serve = start_serve(&url, &[NO_POLL, ("KEYSYNC_WATCH_HEARTBEAT", "300ms")]).await;
    let channel = &serve.channel;
    let opened_at = store_revision(channel).await;

    let mut stream = watch(channel, opened_at).await;
    serve.process.wait_for_log(
        &format!("watch opened: after_revision={opened_at}"),
        Duration::from_secs(5),
    );

    // Idle: heartbeats at the store's revision, a few a second.
    for _ in 0..2 {
        let beat = next_message(&mut stream, Duration::from_secs(2)).await;
        assert!(is_heartbeat(&beat), "{beat:?}");
        assert_eq!(beat.revision, opened_at);
        assert!(!beat.partial);
    }

    // A new key arrives as an upsert, with everything the filter needs.
    let created = create_key(&url, &org, "created", &["--expires-in", "1h"]);
    let added = next_change(&mut stream, PROPAGATION).await;
    assert_eq!(upserted(&added), vec![hash_hex(&created.key)]);
    assert!(removed(&added).is_empty());
    assert!(added.revision > opened_at);
    assert!(!added.resync_required && !added.partial);
    let record = &added.upserts[0];
    assert_eq!(
        record.key_id,
        Uuid::parse_str(&created.key_id)
            .unwrap()
            .as_bytes()
            .to_vec()
    );
    assert_eq!(
        record.org_id,
        Uuid::parse_str(&org).unwrap().as_bytes().to_vec()
    );
    assert!(record.expires_at > chrono::Utc::now().timestamp());

    // Its revocation arrives as a removal, at a later revision.
    ok(&url, &["keys", "revoke", &created.key_id]);
    let gone = next_change(&mut stream, PROPAGATION).await;
    assert_eq!(removed(&gone), vec![hash_hex(&created.key)]);
    assert!(upserted(&gone).is_empty());
    assert!(gone.revision > added.revision);

    // Quiet again: heartbeats carry the newest revision.
    let beat = next_message(&mut stream, Duration::from_secs(2)).await;
    assert!(is_heartbeat(&beat), "{beat:?}");
    assert_eq!(beat.revision, gone.revision);

    let (_, text) = http_get(serve.http, "/metrics");
    assert_eq!(metric(&text, "keysync_watch_streams"), 1.0, "{text}");
    assert_eq!(
        metric(&text, "keysync_grpc_requests_total{method=\"WatchKeys\"}"),
        1.0
    );

    // Opened at 0 (no key set at all, older than the changelog): reload first.
    let mut fresh = watch(channel, 0).await;
    let first = next_message(&mut fresh, Duration::from_secs(2)).await;
    assert!(first.resync_required, "{first:?}");
    assert_eq!(first.revision, gone.revision);
    assert!(first.upserts.is_empty() && first.removals.is_empty());
    // ... and then it follows live changes like any other stream.
    let later = create_key(&url, &org, "later", &[]);
    let live = next_change(&mut fresh, PROPAGATION).await;
    assert_eq!(upserted(&live), vec![hash_hex(&later.key)]);
    assert!(!live.resync_required);

    // Opened at an old revision the changelog still covers: the missed changes, in
    // order, then nothing more but heartbeats.
    let mut behind = watch(channel, opened_at).await;
    let replayed = [
        next_change(&mut behind, PROPAGATION).await,
        next_change(&mut behind, PROPAGATION).await,
        next_change(&mut behind, PROPAGATION).await,
    ];
    assert_eq!(
        replayed.iter().map(|m| m.revision).collect::<Vec<_>>(),
        vec![added.revision, gone.revision, live.revision]
    );
    assert_eq!(upserted(&replayed[0]), vec![hash_hex(&created.key)]);
    assert_eq!(removed(&replayed[1]), vec![hash_hex(&created.key)]);
    assert_eq!(upserted(&replayed[2]), vec![hash_hex(&later.key)]);
    let beat = next_message(&mut behind, Duration::from_secs(2)).await;
    assert!(is_heartbeat(&beat), "{beat:?}");
    assert_eq!(beat.revision, live.revision);

    // Gone clients close their streams.
    drop((stream, fresh, behind));
    eventually!(Duration::from_secs(5), "streams closed", {
        let (_, text) = http_get(serve.http, "/metrics");
        metric(&text, "keysync_watch_streams") == 0.0
    });
    serve
        .process
        .wait_for_log("watch closed", Duration::from_secs(5));
    assert_no_secrets(&serve.process.log(), &[&existing, &created, &later]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_survives_a_database_restart_and_loses_nothing() {
    let (mut postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    create_key(&url, &org, "existing", &[]);
    let mut serve = start_serve(&url, &[NO_POLL, ("KEYSYNC_WATCH_HEARTBEAT", "1s")]).await;
    let channel = &serve.channel;
    let before = store_revision(channel).await;

    // The restart: the listener says it lost its connection, and comes back. Streams
    // close meanwhile (keysync cannot confirm its keys); a client resumes after the
    // revision it had and misses nothing.
    let offset = serve.process.log_len();
    postgres.stop();
    serve.process.wait_for_log_after(
        offset,
        "database error: change listener: ",
        Duration::from_secs(20),
    );
    postgres.start_again();
    // Committed right after the restart, most likely before the listener is back
    // (its next attempt is at least a second away): recovered by the catch-up that
    // follows every reconnection, since the poll is an hour away.
    let during = create_key(&url, &org, "right after the restart", &[]);
    let reconnected = serve.process.wait_for_log_after(
        offset,
        "change listener connected",
        Duration::from_secs(60),
    );
    assert!(!reconnected.is_empty());
    eventually!(
        Duration::from_secs(10),
        "serving again",
        health(channel, "keysync.v1.KeySync").await == 1 // SERVING
    );
    let mut stream = watch(channel, before).await;
    let recovered = next_change(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(upserted(&recovered), vec![hash_hex(&during.key)]);

    // After the reconnection, changes arrive as fast as before the restart.
    let after = create_key(&url, &org, "after the restart", &[]);
    let pushed = next_change(&mut stream, PROPAGATION).await;
    assert_eq!(upserted(&pushed), vec![hash_hex(&after.key)]);
    assert!(pushed.revision > recovered.revision);
    assert!(listed(channel).await.contains(&key_hash(&after.key)));

    // Deterministically while not listening: the listener's backend is terminated and
    // a key committed before it can reconnect (no notification reaches keysync).
    let offset = serve.process.log_len();
    let unheard = sql(
        &postgres,
        &url,
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%keysync_changes%' \
           AND pid <> pg_backend_pid(); \
         INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix) \
         SELECT gen_random_uuid(), id, 'unheard', sha256('unheard'::bytea), 'sk_live_unhe' \
         FROM organizations; \
         SELECT encode(sha256('unheard'::bytea), 'hex')",
    );
    let unheard = unheard.lines().last().unwrap().to_owned();
    serve.process.wait_for_log_after(
        offset,
        "database error: change listener: ",
        Duration::from_secs(10),
    );
    serve
        .process
        .wait_for_log_after(offset, "change listener connected", Duration::from_secs(10));
    let recovered = next_change(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(upserted(&recovered), vec![unheard]);
    let log = serve.process.log();

    let (_, text) = http_get(serve.http, "/metrics");
    assert_eq!(metric(&text, "keysync_watch_streams"), 1.0);
    assert_no_secrets(&log, &[&during, &after]);

    // SIGTERM with a stream open: the stream ends and keysync exits promptly.
    serve.process.signal(Signal::Term);
    let status = serve
        .process
        .wait_exit(Duration::from_secs(10))
        .expect("keysync exits after SIGTERM with a watch open");
    assert!(status.success(), "{status:?}\n{}", serve.process.log());
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
            Ok(Ok(Some(message))) => assert!(is_heartbeat(&message), "{message:?}"),
            Ok(Ok(None) | Err(_)) => break,
            Err(_) => panic!("the stream outlived the server"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_keysync_on_one_database_delivers_a_revocation() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let doomed = create_key(&url, &org, "doomed", &[]);
    let first = start_serve(&url, &[NO_POLL]).await;
    let second = start_serve(&url, &[NO_POLL]).await;
    let mut streams = Vec::new();
    for serve in [&first, &second] {
        let revision = store_revision(&serve.channel).await;
        streams.push(watch(&serve.channel, revision).await);
    }

    ok(&url, &["keys", "revoke", &doomed.key_id]);
    let mut revisions = Vec::new();
    for stream in &mut streams {
        let gone = next_change(stream, PROPAGATION).await;
        assert_eq!(removed(&gone), vec![hash_hex(&doomed.key)]);
        revisions.push(gone.revision);
    }
    assert_eq!(revisions[0], revisions[1], "one database, one revision");
    for serve in [&first, &second] {
        assert!(!listed(&serve.channel)
            .await
            .contains(&key_hash(&doomed.key)));
    }
}
