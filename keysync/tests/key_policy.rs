//! Key scopes and IP allowlists against a real PostgreSQL: creating, setting, clearing
//! and rotating them on the command line (text, JSON, the audit trail's old and new
//! values), every misuse (one line, exit 1, nothing written), the schema's own checks,
//! what the loader serves (a stored policy the contract refuses locks the key out), a
//! change reaching a WatchKeys client within a second, and the HTTP API's endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use common::serve::*;
use common::*;
use keysync::admin_api::{router, ApiSettings, ApiState};
use keysync::key_set::key_policy::KeyPolicy;
use keysync::sync::loader::{Loader, PgLoader};
use keysync_e2e::TestPostgres;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

/// A key's policy columns and revision as psql prints them (`scopes|networks|revision`).
fn policy_row(postgres: &TestPostgres, url: &str, key_id: &str) -> String {
    sql(
        postgres,
        url,
        &format!("SELECT scopes, allowed_networks, revision FROM api_keys WHERE id = '{key_id}'"),
    )
}

fn count(postgres: &TestPostgres, url: &str, table: &str) -> String {
    sql(postgres, url, &format!("SELECT count(*) FROM {table}"))
}

/// The audit records of `action`, oldest first.
fn audited(url: &str, action: &str) -> Vec<Value> {
    let all = json(url, &["audit", "--json", "--limit", "1000"]);
    let mut records: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["action"] == action)
        .cloned()
        .collect();
    records.reverse();
    records
}

fn listed(url: &str, org: &str, key_id: &str) -> Value {
    let listed = json(url, &["keys", "list", "--org-id", org, "--json"]);
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key_id"] == key_id)
        .unwrap()
        .clone()
}

