//! `keysync keys rotate` against a real PostgreSQL: the new key and its link to the old
//! one, the old key's grace period (or immediate revocation), both outputs, and every
//! refusal (one stderr line, exit 1, nothing written).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use keysync_e2e::TestPostgres;
use uuid::Uuid;

fn at(value: &serde_json::Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
        .parse()
        .unwrap()
}

fn assert_near(actual: DateTime<Utc>, expected: DateTime<Utc>) {
    assert!(
        (actual - expected).num_seconds().abs() < 120,
        "{actual} is not about {expected}"
    );
}

/// Seconds since the epoch of a timestamp column, as psql prints it.
fn epoch(postgres: &TestPostgres, url: &str, column: &str, id: &str) -> String {
    sql(
        postgres,
        url,
        &format!("SELECT extract(epoch FROM {column})::bigint FROM api_keys WHERE id = '{id}'"),
    )
}

/// A key's status as `keys list --json` shows it.
fn status(url: &str, org: &str, key_id: &str) -> String {
    let listed = json(url, &["keys", "list", "--org-id", org, "--json"]);
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["key_id"] == key_id)
        .map(|key| key["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{key_id} not listed: {listed}"))
}

#[test]
fn rotate_issues_a_linked_key_and_ends_the_old_one_after_the_grace() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let old = create_key(&url, &org, "ci deploy", &["--env", "test"]);

    let rotated = json(
        &url,
        &[
            "keys",
            "rotate",
            &old.key_id,
            "--grace",
            "2h",
            "--expires-in",
            "90d",
            "--json",
        ],
    );
    let mut fields: Vec<&str> = rotated
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "allowed_networks",
            "expires_at",
            "key",
            "key_id",
            "metadata",
            "name",
            "old_key_expires_at",
            "old_key_id",
            "org_id",
            "prefix",
            "scopes"
        ]
    );
    let key = rotated["key"].as_str().unwrap();
    assert!(key.starts_with("sk_test_"), "same environment: {key}");
    assert_eq!(key.len(), 8 + 32 + 6, "random part and checksum");
    assert_eq!(rotated["prefix"], key[..12]);
    assert_eq!(rotated["org_id"], org.as_str());
    assert_eq!(rotated["name"], "ci deploy");
    assert_eq!(rotated["old_key_id"], old.key_id.as_str());
    let new_id = rotated["key_id"].as_str().unwrap();
    assert_ne!(new_id, old.key_id);
    assert_near(at(&rotated["expires_at"]), Utc::now() + TimeDelta::days(90));
    let old_ends = at(&rotated["old_key_expires_at"]);
    assert_near(old_ends, Utc::now() + TimeDelta::hours(2));

    // Stored: the hash, the link, both expiries as printed, one revision for both.
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!(
                "SELECT rotated_from, encode(key_hash, 'hex'), key_prefix, name, active \
                 FROM api_keys WHERE id = '{new_id}'"
            )
        ),
        format!(
            "{}|{}|{}|ci deploy|t",
            old.key_id,
            hex::encode(key_hash(key)),
            &key[..12]
        )
    );
    assert_eq!(
        epoch(&postgres, &url, "expires_at", new_id),
        at(&rotated["expires_at"]).timestamp().to_string()
    );
    assert_eq!(
        epoch(&postgres, &url, "expires_at", &old.key_id),
        old_ends.timestamp().to_string()
    );
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!(
                "SELECT count(DISTINCT revision), bool_and(active), \
                        count(*) FILTER (WHERE rotated_from IS NULL) \
                 FROM api_keys WHERE id IN ('{new_id}', '{}')",
                old.key_id
            )
        ),
        "1|t|1"
    );
    let everything = sql(&postgres, &url, "SELECT t::text FROM api_keys t");
    assert!(!everything.contains(&key[8..]), "{everything}");

    // Both work during the grace period; then the old one shows as expired.
    assert_eq!(status(&url, &org, &old.key_id), "active");
    assert_eq!(status(&url, &org, new_id), "active");
    let short = json(&url, &["keys", "rotate", new_id, "--grace", "1s", "--json"]);
    assert_near(at(&short["old_key_expires_at"]), Utc::now());
    let deadline = Instant::now() + Duration::from_secs(15);
    while status(&url, &org, new_id) != "expired" {
        assert!(
            Instant::now() < deadline,
            "still not expired after its grace"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let newest = short["key_id"].as_str().unwrap();
    assert_eq!(status(&url, &org, newest), "active");
    assert_eq!(short["expires_at"], serde_json::Value::Null);
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!("SELECT rotated_from FROM api_keys WHERE id = '{newest}'")
        ),
        new_id
    );
}

