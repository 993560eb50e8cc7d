//! Rate limits against a real PostgreSQL: `orgs set-limit` and `keys set-limit` (text,
//! JSON, `--clear`, and every misuse: one line, exit 1, nothing written), the listings,
//! which limit the loader gives each key (its own, its organization's, none), rotation
//! keeping a key's own limit, and a limit change reaching a WatchKeys client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::serve::*;
use common::*;
use keysync::key_set::key_entry::KeyEntry;
use keysync::sync::loader::{Loader, PgLoader};
use keysync_contract::limit::{KeyLimit, Limit};
use keysync_e2e::TestPostgres;
use keysync_proto::v1::KeyChanges;
use serde_json::json;
use uuid::Uuid;

/// The `rate_limit_configs` row of an organization, as psql prints it (`rpm|burst`).
fn org_row(postgres: &TestPostgres, url: &str, org: &str) -> String {
    sql(
        postgres,
        url,
        &format!(
            "SELECT requests_per_minute, burst FROM rate_limit_configs WHERE org_id = '{org}'"
        ),
    )
}

/// A key's own limit columns and revision, as psql prints them (`rpm|burst|revision`).
fn key_row(postgres: &TestPostgres, url: &str, key_id: &str) -> String {
    sql(
        postgres,
        url,
        &format!(
            "SELECT rate_limit_rpm, rate_limit_burst, revision FROM api_keys WHERE id = '{key_id}'"
        ),
    )
}

fn limit(requests_per_minute: u32, burst: u32, per_key: bool) -> Option<KeyLimit> {
    Some(KeyLimit {
        limit: Limit {
            requests_per_minute,
            burst,
        },
        per_key,
    })
}

#[test]
fn orgs_set_limit_sets_replaces_and_clears() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let other = create_org(&url, "Beta");

    assert_eq!(
        ok(
            &url,
            &["orgs", "set-limit", &org, "--rpm", "100", "--burst", "20"]
        ),
        format!(
            "organization {org}: rate limit 100/min+20, 120 requests a minute shared by its keys\n"
        )
    );
    assert_eq!(org_row(&postgres, &url, &org), "100|20");

    // Burst defaults to 0; an upsert replaces the row.
    let set = json(&url, &["orgs", "set-limit", &org, "--rpm", "50", "--json"]);
    assert_eq!(
        set,
        json!({
            "org_id": org,
            "rate_limit": {"requests_per_minute": 50, "burst": 0},
            "changed": true
        })
    );
    assert_eq!(org_row(&postgres, &url, &org), "50|0");

    // The same limit again writes nothing.
    let updated_at = |postgres: &TestPostgres| {
        sql(
            postgres,
            &url,
            &format!("SELECT updated_at FROM rate_limit_configs WHERE org_id = '{org}'"),
        )
    };
    let before = updated_at(&postgres);
    let again = json(&url, &["orgs", "set-limit", &org, "--rpm", "50", "--json"]);
    assert_eq!(again["changed"], false);
    assert!(ok(&url, &["orgs", "set-limit", &org, "--rpm", "50"]).ends_with(" (unchanged)\n"));
    assert_eq!(updated_at(&postgres), before);

    // Listings show it, and `-` for an organization without one.
    let table = ok(&url, &["orgs", "list"]);
    let limit_of = |id: &str| {
        table
            .lines()
            .find(|line| line.starts_with(id))
            .and_then(|line| line.split_whitespace().last())
            .unwrap_or_else(|| panic!("{id} not in {table}"))
            .to_owned()
    };
    assert_eq!(limit_of(&org), "50/min+0");
    assert_eq!(limit_of(&other), "-");
    let listed = json(&url, &["orgs", "list", "--json"]);
    assert_eq!(
        listed[0]["rate_limit"],
        json!({"requests_per_minute": 50, "burst": 0})
    );
    assert_eq!(listed[1]["rate_limit"], serde_json::Value::Null);

    assert_eq!(
        ok(&url, &["orgs", "set-limit", &org, "--clear"]),
        format!("organization {org}: no rate limit\n")
    );
    assert_eq!(org_row(&postgres, &url, &org), "");
    let cleared = json(&url, &["orgs", "set-limit", &org, "--clear", "--json"]);
    assert_eq!(
        cleared,
        json!({"org_id": org, "rate_limit": null, "changed": false})
    );

    // The largest values the schema stores.
    ok(
        &url,
        &[
            "orgs",
            "set-limit",
            &other,
            "--rpm",
            "2147483647",
            "--burst",
            "2147483647",
        ],
    );
    assert_eq!(org_row(&postgres, &url, &other), "2147483647|2147483647");
}