#[test]
fn create_set_clear_and_rotate_carry_scopes_and_allowlists() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let created = json(
        &url,
        &[
            "keys",
            "create",
            "--org-id",
            &org,
            "--name",
            "orders",
            "--scope",
            "orders:write",
            "--scope",
            "orders:read",
            "--scope",
            "orders:write",
            "--allow-cidr",
            "2001:db8::1/32",
            "--allow-cidr",
            "203.0.113.7/24",
            "--json",
        ],
    );
    let id = created["key_id"].as_str().unwrap().to_owned();
    assert_eq!(created["scopes"], json!(["orders:read", "orders:write"]));
    assert_eq!(
        created["allowed_networks"],
        json!(["203.0.113.0/24", "2001:db8::/32"]),
        "sorted, host bits cleared"
    );
    assert!(policy_row(&postgres, &url, &id)
        .starts_with("{orders:read,orders:write}|{203.0.113.0/24,2001:db8::/32}|"));
    let record = &audited(&url, "key.created")[0];
    assert_eq!(
        record["new_value"]["scopes"],
        json!(["orders:read", "orders:write"])
    );
    assert_eq!(
        record["new_value"]["allowed_networks"],
        json!(["203.0.113.0/24", "2001:db8::/32"])
    );

    // A plain key has neither, and its text output is what it always was.
    let plain = ok(
        &url,
        &["keys", "create", "--org-id", &org, "--name", "plain"],
    );
    assert!(!plain.contains("scopes"), "{plain}");
    let plain_json = json(
        &url,
        &["keys", "create", "--org-id", &org, "--name", "p", "--json"],
    );
    assert_eq!(plain_json["scopes"], json!([]));
    assert_eq!(plain_json["allowed_networks"], json!([]));

    // Listings and `keys get` show them.
    let row = listed(&url, &org, &id);
    assert_eq!(row["scopes"], json!(["orders:read", "orders:write"]));
    assert_eq!(
        row["allowed_networks"],
        json!(["203.0.113.0/24", "2001:db8::/32"])
    );
    let table = ok(&url, &["keys", "list", "--org-id", &org]);
    let line = table.lines().find(|line| line.starts_with(&id)).unwrap();
    assert!(
        line.ends_with("orders:read,orders:write  203.0.113.0/24,2001:db8::/32  never"),
        "{line}"
    );
    let plain_line = table
        .lines()
        .find(|line| line.starts_with(plain_json["key_id"].as_str().unwrap()))
        .unwrap();
    let cells: Vec<&str> = plain_line.split_whitespace().collect();
    assert_eq!(
        cells[cells.len() - 3..],
        ["-", "any", "never"],
        "{plain_line}"
    );
    let got = ok(&url, &["keys", "get", &id]);
    assert!(
        got.contains("\nscopes: orders:read orders:write\n"),
        "{got}"
    );
    assert!(
        got.contains("\nallowed_networks: 203.0.113.0/24 2001:db8::/32\n"),
        "{got}"
    );
    assert_eq!(json(&url, &["keys", "get", &id, "--json"]), row);

    // set-scopes replaces, says when nothing changed, clears.
    let revision_before = policy_row(&postgres, &url, &id);
    assert_eq!(
        ok(
            &url,
            &["keys", "set-scopes", &id, "--scope", "billing:read"]
        ),
        format!("key {id}: scopes billing:read\n")
    );
    assert_ne!(
        policy_row(&postgres, &url, &id),
        revision_before,
        "restamped"
    );
    let again = json(
        &url,
        &[
            "keys",
            "set-scopes",
            &id,
            "--scope",
            "billing:read",
            "--json",
        ],
    );
    assert_eq!(
        again,
        json!({"key_id": id, "org_id": org, "scopes": ["billing:read"], "changed": false})
    );
    assert_eq!(
        ok(&url, &["keys", "set-scopes", &id, "--clear"]),
        format!("key {id}: no scopes (routes that require a scope refuse it)\n")
    );
    let scope_records = audited(&url, "key.scopes_set");
    assert_eq!(scope_records.len(), 2, "the unchanged set records nothing");
    assert_eq!(scope_records[0]["object_id"], id.as_str());
    assert_eq!(scope_records[0]["org_id"], org.as_str());
    assert_eq!(
        scope_records[0]["old_value"],
        json!({"scopes": ["orders:read", "orders:write"]})
    );
    assert_eq!(
        scope_records[0]["new_value"],
        json!({"scopes": ["billing:read"]})
    );
    assert_eq!(
        scope_records[1]["new_value"],
        json!({"scopes": []}),
        "cleared"
    );

    // set-allowlist likewise.
    assert_eq!(
        ok(
            &url,
            &["keys", "set-allowlist", &id, "--allow-cidr", "198.51.100.7"]
        ),
        format!("key {id}: may be used only from 198.51.100.7/32\n")
    );
    let cleared = json(&url, &["keys", "set-allowlist", &id, "--clear", "--json"]);
    assert_eq!(cleared["allowed_networks"], json!([]));
    assert_eq!(cleared["changed"], true);
    let records = audited(&url, "key.allowlist_set");
    assert_eq!(records.len(), 2);
    assert_eq!(
        records[0]["old_value"],
        json!({"allowed_networks": ["203.0.113.0/24", "2001:db8::/32"]})
    );
    assert_eq!(
        records[0]["new_value"],
        json!({"allowed_networks": ["198.51.100.7/32"]})
    );
    assert_eq!(records[1]["new_value"], json!({"allowed_networks": []}));
    assert!(policy_row(&postgres, &url, &id).starts_with("{}|{}|"));

    // A rotated key keeps both: a replacement must not work where the old key did not.
    ok(
        &url,
        &[
            "keys",
            "set-scopes",
            &id,
            "--scope",
            "orders:read",
            "--scope",
            "a.b_c-d",
        ],
    );
    ok(
        &url,
        &[
            "keys",
            "set-allowlist",
            &id,
            "--allow-cidr",
            "10.0.0.0/8",
            "--allow-cidr",
            "::1",
        ],
    );
    let rotated = json(&url, &["keys", "rotate", &id, "--json"]);
    let new_id = rotated["key_id"].as_str().unwrap();
    assert_eq!(rotated["scopes"], json!(["a.b_c-d", "orders:read"]));
    assert_eq!(
        rotated["allowed_networks"],
        json!(["10.0.0.0/8", "::1/128"])
    );
    let new_row = listed(&url, &org, new_id);
    assert_eq!(new_row["scopes"], json!(["a.b_c-d", "orders:read"]));
    assert_eq!(
        new_row["allowed_networks"],
        json!(["10.0.0.0/8", "::1/128"])
    );
    let rotation = &audited(&url, "key.rotated")[0];
    assert_eq!(
        rotation["new_value"]["new_key"]["scopes"],
        json!(["a.b_c-d", "orders:read"])
    );
}

