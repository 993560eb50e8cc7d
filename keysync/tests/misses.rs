//! Lookups of keys `keysync serve` does not hold, against a real PostgreSQL: while the
//! change listener is up they are answered from memory and cost the database nothing,
//! and a new key still arrives through its notification; while the listener is down
//! each miss waits for a catch-up, so a key created meanwhile is found at once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::serve::*;
use common::*;
use keysync_e2e::TestPostgres;
use uuid::Uuid;

/// With this poll interval, only notifications (or a lookup) can start a catch-up.
const NO_POLL: (&str, &str) = ("KEYSYNC_POLL_INTERVAL", "1h");
/// Nor the periodic confirmation (which reads the revision counter every 2 s), so any
/// transaction PostgreSQL sees would be a lookup's.
const NO_PROBE: [(&str, &str); 2] = [
    ("KEYSYNC_CONFIRM_INTERVAL", "1h"),
    ("KEYSYNC_MAX_UNCONFIRMED", "2h"),
];

/// Random unknown keys looked up while the listener is up.
const LOOKUPS: usize = 200;

/// Transactions PostgreSQL has committed in the database so far.
fn commits(postgres: &TestPostgres, url: &str) -> u64 {
    sql(
        postgres,
        url,
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .trim()
    .parse()
    .unwrap()
}

fn metrics(http: SocketAddr) -> String {
    let (status, text) = http_get(http, "/metrics");
    assert_eq!(status, 200);
    text
}

fn misses(http: SocketAddr, answered_by: &str) -> f64 {
    metric(
        &metrics(http),
        &format!("keysync_misses_total{{answered_by=\"{answered_by}\"}}"),
    )
}

fn catch_ups(http: SocketAddr) -> f64 {
    metric(
        &metrics(http),
        "keysync_db_loads_total{kind=\"incremental\",result=\"ok\"}",
    )
}

fn listener_up(http: SocketAddr) -> bool {
    metric(&metrics(http), "keysync_change_listener_up") == 1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_listener_is_up_misses_cost_no_query_and_new_keys_still_arrive() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let existing = create_key(&url, &org, "existing", &[]);
    let serve = start_serve(&url, &[NO_POLL, NO_PROBE[0], NO_PROBE[1]]).await;
    eventually!(
        Duration::from_secs(10),
        "listener caught up",
        listener_up(serve.http)
    );

    let loads_before = catch_ups(serve.http);
    let commits_before = commits(&postgres, &url);
    for _ in 0..LOOKUPS {
        let hash: [u8; 32] = rand::random();
        let answer = lookup(&serve.channel, &hash).await.unwrap();
        assert_eq!(answer.key, None);
    }
    let commits_after = commits(&postgres, &url);
    // keysync ran no catch-up...
    assert_eq!(catch_ups(serve.http), loads_before);
    assert_eq!(misses(serve.http, "store"), LOOKUPS as f64);
    assert_eq!(misses(serve.http, "catch_up"), 0.0);
    // ... and PostgreSQL saw no transactions for them. Allowed for: our own first read
    // (counted when its session ends), and keysync's start-up transactions, whose
    // counts a backend may report up to 10 s late. (Before, each of these lookups
    // waited for a catch-up: about one transaction per 50 ms.)
    let extra = commits_after - commits_before;
    assert!(extra <= 4, "{extra} transactions during {LOOKUPS} lookups");

    // A key created now reaches memory through its notification.
    let created = create_key(&url, &org, "created", &[]);
    eventually!(
        Duration::from_secs(2),
        "the new key found by LookupKey",
        lookup(&serve.channel, &key_hash(&created.key))
            .await
            .unwrap()
            .key
            .is_some_and(|record| record.key_id
                == Uuid::parse_str(&created.key_id)
                    .unwrap()
                    .as_bytes()
                    .to_vec())
    );
    assert_eq!(
        misses(serve.http, "catch_up"),
        0.0,
        "no lookup asked for one"
    );
    assert_eq!(
        catch_ups(serve.http),
        loads_before + 1.0,
        "the notification's"
    );
    assert_no_secrets(&serve.process.log(), &[&existing, &created]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_listener_is_down_a_new_key_is_found_through_a_catch_up() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let serve = start_serve(&url, &[NO_POLL]).await;
    // The listener reconnects a second after losing its connection and then catches
    // up, which would find the key by itself: an attempt that loses that race (the
    // lookup found the key in memory, no miss) is tried again.
    for attempt in 1..=3 {
        eventually!(
            Duration::from_secs(10),
            "listener caught up",
            listener_up(serve.http)
        );
        let offset = serve.process.log_len();
        let terminated = sql(
            &postgres,
            &url,
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%keysync_changes%' \
               AND pid <> pg_backend_pid()",
        );
        assert_eq!(terminated.trim(), "1");
        serve.process.wait_for_log_after(
            offset,
            "database error: change listener: ",
            Duration::from_secs(10),
        );
        assert!(!listener_up(serve.http));
        let misses_before = misses(serve.http, "catch_up");

        // Its notification is lost: only the lookup's own catch-up can find it.
        let created = create_key(&url, &org, &format!("while down {attempt}"), &[]);
        let answer = lookup(&serve.channel, &key_hash(&created.key))
            .await
            .unwrap();
        let record = answer.key.expect("found on the first try");
        assert_eq!(
            record.key_id,
            Uuid::parse_str(&created.key_id)
                .unwrap()
                .as_bytes()
                .to_vec()
        );
        if misses(serve.http, "catch_up") == misses_before + 1.0 {
            assert_no_secrets(&serve.process.log(), &[&created]);
            return;
        }
        eprintln!("attempt {attempt}: the listener was back before the lookup");
    }
    panic!("the listener came back before every lookup");
}
