//! The audit trail against a real PostgreSQL, through the real binary: every operator
//! change writes exactly one record (action, actor, object, values before and after) in
//! its own transaction, no-ops and failures write none, no secret reaches the table, and
//! `keysync audit` lists it (text, `--json`, filters, one-line errors).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use keysync_e2e::TestPostgres;
use serde_json::{json, Value};

/// The records of one database, checked one command at a time.
struct Trail<'a> {
    postgres: &'a TestPostgres,
    url: &'a str,
    /// Records already looked at.
    seen: usize,
}

impl<'a> Trail<'a> {
    fn new(postgres: &'a TestPostgres, url: &'a str) -> Trail<'a> {
        let mut trail = Trail {
            postgres,
            url,
            seen: 0,
        };
        trail.seen = trail.rows().len();
        trail
    }

    /// Every record, oldest first, as psql's JSON of the row (jsonb columns nested).
    fn rows(&self) -> Vec<Value> {
        let text = sql(
            self.postgres,
            self.url,
            "SELECT coalesce(json_agg(row_to_json(a) ORDER BY a.at, a.id), '[]') \
             FROM audit_events a",
        );
        serde_json::from_str(&text).unwrap()
    }

    /// The one record the commands since the last look wrote.
    #[track_caller]
    fn one_new(&mut self) -> Value {
        let rows = self.rows();
        assert_eq!(rows.len(), self.seen + 1, "{rows:#?}");
        self.seen += 1;
        rows.last().unwrap().clone()
    }

    /// The commands since the last look wrote nothing.
    #[track_caller]
    fn none_new(&self) {
        let rows = self.rows();
        assert_eq!(rows.len(), self.seen, "{rows:#?}");
    }
}

/// Checks who did what to which object.
#[track_caller]
fn assert_names(
    record: &Value,
    action: &str,
    token: Option<&str>,
    object: (&str, &str),
    org: Option<&str>,
) {
    assert_eq!(record["action"], action, "{record:#}");
    match token {
        None => assert_eq!(record["actor"], "cli", "{record:#}"),
        Some(token) => {
            assert_eq!(record["actor"], "admin_token", "{record:#}");
            assert_eq!(record["actor_token_id"], token, "{record:#}");
        }
    }
    if token.is_none() {
        assert_eq!(record["actor_token_id"], Value::Null, "{record:#}");
    }
    assert_eq!(record["object_type"], object.0, "{record:#}");
    assert_eq!(record["object_id"], object.1, "{record:#}");
    assert_eq!(record["org_id"], json!(org), "{record:#}");
}

#[track_caller]
fn assert_values(record: &Value, old: Value, new: Value) {
    assert_eq!(record["old_value"], old, "{record:#}");
    assert_eq!(record["new_value"], new, "{record:#}");
}

/// The forms of a secret that must never be stored: itself, its random part, its
/// SHA-256 in hex.
fn forms_of(secret: &str, random: &str) -> Vec<String> {
    let hash = hex::encode(key_hash(secret));
    vec![
        secret.to_owned(),
        random.to_owned(),
        hash.to_uppercase(),
        hash,
    ]
}