#[test]
fn bad_policy_input_is_one_line_and_changes_nothing() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "ci", &["--scope", "orders:read"]);
    let id = key.key_id.as_str();
    let before = policy_row(&postgres, &url, id);
    let keys_before = count(&postgres, &url, "api_keys");
    let audit_before = count(&postgres, &url, "audit_events");
    let too_many_scopes: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
    let too_many_networks: Vec<String> = (0..17).map(|i| format!("10.0.{i}.0/24")).collect();
    let flags = |flag: &'static str, values: &[String]| -> Vec<String> {
        values
            .iter()
            .flat_map(|value| [flag.to_owned(), value.clone()])
            .collect()
    };
    let long = "x".repeat(65);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            flags("--scope", &["Orders:Read".to_owned()]),
            "invalid --scope: scope \"Orders:Read\" must be 1 to 64 characters of [a-z0-9:._-]",
        ),
        (
            flags("--scope", &[String::new()]),
            "invalid --scope: scope \"\"",
        ),
        (flags("--scope", &[long]), "must be 1 to 64 characters"),
        (
            flags("--scope", &too_many_scopes),
            "invalid --scope: 33 scopes: a key may have at most 32",
        ),
        (
            flags("--allow-cidr", &["203.0.113.0/33".to_owned()]),
            "invalid --allow-cidr: \"203.0.113.0/33\" is not a network",
        ),
        (
            flags("--allow-cidr", &["example.com".to_owned()]),
            "is not a network",
        ),
        (
            flags("--allow-cidr", &too_many_networks),
            "invalid --allow-cidr: 17 networks: an allowlist may have at most 16",
        ),
        (
            flags("--allow-cidr", &["0.0.0.0/32".to_owned(), "::".to_owned()]),
            "invalid --allow-cidr: the allowlist would admit no address at all",
        ),
    ];
    for (args, expected) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut create = vec!["keys", "create", "--org-id", &org, "--name", "bad"];
        create.extend_from_slice(&args);
        assert_one_line_error(&keysync(Some(&url), &create), expected);
        // Checked before connecting: the same error without a database.
        assert_one_line_error(&keysync(None, &create), expected);
        let command = if args[0] == "--scope" {
            "set-scopes"
        } else {
            "set-allowlist"
        };
        let mut set = vec!["keys", command, id];
        set.extend_from_slice(&args);
        assert_one_line_error(&keysync(Some(&url), &set), expected);
    }
    let unknown = Uuid::new_v4().to_string();
    for (args, expected) in [
        (
            vec!["keys", "set-scopes", id, "--clear", "--scope", "a"],
            "--clear cannot be combined with --scope",
        ),
        (
            vec!["keys", "set-scopes", id],
            "give --scope SCOPE (repeat for more), or --clear",
        ),
        (
            vec![
                "keys",
                "set-allowlist",
                id,
                "--clear",
                "--allow-cidr",
                "10.0.0.0/8",
            ],
            "--clear cannot be combined with --allow-cidr",
        ),
        (
            vec!["keys", "set-allowlist", id],
            "give --allow-cidr CIDR (repeat for more), or --clear",
        ),
        (
            vec!["keys", "set-scopes", "nope", "--clear"],
            "invalid key id 'nope': not a UUID",
        ),
        (
            vec!["keys", "set-scopes", &unknown, "--scope", "a"],
            &format!("key {unknown} not found"),
        ),
        (
            vec!["keys", "set-allowlist", &unknown, "--clear"],
            &format!("key {unknown} not found"),
        ),
        (
            vec!["keys", "get", &unknown],
            &format!("key {unknown} not found"),
        ),
    ] {
        assert_one_line_error(&keysync(Some(&url), &args), expected);
    }
    assert_eq!(policy_row(&postgres, &url, id), before);
    assert_eq!(count(&postgres, &url, "api_keys"), keys_before);
    assert_eq!(count(&postgres, &url, "audit_events"), audit_before);

    // The schema refuses what the CLI refuses, whoever writes it.
    for set in [
        "scopes = '{Orders}'",
        "scopes = '{\"\"}'",
        "scopes = ARRAY[NULL]::text[]",
        "scopes = '{{a},{b}}'",
        "scopes = (SELECT array_agg('s' || i) FROM generate_series(1, 33) i)",
        "allowed_networks = ARRAY[NULL]::cidr[]",
        "allowed_networks = (SELECT array_agg(('10.0.' || i || '.0/24')::cidr) \
         FROM generate_series(1, 17) i)",
    ] {
        sql(
            &postgres,
            &url,
            &format!(
                "DO $$ BEGIN \
                     UPDATE api_keys SET {set} WHERE id = '{id}'; \
                     RAISE EXCEPTION 'accepted: %', $q${set}$q$; \
                 EXCEPTION WHEN check_violation THEN NULL; \
                 END $$"
            ),
        );
    }
    assert_eq!(policy_row(&postgres, &url, id), before);
}