#[test]
fn keys_set_limit_overrides_and_falls_back_to_the_org() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "ci", &[]);
    let plain = create_key(&url, &org, "plain", &[]);
    let id = key.key_id.as_str();
    let revision = |postgres: &TestPostgres| -> i64 {
        key_row(postgres, &url, id)
            .rsplit('|')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };

    // Nothing anywhere: clearing is a no-op that says so.
    assert_eq!(
        ok(&url, &["keys", "set-limit", id, "--clear"]),
        format!(
            "key {id}: no rate limit (neither the key nor its organization has one) (unchanged)\n"
        )
    );

    let before = revision(&postgres);
    assert_eq!(
        ok(
            &url,
            &["keys", "set-limit", id, "--rpm", "10", "--burst", "2"]
        ),
        format!(
            "key {id}: rate limit 10/min+2 of its own, 12 requests a minute for this key alone\n"
        )
    );
    assert!(key_row(&postgres, &url, id).starts_with("10|2|"));
    let stamped = revision(&postgres);
    assert!(
        stamped > before,
        "the key was not restamped: {before} -> {stamped}"
    );

    // Burst defaults to 0 (stored as 0).
    let set = json(&url, &["keys", "set-limit", id, "--rpm", "10", "--json"]);
    assert_eq!(
        set,
        json!({
            "key_id": id,
            "org_id": org,
            "rate_limit": {"requests_per_minute": 10, "burst": 0, "per_key": true},
            "changed": true
        })
    );
    assert!(key_row(&postgres, &url, id).starts_with("10|0|"));
    // The same again writes nothing, so the key keeps its revision.
    let stamped = revision(&postgres);
    let again = json(
        &url,
        &[
            "keys",
            "set-limit",
            id,
            "--rpm",
            "10",
            "--burst",
            "0",
            "--json",
        ],
    );
    assert_eq!(again["changed"], false);
    assert_eq!(revision(&postgres), stamped);

    // With an organization limit: the override wins for its key, the org's applies to
    // the others.
    ok(
        &url,
        &["orgs", "set-limit", &org, "--rpm", "100", "--burst", "20"],
    );
    let table = ok(&url, &["keys", "list", "--org-id", &org]);
    let cells = |key_id: &str| -> Vec<String> {
        table
            .lines()
            .find(|line| line.starts_with(key_id))
            .unwrap_or_else(|| panic!("{key_id} not in {table}"))
            .split_whitespace()
            .rev()
            // The scopes, allowlist and last use come after the limit and its budget.
            .skip(3)
            .take(2)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(cells(id), ["key", "10/min+0"], "{table}");
    assert_eq!(cells(&plain.key_id), ["org", "100/min+20"], "{table}");
    let listed = json(&url, &["keys", "list", "--org-id", &org, "--json"]);
    let listed_limit = |key_id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["key_id"] == key_id)
            .unwrap()["rate_limit"]
            .clone()
    };
    assert_eq!(
        listed_limit(id),
        json!({"requests_per_minute": 10, "burst": 0, "per_key": true})
    );
    assert_eq!(
        listed_limit(&plain.key_id),
        json!({"requests_per_minute": 100, "burst": 20, "per_key": false})
    );

    // Cleared, the key shares its organization's limit again.
    assert_eq!(
        ok(&url, &["keys", "set-limit", id, "--clear"]),
        format!(
            "key {id}: no limit of its own; its organization's 100/min+20 applies, shared \
             with the organization's other keys\n"
        )
    );
    assert!(key_row(&postgres, &url, id).starts_with("||"));
    let cleared = json(&url, &["keys", "set-limit", id, "--clear", "--json"]);
    assert_eq!(
        cleared["rate_limit"],
        json!({"requests_per_minute": 100, "burst": 20, "per_key": false})
    );
    assert_eq!(cleared["changed"], false);

    // A revoked key can be given one too (it matters again nowhere, but is no error).
    ok(&url, &["keys", "revoke", &plain.key_id]);
    ok(&url, &["keys", "set-limit", &plain.key_id, "--rpm", "3"]);
    assert!(key_row(&postgres, &url, &plain.key_id).starts_with("3|0|"));

    // The schema refuses what the CLI refuses, whoever writes it.
    for set in [
        "rate_limit_burst = 5, rate_limit_rpm = NULL",
        "rate_limit_rpm = 0",
        "rate_limit_rpm = 5, rate_limit_burst = -1",
    ] {
        sql(
            &postgres,
            &url,
            &format!(
                "DO $$ BEGIN \
                     UPDATE api_keys SET {set} WHERE id = '{id}'; \
                     RAISE EXCEPTION 'accepted: {set}'; \
                 EXCEPTION WHEN check_violation THEN NULL; \
                 END $$"
            ),
        );
    }
}