#[test]
fn every_operator_change_is_one_record_with_its_values_and_no_secret() {
    let (postgres, url) = migrated_database();
    let mut trail = Trail::new(&postgres, &url);
    trail.none_new();
    let mut secrets: Vec<String> = Vec::new();

    // Admin tokens: managed from the command line only, so the actor is the CLI.
    let token = json(
        &url,
        &["admin-tokens", "create", "--name", "signup", "--json"],
    );
    let token_id = token["token_id"].as_str().unwrap().to_owned();
    let token_text = token["token"].as_str().unwrap();
    secrets.extend(forms_of(token_text, &token_text[4..]));
    let record = trail.one_new();
    assert_names(
        &record,
        "admin_token.created",
        None,
        ("admin_token", &token_id),
        None,
    );
    let audited_token = json!({
        "name": "signup",
        "prefix": token["prefix"],
        "read_only": false,
        "status": "active",
    });
    assert_values(&record, Value::Null, audited_token.clone());

    // Organizations and their limits.
    let org = create_org(&url, "Acme");
    let record = trail.one_new();
    assert_names(&record, "org.created", None, ("org", &org), Some(&org));
    assert_values(&record, Value::Null, json!({"name": "Acme"}));

    let set_org_limit = |args: &[&str]| {
        let mut all = vec!["orgs", "set-limit", org.as_str()];
        all.extend_from_slice(args);
        ok(&url, &all);
    };
    set_org_limit(&["--rpm", "100", "--burst", "20"]);
    let record = trail.one_new();
    assert_names(&record, "org.limit_set", None, ("org", &org), Some(&org));
    let limit_100 = json!({"requests_per_minute": 100, "burst": 20});
    assert_values(&record, Value::Null, limit_100.clone());
    set_org_limit(&["--rpm", "100", "--burst", "20"]);
    trail.none_new();
    set_org_limit(&["--rpm", "50"]);
    let limit_50 = json!({"requests_per_minute": 50, "burst": 0});
    assert_values(&trail.one_new(), limit_100, limit_50.clone());
    set_org_limit(&["--clear"]);
    let record = trail.one_new();
    assert_names(&record, "org.limit_set", None, ("org", &org), Some(&org));
    assert_values(&record, limit_50, Value::Null);
    set_org_limit(&["--clear"]);
    trail.none_new();

    // Keys.
    let key = create_key(&url, &org, "ci", &["--env", "test", "--expires-in", "90d"]);
    secrets.extend(forms_of(&key.key, &key.key[8..40]));
    let record = trail.one_new();
    assert_names(
        &record,
        "key.created",
        None,
        ("key", &key.key_id),
        Some(&org),
    );
    let audited_key = json!({
        "name": "ci",
        "prefix": key.prefix,
        "environment": "test",
        "expires_at": key.expires_at,
        "status": "active",
    });
    assert_values(&record, Value::Null, audited_key.clone());

    let set_key_limit = |args: &[&str]| {
        let mut all = vec!["keys", "set-limit", key.key_id.as_str()];
        all.extend_from_slice(args);
        ok(&url, &all);
    };
    set_key_limit(&["--rpm", "10"]);
    let record = trail.one_new();
    assert_names(
        &record,
        "key.limit_set",
        None,
        ("key", &key.key_id),
        Some(&org),
    );
    let limit_10 = json!({"requests_per_minute": 10, "burst": 0});
    assert_values(&record, Value::Null, limit_10.clone());
    set_key_limit(&["--rpm", "10", "--burst", "0"]);
    trail.none_new();
    set_key_limit(&["--clear"]);
    assert_values(&trail.one_new(), limit_10, Value::Null);
    set_key_limit(&["--clear"]);
    trail.none_new();

    // Rotation: one record on the old key, naming both keys and the old key's end.
    let rotated = json(
        &url,
        &["keys", "rotate", &key.key_id, "--grace", "1h", "--json"],
    );
    let new_key = rotated["key"].as_str().unwrap();
    let new_key_id = rotated["key_id"].as_str().unwrap().to_owned();
    secrets.extend(forms_of(new_key, &new_key[8..40]));
    let record = trail.one_new();
    assert_names(
        &record,
        "key.rotated",
        None,
        ("key", &key.key_id),
        Some(&org),
    );
    assert_values(
        &record,
        audited_key,
        json!({
            "old_key_id": key.key_id,
            "new_key_id": new_key_id,
            "old_key_expires_at": rotated["old_key_expires_at"],
            "old_key_status": "active",
            "new_key": {
                "name": "ci",
                "prefix": rotated["prefix"],
                "environment": "test",
                "expires_at": null,
                "status": "active",
            },
        }),
    );

    // Revocation: recorded once; revoking again changes nothing.
    ok(&url, &["keys", "revoke", &new_key_id]);
    let record = trail.one_new();
    assert_names(
        &record,
        "key.revoked",
        None,
        ("key", &new_key_id),
        Some(&org),
    );
    let before = json!({
        "name": "ci",
        "prefix": rotated["prefix"],
        "environment": "test",
        "expires_at": null,
        "status": "active",
    });
    let mut after = before.clone();
    after["status"] = json!("revoked");
    assert_values(&record, before, after);
    assert_eq!(
        ok(&url, &["keys", "revoke", &new_key_id]),
        format!("key {new_key_id} was already revoked\n")
    );
    trail.none_new();

    // A rotation with no grace revokes the old key in the same record.
    let live = create_key(&url, &org, "deploy", &[]);
    secrets.extend(forms_of(&live.key, &live.key[8..40]));
    trail.one_new();
    let rotated = json(
        &url,
        &["keys", "rotate", &live.key_id, "--grace", "0s", "--json"],
    );
    let new_key = rotated["key"].as_str().unwrap();
    secrets.extend(forms_of(new_key, &new_key[8..40]));
    let record = trail.one_new();
    assert_names(
        &record,
        "key.rotated",
        None,
        ("key", &live.key_id),
        Some(&org),
    );
    assert_eq!(record["old_value"]["environment"], "live");
    assert_eq!(record["new_value"]["old_key_status"], "revoked");
    assert_eq!(
        record["new_value"]["old_key_expires_at"],
        rotated["old_key_expires_at"]
    );

    ok(&url, &["admin-tokens", "revoke", &token_id]);
    let record = trail.one_new();
    assert_names(
        &record,
        "admin_token.revoked",
        None,
        ("admin_token", &token_id),
        None,
    );
    let mut revoked_token = audited_token.clone();
    revoked_token["status"] = json!("revoked");
    assert_values(&record, audited_token, revoked_token);
    ok(&url, &["admin-tokens", "revoke", &token_id]);
    trail.none_new();

    // Whatever is stored, in any column: no key, random part, hash or token.
    let stored = sql(
        &postgres,
        &url,
        "SELECT encode(key_hash, 'hex') FROM api_keys \
         UNION ALL SELECT encode(token_hash, 'hex') FROM admin_tokens",
    );
    secrets.extend(stored.lines().map(str::to_owned));
    let dump = sql(&postgres, &url, "SELECT a::text FROM audit_events a");
    assert_eq!(dump.lines().count(), 13, "{dump}");
    for secret in &secrets {
        assert!(!dump.contains(secret.as_str()), "{secret} in {dump}");
    }
    let listed = ok(&url, &["audit", "--json"]);
    for secret in &secrets {
        assert!(!listed.contains(secret.as_str()), "{secret} in {listed}");
    }
}