#[tokio::test]
async fn the_loader_serves_policies_and_locks_out_refused_ones() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let scoped = create_key(
        &url,
        &org,
        "scoped",
        &["--scope", "b", "--scope", "a", "--allow-cidr", "10.0.0.0/8"],
    );
    let plain = create_key(&url, &org, "plain", &[]);
    let broken = create_key(&url, &org, "broken", &[]);
    // What the schema cannot see: an allowlist that admits no address.
    sql(
        &postgres,
        &url,
        &format!(
            "UPDATE api_keys SET allowed_networks = '{{0.0.0.0/32}}' WHERE id = '{}'",
            broken.key_id
        ),
    );
    let loader = PgLoader::new(keysync::database::connect(&url).await.unwrap());
    let snapshot = loader.full_snapshot().await.unwrap();
    let policy_of = |key: &CreatedKey| {
        let id = Uuid::parse_str(&key.key_id).unwrap();
        snapshot
            .keys
            .iter()
            .find(|entry| entry.key_id == id)
            .unwrap()
            .policy
            .clone()
    };
    let policy = policy_of(&scoped).unwrap();
    assert_eq!(policy.scopes(), ["a", "b"]);
    assert_eq!(policy.networks()[0].to_string(), "10.0.0.0/8");
    assert_eq!(policy_of(&plain), None);
    assert_eq!(*policy_of(&broken).unwrap(), *KeyPolicy::locked_out());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changes_reach_watch_clients_within_a_second() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "ci", &[]);
    // Only notifications can start a catch-up: the poll is an hour away.
    let serve = start_serve(&url, &[("KEYSYNC_POLL_INTERVAL", "1h")]).await;
    let mut stream = watch(&serve.channel, store_revision(&serve.channel).await).await;
    let limit = Duration::from_secs(1);

    ok(
        &url,
        &[
            "keys",
            "set-scopes",
            &key.key_id,
            "--scope",
            "orders:write",
            "--scope",
            "orders:read",
        ],
    );
    let message = next_change(&mut stream, limit).await;
    assert_eq!(message.upserts.len(), 1);
    assert_eq!(message.upserts[0].key_hash, key_hash(&key.key));
    assert_eq!(message.upserts[0].scopes, ["orders:read", "orders:write"]);
    assert!(message.upserts[0].allowed_networks.is_empty());

    ok(
        &url,
        &[
            "keys",
            "set-allowlist",
            &key.key_id,
            "--allow-cidr",
            "203.0.113.0/24",
        ],
    );
    let message = next_change(&mut stream, limit).await;
    let network = &message.upserts[0].allowed_networks[0];
    assert_eq!(
        (network.address.clone(), network.prefix_len),
        (vec![203, 0, 113, 0], 24)
    );
    assert_eq!(message.upserts[0].scopes, ["orders:read", "orders:write"]);

    // LookupKey and ListKeys agree.
    let found = lookup(&serve.channel, &key_hash(&key.key))
        .await
        .unwrap()
        .key
        .unwrap();
    assert_eq!(found.scopes, ["orders:read", "orders:write"]);
    assert_eq!(found.allowed_networks.len(), 1);

    ok(&url, &["keys", "set-scopes", &key.key_id, "--clear"]);
    ok(&url, &["keys", "set-allowlist", &key.key_id, "--clear"]);
    let listed = loop {
        let listed = list_all(&serve.channel, 0, 10).await;
        if listed[0].allowed_networks.is_empty() {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(listed[0].scopes.is_empty());
}

/// The operator API in process, on the test database, with an admin token from the CLI.
struct Api {
    app: axum::Router,
    token: String,
}

impl Api {
    async fn new(url: &str) -> Api {
        let created = json(url, &["admin-tokens", "create", "--name", "t", "--json"]);
        let pool = keysync::database::connect(url).await.unwrap();
        Api {
            app: router(ApiState::new(pool, ApiSettings::default())),
            token: created["token"].as_str().unwrap().to_owned(),
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }
}

#[tokio::test]
async fn the_http_api_creates_sets_and_clears_scopes_and_allowlists() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let api = Api::new(&url).await;

    let (status, created) = api
        .send(
            "POST",
            "/v1/keys",
            Some(json!({
                "org_id": org,
                "name": "orders",
                "scopes": ["orders:write", "orders:read"],
                "allowed_networks": ["203.0.113.9/24", "2001:db8::/32"]
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["scopes"], json!(["orders:read", "orders:write"]));
    assert_eq!(
        created["allowed_networks"],
        json!(["203.0.113.0/24", "2001:db8::/32"])
    );
    let id = created["key_id"].as_str().unwrap().to_owned();
    let key_path = format!("/v1/keys/{id}");

    let (status, scopes) = api
        .send(
            "PUT",
            &format!("{key_path}/scopes"),
            Some(json!({"scopes": ["billing:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{scopes}");
    assert_eq!(
        scopes,
        json!({"key_id": id, "org_id": org, "scopes": ["billing:read"], "changed": true})
    );
    let (status, allowlist) = api
        .send(
            "PUT",
            &format!("{key_path}/allowlist"),
            Some(json!({"allowed_networks": ["198.51.100.7"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{allowlist}");
    assert_eq!(allowlist["allowed_networks"], json!(["198.51.100.7/32"]));
    let (_, got) = api.send("GET", &key_path, None).await;
    assert_eq!(got["scopes"], json!(["billing:read"]));
    assert_eq!(got["allowed_networks"], json!(["198.51.100.7/32"]));
    let records = audited(&url, "key.scopes_set");
    assert_eq!(records[0]["actor"], "admin_token");

    // Refused values: 422, one error shape, nothing written.
    let before = policy_row(&postgres, &url, &id);
    let keys_before = count(&postgres, &url, "api_keys");
    for (method, path, body, status, code) in [
        (
            "PUT",
            format!("{key_path}/scopes"),
            json!({"scopes": ["Bad Scope"]}),
            422,
            "invalid_value",
        ),
        (
            "PUT",
            format!("{key_path}/allowlist"),
            json!({"allowed_networks": ["0.0.0.0/32"]}),
            422,
            "invalid_value",
        ),
        (
            "PUT",
            format!("{key_path}/allowlist"),
            json!({"allowed_networks": ["10.0.0.0/99"]}),
            422,
            "invalid_value",
        ),
        (
            "PUT",
            format!("{key_path}/scopes"),
            json!({"scopes": "orders:read"}),
            400,
            "invalid_request",
        ),
        (
            "PUT",
            format!("{key_path}/scopes"),
            json!({"scope": ["a"]}),
            400,
            "invalid_request",
        ),
        (
            "PUT",
            format!("/v1/keys/{}/scopes", Uuid::new_v4()),
            json!({"scopes": ["a"]}),
            404,
            "key_not_found",
        ),
        (
            "POST",
            "/v1/keys".to_owned(),
            json!({"org_id": org, "name": "x", "scopes": ["UPPER"]}),
            422,
            "invalid_value",
        ),
        (
            "POST",
            "/v1/keys".to_owned(),
            json!({"org_id": org, "name": "x", "allowed_networks": ["nope"]}),
            422,
            "invalid_value",
        ),
    ] {
        let (answered, error) = api.send(method, &path, Some(body)).await;
        assert_eq!(answered.as_u16(), status, "{method} {path}: {error}");
        assert_eq!(error["error"], code, "{error}");
        assert_eq!(error.as_object().unwrap().len(), 2, "{error}");
    }
    let (_, error) = api
        .send(
            "PUT",
            &format!("{key_path}/scopes"),
            Some(json!({"scopes": ["Bad Scope"]})),
        )
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid scopes: scope \"Bad Scope\""),
        "{error}"
    );
    assert_eq!(policy_row(&postgres, &url, &id), before);
    assert_eq!(count(&postgres, &url, "api_keys"), keys_before);

    // DELETE clears; a second DELETE changes nothing.
    let (status, cleared) = api
        .send("DELETE", &format!("{key_path}/scopes"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cleared["scopes"], json!([]));
    let (_, cleared) = api
        .send("DELETE", &format!("{key_path}/allowlist"), None)
        .await;
    assert_eq!(cleared["allowed_networks"], json!([]));
    assert_eq!(cleared["changed"], true);
    let (_, again) = api
        .send("DELETE", &format!("{key_path}/allowlist"), None)
        .await;
    assert_eq!(again["changed"], false);
    assert!(policy_row(&postgres, &url, &id).starts_with("{}|{}|"));
}