#[test]
fn rotation_keeps_the_key_s_own_limit() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let old = create_key(&url, &org, "ci", &[]);
    ok(
        &url,
        &[
            "keys",
            "set-limit",
            &old.key_id,
            "--rpm",
            "7",
            "--burst",
            "1",
        ],
    );
    let rotated = json(&url, &["keys", "rotate", &old.key_id, "--json"]);
    let new_id = rotated["key_id"].as_str().unwrap();
    let listed = json(&url, &["keys", "list", "--org-id", &org, "--json"]);
    let new_limit = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key_id"] == new_id)
        .unwrap()["rate_limit"]
        .clone();
    assert_eq!(
        new_limit,
        json!({"requests_per_minute": 7, "burst": 1, "per_key": true})
    );
}

#[test]
fn set_limit_misuse_is_one_line_and_writes_nothing() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "ci", &[]);
    ok(
        &url,
        &["orgs", "set-limit", &org, "--rpm", "100", "--burst", "20"],
    );
    ok(&url, &["keys", "set-limit", &key.key_id, "--rpm", "10"]);
    let org_before = org_row(&postgres, &url, &org);
    let key_before = key_row(&postgres, &url, &key.key_id);
    let unknown = Uuid::new_v4().to_string();

    for (what, id) in [("orgs", org.as_str()), ("keys", key.key_id.as_str())] {
        for (args, expected) in [
            (
                vec!["--clear", "--rpm", "5"],
                "--clear cannot be combined with --rpm or --burst",
            ),
            (
                vec!["--clear", "--burst", "5"],
                "--clear cannot be combined with --rpm or --burst",
            ),
            (
                vec![],
                "give --rpm N (and optionally --burst B), or --clear",
            ),
            (vec!["--burst", "5"], "--burst needs --rpm"),
            (
                vec!["--rpm", "0"],
                "invalid --rpm '0': expected a whole number from 1 to 2147483647",
            ),
            (
                vec!["--rpm", "-5"],
                "invalid --rpm '-5': expected a whole number from 1 to 2147483647",
            ),
            (
                vec!["--rpm", "2147483648"],
                "invalid --rpm '2147483648': expected a whole number from 1 to 2147483647",
            ),
            (
                vec!["--rpm", "ten"],
                "invalid --rpm 'ten': expected a whole number",
            ),
            (
                vec!["--rpm", "5", "--burst", "-1"],
                "invalid --burst '-1': expected a whole number from 0 to 2147483647",
            ),
            (
                vec!["--rpm", "5", "--burst", "4294967296"],
                "invalid --burst '4294967296'",
            ),
        ] {
            let mut full = vec![what, "set-limit", id];
            full.extend_from_slice(&args);
            assert_one_line_error(&keysync(Some(&url), &full), expected);
            // Checked before connecting: the same error without a database.
            assert_one_line_error(&keysync(None, &full), expected);
        }
    }
    assert_one_line_error(
        &keysync(Some(&url), &["orgs", "set-limit", &unknown, "--rpm", "5"]),
        &format!("organization {unknown} not found"),
    );
    assert_one_line_error(
        &keysync(Some(&url), &["orgs", "set-limit", &unknown, "--clear"]),
        &format!("organization {unknown} not found"),
    );
    assert_one_line_error(
        &keysync(Some(&url), &["keys", "set-limit", &unknown, "--rpm", "5"]),
        &format!("key {unknown} not found"),
    );
    assert_one_line_error(
        &keysync(
            Some(&url),
            &["keys", "set-limit", &unknown, "--clear", "--json"],
        ),
        &format!("key {unknown} not found"),
    );
    assert_one_line_error(
        &keysync(Some(&url), &["keys", "set-limit", "nope", "--rpm", "5"]),
        "invalid key id 'nope': not a UUID",
    );
    assert_one_line_error(
        &keysync(Some(&url), &["orgs", "set-limit", "nope", "--clear"]),
        "invalid org id 'nope': not a UUID",
    );

    assert_eq!(org_row(&postgres, &url, &org), org_before);
    assert_eq!(key_row(&postgres, &url, &key.key_id), key_before);
    assert_eq!(
        sql(&postgres, &url, "SELECT count(*) FROM rate_limit_configs"),
        "1"
    );

    // --help works for both commands and names the flags.
    for what in ["orgs", "keys"] {
        let help = keysync(None, &[what, "set-limit", "--help"]);
        assert!(help.success, "{help:?}");
        for flag in ["--rpm", "--burst", "--clear", "--json"] {
            assert!(help.stdout.contains(flag), "{what}: {}", help.stdout);
        }
    }
}