#[test]
fn failures_record_nothing_and_a_failed_record_undoes_the_change() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "ci", &[]);
    let token = json(&url, &["admin-tokens", "create", "--name", "t", "--json"]);
    let token_id = token["token_id"].as_str().unwrap().to_owned();
    let trail = Trail::new(&postgres, &url);
    let unknown = "00000000-0000-4000-8000-000000000000";

    // Refused operations: nothing written, nothing recorded.
    for (args, expected) in [
        (
            vec!["keys", "create", "--org-id", unknown, "--name", "x"],
            "not found",
        ),
        (
            vec!["orgs", "create", "--name", "Again", "--id", org.as_str()],
            "already exists",
        ),
        (
            vec!["orgs", "set-limit", unknown, "--rpm", "5"],
            "not found",
        ),
        (vec!["orgs", "set-limit", unknown, "--clear"], "not found"),
        (
            vec!["keys", "set-limit", unknown, "--rpm", "5"],
            "not found",
        ),
        (vec!["keys", "rotate", unknown], "not found"),
        (vec!["keys", "revoke", unknown], "not found"),
        (vec!["admin-tokens", "revoke", unknown], "not found"),
        (
            vec!["orgs", "set-limit", org.as_str(), "--rpm", "0"],
            "--rpm",
        ),
    ] {
        assert_one_line_error(&keysync(Some(&url), &args), expected);
    }
    ok(&url, &["keys", "revoke", &key.key_id]);
    let revoked = Trail::new(&postgres, &url);
    assert_eq!(revoked.seen, trail.seen + 1);
    assert_one_line_error(
        &keysync(Some(&url), &["keys", "rotate", &key.key_id]),
        "is revoked",
    );
    revoked.none_new();

    // The record is part of the change's transaction: when it cannot be written, the
    // change is not made either.
    let active = create_key(&url, &org, "active", &[]);
    sql(
        &postgres,
        &url,
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'audit refused by the test'; END $$; \
         CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events \
         FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
    );
    let state = || {
        sql(
            &postgres,
            &url,
            "SELECT (SELECT count(*) FROM organizations), \
                    (SELECT count(*) FROM api_keys), \
                    (SELECT count(*) FROM api_keys WHERE active), \
                    (SELECT string_agg(id::text || coalesce(expires_at::text, '') || \
                            coalesce(rate_limit_rpm::text, ''), ',' ORDER BY id) FROM api_keys), \
                    (SELECT count(*) FROM rate_limit_configs), \
                    (SELECT count(*) FROM admin_tokens), \
                    (SELECT count(*) FROM admin_tokens WHERE revoked_at IS NULL), \
                    (SELECT count(*) FROM audit_events)",
        )
    };
    let before = state();
    for args in [
        vec!["orgs", "create", "--name", "Beta"],
        vec!["keys", "create", "--org-id", org.as_str(), "--name", "x"],
        vec!["orgs", "set-limit", org.as_str(), "--rpm", "5"],
        vec!["keys", "set-limit", active.key_id.as_str(), "--rpm", "5"],
        vec!["keys", "rotate", active.key_id.as_str(), "--grace", "1h"],
        vec!["keys", "rotate", active.key_id.as_str(), "--grace", "0s"],
        vec!["keys", "revoke", active.key_id.as_str()],
        vec!["admin-tokens", "create", "--name", "u"],
        vec!["admin-tokens", "revoke", token_id.as_str()],
    ] {
        assert_one_line_error(&keysync(Some(&url), &args), "audit refused by the test");
        assert_eq!(state(), before, "{args:?}");
    }
}

