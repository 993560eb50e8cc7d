//! Revision histories against a real PostgreSQL: every keysync on one database agrees
//! on the epoch, a copy of the database has another, a revision counter that goes back
//! (an older dump restored) starts a new history that every watcher is told to reload
//! from, and clients ahead of keysync or from another history are told to resync
//! instead of waiting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::serve::*;
use common::*;

/// Confirmation (and so detection) every 300 ms.
const FAST: (&str, &str) = ("KEYSYNC_CONFIRM_INTERVAL", "300ms");

async fn epoch(channel: &tonic::transport::Channel) -> u64 {
    list_page(channel, &[], 1)
        .await
        .unwrap()
        .provenance
        .unwrap()
        .epoch
}

fn history_id(postgres: &keysync_e2e::TestPostgres, url: &str) -> String {
    sql(postgres, url, "SELECT history_id FROM keysync_revision")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_database_one_epoch_and_a_copy_has_another() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    create_key(&url, &org, "existing", &[]);
    // A restore into another database (here: a copy, made while nobody is connected)
    // counts the same revisions, with the same history id, but in another history.
    postgres.psql(
        "postgres",
        &format!("CREATE DATABASE copied TEMPLATE {}", database_name(&url)),
    );
    let first = start_serve(&url, &[]).await;
    let second = start_serve(&url, &[]).await;
    let shared = epoch(&first.channel).await;
    assert_ne!(shared, 0);
    assert_eq!(epoch(&second.channel).await, shared);
    assert_eq!(
        lookup(&first.channel, &[7; 32])
            .await
            .unwrap()
            .provenance
            .unwrap()
            .epoch,
        shared
    );

    let copy_url = format!("{}/copied", url.rsplit_once('/').unwrap().0);
    assert_eq!(
        history_id(&postgres, &copy_url),
        history_id(&postgres, &url)
    );
    let on_copy = start_serve(&copy_url, &[]).await;
    assert_eq!(
        store_revision(&on_copy.channel).await,
        store_revision(&first.channel).await
    );
    assert_ne!(epoch(&on_copy.channel).await, shared);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_gone_back_starts_a_new_history_that_every_watcher_reloads() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let kept = create_key(&url, &org, "kept", &[]);
    let dump_revision = sql(&postgres, &url, "SELECT revision FROM keysync_revision");
    let lost = create_key(&url, &org, "created after the dump", &[]);
    let serve = start_serve(&url, &[FAST]).await;
    let second = start_serve(&url, &[FAST]).await;
    let channel = &serve.channel;
    let before = epoch(channel).await;
    let revision = store_revision(channel).await;
    let mut stream = watch_in(channel, revision, before).await.unwrap();
    let mut other = watch_in(&second.channel, revision, before).await.unwrap();

    // "Restore" the older dump: the key created after it is gone, and the counter is
    // back where the dump left it (same database, same history id).
    let history_before = history_id(&postgres, &url);
    let offset = serve.process.log_len();
    sql(
        &postgres,
        &url,
        &format!(
            "BEGIN; \
             ALTER TABLE api_keys DISABLE TRIGGER USER; \
             DELETE FROM api_keys WHERE id = '{}'; \
             ALTER TABLE api_keys ENABLE TRIGGER USER; \
             UPDATE keysync_revision SET revision = {}; \
             COMMIT",
            lost.key_id,
            dump_revision.trim()
        ),
    );
    let started = Instant::now();
    for stream in [&mut stream, &mut other] {
        let resync = next_change(stream, Duration::from_secs(5)).await;
        assert!(resync.resync_required, "{resync:?}");
        let provenance = resync.provenance.unwrap();
        assert_ne!(provenance.epoch, before, "a new history");
        assert_eq!(
            resync.revision,
            dump_revision.trim().parse::<u64>().unwrap()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    serve.process.wait_for_log_after(
        offset,
        "revision history changed: database at revision=",
        Duration::from_secs(5),
    );
    // One of the two wrote a new history id; both follow it.
    assert_ne!(history_id(&postgres, &url), history_before);
    let after = epoch(channel).await;
    assert_eq!(epoch(&second.channel).await, after);
    let listed = listed(channel).await;
    assert!(listed.contains(&key_hash(&kept.key)));
    assert!(!listed.contains(&key_hash(&lost.key)), "the restored set");
    let (_, text) = http_get(serve.http, "/metrics");
    assert!(metric(&text, "keysync_history_resets_total") >= 1.0);

    // A revocation made after the restore reaches a client that reloaded, within 2 s.
    let reloaded_at = store_revision(channel).await;
    let mut fresh = watch_in(channel, reloaded_at, after).await.unwrap();
    ok(&url, &["keys", "revoke", &kept.key_id]);
    let gone = next_change(&mut fresh, Duration::from_secs(2)).await;
    assert_eq!(gone.removals, vec![key_hash(&kept.key)]);
    assert_eq!(gone.provenance.unwrap().epoch, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_ahead_or_from_another_history_are_told_to_resync() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    create_key(&url, &org, "existing", &[]);
    let serve = start_serve(&url, &[]).await;
    let channel = &serve.channel;
    let current = epoch(channel).await;
    let revision = store_revision(channel).await;

    // Ahead (one corrupt heartbeat, or a keysync of another database): resync within
    // a catch-up or two, not when the counter passes it some day.
    let asked = Instant::now();
    let mut ahead = watch_in(channel, revision + 1000, current).await.unwrap();
    let resync = next_message(&mut ahead, Duration::from_secs(5)).await;
    assert!(resync.resync_required, "{resync:?}");
    assert_eq!(resync.revision, revision);
    assert!(asked.elapsed() < Duration::from_secs(3));

    // Another history: resync at once, whatever the revision.
    let mut other = watch_in(channel, revision, current ^ 1).await.unwrap();
    let resync = next_message(&mut other, Duration::from_secs(1)).await;
    assert!(resync.resync_required, "{resync:?}");
    assert_eq!(resync.provenance.unwrap().epoch, current);

    // The right history and revision: just heartbeats.
    let mut right = watch_in(channel, revision, current).await.unwrap();
    let beat = next_message(&mut right, Duration::from_secs(10)).await;
    assert!(is_heartbeat(&beat), "{beat:?}");
}