/// The limit of every key in a set of entries, by key id.
fn limits_by_key(entries: &[KeyEntry]) -> Vec<(Uuid, Option<KeyLimit>)> {
    let mut limits: Vec<_> = entries
        .iter()
        .map(|entry| (entry.key_id, entry.rate_limit))
        .collect();
    limits.sort_by_key(|(id, _)| *id);
    limits
}

#[tokio::test]
async fn the_loader_gives_each_key_its_own_limit_else_its_org_s_else_none() {
    let (_postgres, url) = migrated_database();
    let limited_org = create_org(&url, "Limited");
    let free_org = create_org(&url, "Free");
    let own = create_key(&url, &limited_org, "own", &[]);
    let shared = create_key(&url, &limited_org, "shared", &[]);
    let unlimited = create_key(&url, &free_org, "unlimited", &[]);
    let own_in_free = create_key(&url, &free_org, "own in free", &[]);
    ok(
        &url,
        &[
            "orgs",
            "set-limit",
            &limited_org,
            "--rpm",
            "100",
            "--burst",
            "20",
        ],
    );
    ok(&url, &["keys", "set-limit", &own.key_id, "--rpm", "10"]);
    ok(
        &url,
        &[
            "keys",
            "set-limit",
            &own_in_free.key_id,
            "--rpm",
            "5",
            "--burst",
            "5",
        ],
    );

    let loader = PgLoader::new(keysync::database::connect(&url).await.unwrap());
    let snapshot = loader.full_snapshot().await.unwrap();
    let id = |key: &CreatedKey| Uuid::parse_str(&key.key_id).unwrap();
    let mut expected = vec![
        (id(&own), limit(10, 0, true)),
        (id(&shared), limit(100, 20, false)),
        (id(&unlimited), None),
        (id(&own_in_free), limit(5, 5, true)),
    ];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(limits_by_key(&snapshot.keys), expected);

    // An org change restamps its keys, the override ones included (their limit is
    // unchanged); a key change restamps that key only.
    let after = snapshot.revision;
    ok(&url, &["orgs", "set-limit", &limited_org, "--rpm", "200"]);
    ok(&url, &["keys", "set-limit", &own_in_free.key_id, "--clear"]);
    let (_, changes) = loader.changes_since(after).await.unwrap();
    assert!(changes.revision > after);
    assert!(changes.removals.is_empty());
    let mut expected = vec![
        (id(&own), limit(10, 0, true)),
        (id(&shared), limit(200, 0, false)),
        (id(&own_in_free), None),
    ];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(limits_by_key(&changes.upserts), expected);
}