#[test]
fn the_audit_command_lists_newest_first_with_filters_and_json() {
    let (postgres, url) = migrated_database();
    let acme = create_org(&url, "Acme");
    let beta = create_org(&url, "Beta");
    let key = create_key(&url, &acme, "ci", &[]);
    ok(&url, &["orgs", "set-limit", &beta, "--rpm", "7"]);
    ok(&url, &["keys", "revoke", &key.key_id]);

    let text = ok(&url, &["audit"]);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["TIME", "ACTION", "ACTOR", "OBJECT", "ORG", "OLD", "NEW"],
        "{text}"
    );
    let actions: Vec<&str> = lines[1..].iter().map(|line| line[1]).collect();
    assert_eq!(
        actions,
        [
            "key.revoked",
            "org.limit_set",
            "key.created",
            "org.created",
            "org.created"
        ],
        "{text}"
    );
    assert_eq!(
        lines[2][2..5].to_vec(),
        vec!["cli".to_owned(), format!("org:{beta}"), beta.clone()]
    );
    assert_eq!(lines[2][5], "-");
    assert_eq!(lines[2][6], r#"{"burst":0,"requests_per_minute":7}"#);

    let listed = json(&url, &["audit", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 5);
    let first = &listed[0];
    assert_eq!(first["action"], "key.revoked");
    assert_eq!(first["actor"], "cli");
    assert_eq!(first["actor_token_id"], Value::Null);
    assert_eq!(first["object_type"], "key");
    assert_eq!(first["object_id"], key.key_id);
    assert_eq!(first["org_id"], acme);
    assert_eq!(first["old_value"]["status"], "active");
    assert_eq!(first["new_value"]["status"], "revoked");
    assert!(first["event_id"].as_str().unwrap().len() == 36);
    chrono::DateTime::parse_from_rfc3339(first["at"].as_str().unwrap()).unwrap();

    // One organization's records: its creation and its keys'.
    let acme_only = json(&url, &["audit", "--org-id", &acme, "--json"]);
    let actions: Vec<&str> = acme_only
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["key.revoked", "key.created", "org.created"]);

    // --since: records backdated past the window drop out.
    sql(
        &postgres,
        &url,
        &format!(
            "UPDATE audit_events SET at = at - interval '10 days' \
             WHERE org_id = '{acme}' AND action <> 'key.revoked'"
        ),
    );
    let recent = json(&url, &["audit", "--since", "7d", "--json"]);
    assert_eq!(recent.as_array().unwrap().len(), 3, "{recent:#}");
    let recent_acme = json(
        &url,
        &["audit", "--org-id", &acme, "--since", "7d", "--json"],
    );
    assert_eq!(recent_acme.as_array().unwrap().len(), 1, "{recent_acme:#}");
    assert_eq!(recent_acme[0]["action"], "key.revoked");
    assert_eq!(
        ok(&url, &["audit", "--since", "0s"]),
        "TIME  ACTION  ACTOR  OBJECT  ORG  OLD  NEW\n"
    );

    let two = json(&url, &["audit", "--limit", "2", "--json"]);
    assert_eq!(two.as_array().unwrap().len(), 2);
    assert_eq!(two[0]["action"], "key.revoked");
    assert_eq!(two[1]["action"], "org.limit_set");

    // Bad input: one line, exit 1, before the database is asked anything.
    for (args, expected) in [
        (
            vec!["audit", "--org-id", "abc"],
            "invalid org id 'abc': not a UUID",
        ),
        (vec!["audit", "--since", "soon"], "invalid --since 'soon': "),
        (
            vec!["audit", "--since", "-7d"],
            "invalid --since '-7d': must not be negative",
        ),
        (
            vec!["audit", "--limit", "0"],
            "invalid --limit '0': expected a whole number from 1 to 10000",
        ),
        (vec!["audit", "--limit", "10001"], "invalid --limit '10001'"),
        (vec!["audit", "--limit", "many"], "invalid --limit 'many'"),
    ] {
        assert_one_line_error(&keysync(Some(&url), &args), expected);
        assert_one_line_error(&keysync(None, &args), expected);
    }
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_one_line_error(
        &keysync(Some(&url), &["audit", "--org-id", unknown]),
        &format!("organization {unknown} not found"),
    );
}

#[test]
fn the_audit_command_walks_pages_up_to_its_limit() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    // More records than a page holds (1,000), one a second apart, older than the
    // organization's own.
    sql(
        &postgres,
        &url,
        &format!(
            "INSERT INTO audit_events (id, at, action, actor, object_type, object_id, org_id, \
                                       new_value) \
             SELECT gen_random_uuid(), now() - make_interval(hours => 1, secs => n), \
                    'key.created', 'cli', \
                    'key', gen_random_uuid(), '{org}', jsonb_build_object('n', n) \
             FROM generate_series(1, 2100) AS n"
        ),
    );
    let listed = json(&url, &["audit", "--limit", "2050", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2050);
    // Newest first: the org's creation, then n = 1, 2, ... without gaps or repeats.
    assert_eq!(listed[0]["action"], "org.created");
    for (index, record) in listed[1..].iter().enumerate() {
        assert_eq!(record["new_value"]["n"], index + 1, "{record}");
    }
    let all = json(
        &url,
        &["audit", "--org-id", &org, "--limit", "10000", "--json"],
    );
    assert_eq!(all.as_array().unwrap().len(), 2101);
    assert_eq!(
        json(&url, &["audit", "--json"]).as_array().unwrap().len(),
        100
    );
}