#[test]
fn rotate_keeps_a_sooner_expiry_and_prints_text() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let old = create_key(&url, &org, "short lived", &["--expires-in", "1h"]);
    let old_expiry = old.expires_at.clone().unwrap();

    // Default grace (24h) is later than the key's own expiry: the expiry stays.
    let text = ok(&url, &["keys", "rotate", &old.key_id]);
    let lines: Vec<&str> = text.lines().collect();
    let field = |name: &str| {
        lines
            .iter()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_owned()
    };
    let key = field("key");
    assert!(key.starts_with("sk_live_"), "{key}");
    assert_eq!(field("org_id"), org);
    assert_eq!(field("name"), "short lived");
    assert_eq!(field("prefix"), key[..12]);
    assert_eq!(field("expires_at"), "never");
    assert_eq!(field("old_key_id"), old.key_id);
    assert_eq!(field("old_key_expires_at"), old_expiry);
    Uuid::parse_str(&field("key_id")).unwrap();
    assert!(lines.last().unwrap().contains("shown only once"), "{text}");
    assert_eq!(
        epoch(&postgres, &url, "expires_at", &old.key_id),
        at(&serde_json::Value::String(old_expiry))
            .timestamp()
            .to_string()
    );
}

#[test]
fn rotate_with_zero_grace_revokes_the_old_key_at_once() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let leaked = create_key(&url, &org, "leaked", &[]);
    let rotated = json(
        &url,
        &["keys", "rotate", &leaked.key_id, "--grace", "0s", "--json"],
    );
    assert_near(at(&rotated["old_key_expires_at"]), Utc::now());
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!(
                "SELECT active, revoked_at IS NOT NULL, expires_at IS NULL \
                 FROM api_keys WHERE id = '{}'",
                leaked.key_id
            )
        ),
        "f|t|t"
    );
    assert_eq!(status(&url, &org, &leaked.key_id), "revoked");
    assert_eq!(
        status(&url, &org, rotated["key_id"].as_str().unwrap()),
        "active"
    );
}

#[test]
fn rotate_refuses_unknown_revoked_expired_and_bad_arguments_writing_nothing() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let active = create_key(&url, &org, "active", &[]);
    let revoked = create_key(&url, &org, "revoked", &[]);
    ok(&url, &["keys", "revoke", &revoked.key_id]);
    let expired = create_key(&url, &org, "expired", &["--expires-in", "1h"]);
    sql(
        &postgres,
        &url,
        &format!(
            "UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = '{}'",
            expired.key_id
        ),
    );
    let odd = Uuid::new_v4().to_string();
    sql(
        &postgres,
        &url,
        &format!(
            "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix) \
             VALUES ('{odd}', '{org}', 'odd', sha256('odd'::bytea), 'pk_live_odd')"
        ),
    );
    let unknown = Uuid::new_v4().to_string();
    let state = || {
        sql(
            &postgres,
            &url,
            "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)), \
                    (SELECT revision FROM keysync_revision) \
             FROM api_keys t",
        )
    };
    let before = state();

    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["keys", "rotate", &unknown],
            format!("error: key {unknown} not found"),
        ),
        (
            vec!["keys", "rotate", "abc"],
            "error: invalid key id 'abc': not a UUID".to_owned(),
        ),
        (
            vec!["keys", "rotate", &revoked.key_id, "--json"],
            format!("error: key {} is revoked", revoked.key_id),
        ),
        (
            vec!["keys", "rotate", &expired.key_id],
            format!("error: key {} has expired", expired.key_id),
        ),
        (
            vec!["keys", "rotate", &odd],
            format!("error: key {odd} has prefix 'pk_live_odd', which is neither"),
        ),
        (
            vec!["keys", "rotate", &active.key_id, "--grace", "-1h"],
            "error: invalid --grace '-1h': must not be negative".to_owned(),
        ),
        (
            vec!["keys", "rotate", &active.key_id, "--grace=-5m"],
            "error: invalid --grace '-5m': must not be negative".to_owned(),
        ),
        (
            vec!["keys", "rotate", &active.key_id, "--grace", "soon"],
            "error: invalid --grace 'soon': ".to_owned(),
        ),
        (
            vec!["keys", "rotate", &active.key_id, "--grace", "100000000y"],
            "error: invalid --grace '100000000y': ".to_owned(),
        ),
        (
            vec!["keys", "rotate", &active.key_id, "--expires-in", "0s"],
            "error: invalid --expires-in '0s': must be longer than zero".to_owned(),
        ),
    ];
    for (args, expected) in &cases {
        let run = keysync(Some(&url), args);
        assert_one_line_error(&run, expected);
        assert!(
            run.stderr.starts_with(expected.as_str()),
            "{args:?}: {:?}",
            run.stderr
        );
    }
    assert_eq!(state(), before, "a refused rotation wrote something");
    assert_eq!(status(&url, &org, &active.key_id), "active");

    // Without a database: arguments are checked first, the URL is required.
    let run = keysync(None, &["keys", "rotate", &active.key_id]);
    assert_one_line_error(
        &run,
        "error: no database URL: set DATABASE_URL or pass --database-url",
    );
}