/// `(requests_per_minute, burst, per_key)` as a record carries it.
type WireLimit = Option<(u32, u32, bool)>;

fn limits_in(message: &KeyChanges) -> Vec<(Vec<u8>, WireLimit)> {
    let mut limits: Vec<_> = message
        .upserts
        .iter()
        .map(|record| {
            (
                record.key_hash.clone(),
                record
                    .rate_limit
                    .map(|l| (l.requests_per_minute, l.burst, l.per_key)),
            )
        })
        .collect();
    limits.sort();
    limits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_changes_reach_watch_clients_without_a_restart() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let own = create_key(&url, &org, "own", &[]);
    let shared = create_key(&url, &org, "shared", &[]);
    // Only notifications can start a catch-up: the poll is an hour away.
    let serve = start_serve(&url, &[("KEYSYNC_POLL_INTERVAL", "1h")]).await;
    let mut stream = watch(&serve.channel, store_revision(&serve.channel).await).await;
    let limit = Duration::from_secs(5);

    ok(
        &url,
        &[
            "keys",
            "set-limit",
            &own.key_id,
            "--rpm",
            "10",
            "--burst",
            "1",
        ],
    );
    let message = next_change(&mut stream, limit).await;
    assert_eq!(
        limits_in(&message),
        [(key_hash(&own.key), Some((10, 1, true)))]
    );

    ok(
        &url,
        &["orgs", "set-limit", &org, "--rpm", "100", "--burst", "20"],
    );
    let message = next_change(&mut stream, limit).await;
    let mut expected = vec![
        (key_hash(&own.key), Some((10, 1, true))),
        (key_hash(&shared.key), Some((100, 20, false))),
    ];
    expected.sort();
    assert_eq!(limits_in(&message), expected);

    ok(&url, &["keys", "set-limit", &own.key_id, "--clear"]);
    let message = next_change(&mut stream, limit).await;
    assert_eq!(
        limits_in(&message),
        [(key_hash(&own.key), Some((100, 20, false)))]
    );

    ok(&url, &["orgs", "set-limit", &org, "--clear"]);
    let message = next_change(&mut stream, limit).await;
    let mut expected = vec![(key_hash(&own.key), None), (key_hash(&shared.key), None)];
    expected.sort();
    assert_eq!(limits_in(&message), expected);

    // ListKeys agrees.
    let listed = list_all(&serve.channel, 0, 10_000).await;
    assert!(listed.iter().all(|record| record.rate_limit.is_none()));
}

/// An organization's limit change that waits for another one's lock records, as the
/// limit it replaced, the one that other change committed: the limit is read after the
/// lock, not in the statement that waited for it.
#[tokio::test]
async fn an_org_limit_change_waiting_for_another_records_the_limit_it_replaced() {
    use keysync::operations::actor::Actor;
    use keysync::operations::limits::{set_org_limit, LimitChange};

    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let pool = keysync::database::connect(&url).await.unwrap();
    let org_id: Uuid = org.parse().unwrap();

    // A change in progress: it holds the organization's lock and has written 100+10.
    let mut transaction = org_lock::hold(&pool, org_id).await;
    sqlx::query(
        "INSERT INTO rate_limit_configs (org_id, requests_per_minute, burst) \
         VALUES ($1, 100, 10)",
    )
    .bind(org_id)
    .execute(&mut *transaction)
    .await
    .unwrap();
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move {
            let limit = Limit {
                requests_per_minute: 200,
                burst: 20,
            };
            set_org_limit(&pool, Actor::Cli, org_id, LimitChange::Set(limit)).await
        }
    });
    org_lock::until_waiting(&pool, &waiting).await;
    transaction.commit().await.unwrap();

    let outcome = waiting.await.unwrap().unwrap();
    assert!(outcome.changed);
    assert_eq!(org_row(&postgres, &url, &org), "200|20");
    assert_eq!(
        sql(
            &postgres,
            &url,
            "SELECT coalesce(old_value::text, 'null') || ' -> ' || new_value::text \
             FROM audit_events WHERE action = 'org.limit_set'",
        ),
        r#"{"burst": 10, "requests_per_minute": 100} -> {"burst": 20, "requests_per_minute": 200}"#
    );
}
