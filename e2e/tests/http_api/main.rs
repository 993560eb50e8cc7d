//! The operator HTTP API (`/v1/` on keysync's admin port) over real HTTP, against a real
//! `keysync serve` and PostgreSQL (and a real Envoy for the gateway test): every
//! endpoint's answers and errors, admin tokens, idempotent creates, concurrent
//! rotations, the audit trail of API changes, and keys made and revoked through the API
//! at the gateway.

// Tests: an answer without the expected field fails the test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use keysync_e2e::gateway::GatewayOptions;
use keysync_e2e::http::{self, Response};
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::paths;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::postgres::{database_of, TestPostgres};
use keysync_e2e::stack::Stack;
use keysync_e2e::ScratchDir;
use serde_json::{json, Value};

/// The issue's bound for a change made through the API to reach the gateway.
const GATEWAY_DEADLINE: Duration = Duration::from_secs(1);

/// A client of one keysync's API.
#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    token: Option<String>,
}

impl Api {
    fn new(keysync: &Keysync, token: &str) -> Api {
        Api {
            addr: keysync.http,
            token: Some(token.to_owned()),
        }
    }

    fn anonymous(keysync: &Keysync) -> Api {
        Api {
            addr: keysync.http,
            token: None,
        }
    }

    /// Sends `method path` with the token, `headers` and `body` (raw), and reads the
    /// answer.
    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nhost: keysync\r\n");
        if let Some(token) = &self.token {
            raw.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method != "GET" {
            raw.push_str("content-type: application/json\r\n");
            raw.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        raw.push_str("connection: close\r\n\r\n");
        raw.push_str(body);
        http::send_raw(self.addr, raw.as_bytes())
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
    }

    fn get(&self, path: &str) -> Response {
        self.send("GET", path, &[], "")
    }

    fn post(&self, path: &str, body: Value) -> Response {
        self.send("POST", path, &[], &body.to_string())
    }

    fn put(&self, path: &str, body: Value) -> Response {
        self.send("PUT", path, &[], &body.to_string())
    }

    fn delete(&self, path: &str) -> Response {
        self.send("DELETE", path, &[], "")
    }

    /// `POST path` with `Idempotency-Key: key`.
    fn post_once(&self, path: &str, key: &str, body: Value) -> Response {
        self.send("POST", path, &[("idempotency-key", key)], &body.to_string())
    }

    /// An organization made through the API; its id.
    fn create_org(&self, name: &str) -> String {
        let created = ok(self.post("/v1/orgs", json!({ "name": name })), 201);
        created["org_id"].as_str().unwrap().to_owned()
    }

    /// A key made through the API: its JSON.
    fn create_key(&self, org_id: &str) -> Value {
        ok(
            self.post("/v1/keys", json!({ "org_id": org_id, "name": "api key" })),
            201,
        )
    }
}

/// The answer's JSON, after checking its status.
#[track_caller]
fn ok(response: Response, status: u16) -> Value {
    assert_eq!(response.status, status, "body: {}", response.text());
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response:?}"
    );
    response.json()
}

/// Checks an error answer: its status, and the one error shape with `code`.
#[track_caller]
fn refused(response: Response, status: u16, code: &str) -> String {
    let body = ok(response, status);
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    body["message"].as_str().unwrap().to_owned()
}

/// `keysync admin-tokens create`: the token and its id.
fn admin_token(database_url: &str, name: &str, read_only: bool) -> (String, String) {
    let mut args = vec!["admin-tokens", "create", "--name", name];
    if read_only {
        args.push("--read-only");
    }
    let created = ks::cli_json(database_url, &args);
    assert_eq!(created["read_only"], read_only);
    (
        created["token"].as_str().unwrap().to_owned(),
        created["token_id"].as_str().unwrap().to_owned(),
    )
}

/// PostgreSQL, a migrated database and `keysync serve` on it.
struct Service {
    postgres: TestPostgres,
    database_url: String,
    keysync: Keysync,
}

impl Service {
    fn start() -> Service {
        let postgres = TestPostgres::start();
        let database_url = postgres.create_database();
        ks::migrate(&database_url);
        let keysync = Keysync::start(&database_url, &[("KEYSYNC_API_MAX_BODY_BYTES", "2048")]);
        Service {
            postgres,
            database_url,
            keysync,
        }
    }

    /// An API client with a new read-write token.
    fn api(&self) -> Api {
        let (token, _) = admin_token(&self.database_url, "tests", false);
        Api::new(&self.keysync, &token)
    }

    fn sql(&self, query: &str) -> String {
        self.postgres.psql(database_of(&self.database_url), query)
    }
}

#[test]
fn organizations_answer_like_the_cli_and_refuse_what_it_refuses() {
    let service = Service::start();
    let api = service.api();

    let created = ok(api.post("/v1/orgs", json!({"name": "  Acme Corp "})), 201);
    assert_eq!(created["name"], "Acme Corp");
    let org = created["org_id"].as_str().unwrap().to_owned();
    let chosen = "7d2c4a3e-0000-4000-8000-000000000001";
    let created = ok(
        api.post("/v1/orgs", json!({"name": "Chosen", "org_id": chosen})),
        201,
    );
    assert_eq!(created, json!({"org_id": chosen, "name": "Chosen"}));
    refused(
        api.post("/v1/orgs", json!({"name": "Again", "org_id": chosen})),
        409,
        "org_exists",
    );
    let message = refused(
        api.post("/v1/orgs", json!({"name": " "})),
        422,
        "invalid_value",
    );
    assert_eq!(message, "invalid organization name: must not be empty");
    let message = refused(
        api.post("/v1/orgs", json!({"name": "x", "nmae": "typo"})),
        400,
        "invalid_request",
    );
    assert!(message.contains("unknown field `nmae`"), "{message}");
    refused(
        api.send("POST", "/v1/orgs", &[], "{\"name\":"),
        400,
        "invalid_request",
    );
    refused(
        api.post("/v1/orgs", json!({"name": 5})),
        400,
        "invalid_request",
    );
    refused(api.post("/v1/orgs", json!({})), 400, "invalid_request");
    let huge = json!({"name": "x".repeat(4096)});
    refused(api.post("/v1/orgs", huge), 413, "payload_too_large");

    // One organization, as `orgs list --json` shows it.
    let got = ok(api.get(&format!("/v1/orgs/{org}")), 200);
    let listed = ks::cli_json(&service.database_url, &["orgs", "list"]);
    assert_eq!(got, listed[0], "the CLI's --json and the API agree");
    assert_eq!(got["rate_limit"], Value::Null);
    refused(
        api.get("/v1/orgs/7d2c4a3e-0000-4000-8000-00000000ffff"),
        404,
        "org_not_found",
    );
    refused(api.get("/v1/orgs/not-a-uuid"), 400, "invalid_request");

    // Limits: set, set again (unchanged), out of range, clear, unknown organization.
    let path = format!("/v1/orgs/{org}/rate-limit");
    let set = ok(
        api.put(&path, json!({"requests_per_minute": 100, "burst": 20})),
        200,
    );
    assert_eq!(
        set,
        json!({"org_id": org, "rate_limit": {"requests_per_minute": 100, "burst": 20}, "changed": true})
    );
    let again = ok(
        api.put(&path, json!({"requests_per_minute": 100, "burst": 20})),
        200,
    );
    assert_eq!(again["changed"], false);
    let cli = ks::cli_json(
        &service.database_url,
        &["orgs", "set-limit", &org, "--rpm", "100", "--burst", "20"],
    );
    assert_eq!(cli, again, "the CLI's --json and the API agree");
    for bad in [
        json!({"requests_per_minute": 0}),
        json!({"requests_per_minute": 2147483648u64}),
        json!({"requests_per_minute": 5, "burst": -1}),
    ] {
        refused(api.put(&path, bad), 422, "invalid_value");
    }
    refused(api.put(&path, json!({"burst": 5})), 400, "invalid_request");
    let listed = ks::cli_json(&service.database_url, &["orgs", "list"]);
    assert_eq!(listed[0]["rate_limit"]["requests_per_minute"], 100);
    let cleared = ok(api.delete(&path), 200);
    assert_eq!(cleared["rate_limit"], Value::Null);
    assert_eq!(cleared["changed"], true);
    assert_eq!(ok(api.delete(&path), 200)["changed"], false);
    refused(
        api.delete("/v1/orgs/7d2c4a3e-0000-4000-8000-00000000ffff/rate-limit"),
        404,
        "org_not_found",
    );
    refused(
        api.put(
            "/v1/orgs/7d2c4a3e-0000-4000-8000-00000000ffff/rate-limit",
            json!({"requests_per_minute": 1}),
        ),
        404,
        "org_not_found",
    );

    // Pages: walked with the cursor, every organization once, oldest first.
    for n in 0..5 {
        api.create_org(&format!("org {n}"));
    }
    let everyone = ks::cli_json(&service.database_url, &["orgs", "list"]);
    assert_eq!(everyone.as_array().unwrap().len(), 7);
    let mut walked = Vec::new();
    let mut path = "/v1/orgs?limit=3".to_owned();
    loop {
        let page = ok(api.get(&path), 200);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        walked.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/orgs?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(Value::Array(walked), everyone);
    let all = ok(api.get("/v1/orgs?limit=5000"), 200);
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        7,
        "capped, not refused"
    );
    assert_eq!(all["next_cursor"], Value::Null);
    refused(api.get("/v1/orgs?limit=0"), 400, "invalid_request");
    refused(api.get("/v1/orgs?cursor=nonsense"), 400, "invalid_request");
    refused(api.get("/v1/orgs?page=2"), 400, "invalid_request");

    // Unknown paths and methods, in the same shape.
    refused(api.get("/v1/nothing-here"), 404, "not_found");
    refused(api.delete("/v1/orgs"), 405, "method_not_allowed");
    assert_eq!(
        api.get("/healthz").status,
        200,
        "the admin port still serves"
    );
}

#[test]
fn keys_answer_like_the_cli_and_refuse_what_it_refuses() {
    let service = Service::start();
    let api = service.api();
    let org = api.create_org("keys");
    let unknown = "7d2c4a3e-0000-4000-8000-00000000ffff";

    // Create: the key once, with the CLI's fields.
    let key = api.create_key(&org);
    let secret = key["key"].as_str().unwrap();
    assert!(secret.starts_with("sk_live_"), "{key}");
    assert_eq!(key["prefix"], &secret[..12]);
    assert_eq!(key["org_id"], org.as_str());
    assert_eq!(key["expires_at"], Value::Null);
    let fields: Vec<&String> = key.as_object().unwrap().keys().collect();
    let cli = ks::cli_json(
        &service.database_url,
        &["keys", "create", "--org-id", &org, "--name", "cli key"],
    );
    assert_eq!(
        fields,
        cli.as_object().unwrap().keys().collect::<Vec<_>>(),
        "the same fields as --json"
    );
    let test_key = ok(
        api.post(
            "/v1/keys",
            json!({"org_id": org, "name": "t", "env": "test", "expires_in": "90d"}),
        ),
        201,
    );
    assert!(test_key["key"].as_str().unwrap().starts_with("sk_test_"));
    assert!(test_key["expires_at"].is_string());
    refused(
        api.post("/v1/keys", json!({"org_id": unknown, "name": "k"})),
        404,
        "org_not_found",
    );
    let message = refused(
        api.post(
            "/v1/keys",
            json!({"org_id": org, "name": "k", "expires_in": "soon"}),
        ),
        422,
        "invalid_value",
    );
    assert!(
        message.starts_with("invalid expires_in 'soon'"),
        "{message}"
    );
    refused(
        api.post(
            "/v1/keys",
            json!({"org_id": org, "name": "k", "env": "prod"}),
        ),
        400,
        "invalid_request",
    );
    refused(
        api.post("/v1/keys", json!({"org_id": "abc", "name": "k"})),
        400,
        "invalid_request",
    );
    refused(
        api.post("/v1/keys", json!({"org_id": org, "name": ""})),
        422,
        "invalid_value",
    );

    // List and get: what `keys list --json` shows, never a key.
    let key_id = key["key_id"].as_str().unwrap().to_owned();
    let listed = ks::cli_json(&service.database_url, &["keys", "list", "--org-id", &org]);
    let page = ok(api.get(&format!("/v1/orgs/{org}/keys")), 200);
    assert_eq!(page["items"], listed);
    assert_eq!(page["next_cursor"], Value::Null);
    assert!(!page.to_string().contains(secret));
    let got = ok(api.get(&format!("/v1/keys/{key_id}")), 200);
    assert_eq!(got, listed[0]);
    assert_eq!(got["status"], "active");
    refused(
        api.get(&format!("/v1/keys/{unknown}")),
        404,
        "key_not_found",
    );
    refused(
        api.get(&format!("/v1/orgs/{unknown}/keys")),
        404,
        "org_not_found",
    );
    let first = ok(api.get(&format!("/v1/orgs/{org}/keys?limit=2")), 200);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = ok(
        api.get(&format!("/v1/orgs/{org}/keys?limit=2&cursor={cursor}")),
        200,
    );
    let mut walked = first["items"].as_array().unwrap().clone();
    walked.extend(rest["items"].as_array().unwrap().iter().cloned());
    assert_eq!(Value::Array(walked), listed);

    // A key's own limit, and back to the organization's.
    let path = format!("/v1/keys/{key_id}/rate-limit");
    let own = ok(api.put(&path, json!({"requests_per_minute": 10})), 200);
    assert_eq!(
        own["rate_limit"],
        json!({"requests_per_minute": 10, "burst": 0, "per_key": true})
    );
    refused(
        api.put(&path, json!({"requests_per_minute": -3})),
        422,
        "invalid_value",
    );
    refused(
        api.put(
            &format!("/v1/keys/{unknown}/rate-limit"),
            json!({"requests_per_minute": 1}),
        ),
        404,
        "key_not_found",
    );
    let cleared = ok(api.delete(&path), 200);
    assert_eq!(cleared["rate_limit"], Value::Null);
    assert_eq!(cleared["changed"], true);

    // Rotate: a new key shown once, the old one ending after the grace; only once.
    let rotated = ok(
        api.post(&format!("/v1/keys/{key_id}/rotate"), json!({"grace": "1h"})),
        201,
    );
    assert_eq!(rotated["old_key_id"], key_id.as_str());
    assert!(rotated["key"].as_str().unwrap().starts_with("sk_live_"));
    assert_ne!(rotated["key"], key["key"]);
    let message = refused(
        api.post(&format!("/v1/keys/{key_id}/rotate"), json!({})),
        409,
        "key_already_rotated",
    );
    assert!(
        message.contains(rotated["key_id"].as_str().unwrap()),
        "{message}"
    );
    let new_id = rotated["key_id"].as_str().unwrap().to_owned();
    refused(
        api.post(
            &format!("/v1/keys/{new_id}/rotate"),
            json!({"grace": "-1h"}),
        ),
        422,
        "invalid_value",
    );
    refused(
        api.post(
            &format!("/v1/keys/{new_id}/rotate"),
            json!({"grace": "1h", "extra": 1}),
        ),
        400,
        "invalid_request",
    );
    refused(
        api.post(&format!("/v1/keys/{unknown}/rotate"), json!({})),
        404,
        "key_not_found",
    );
    // An empty body takes the defaults (a day of grace).
    let defaults = ok(
        api.send("POST", &format!("/v1/keys/{new_id}/rotate"), &[], ""),
        201,
    );
    assert!(defaults["old_key_expires_at"].is_string());
    let next = defaults["key_id"].as_str().unwrap();
    ok(
        api.send("POST", &format!("/v1/keys/{next}/rotate"), &[], "null"),
        201,
    );

    // Revoke: twice is not an error; a revoked key cannot be rotated.
    let other = api.create_key(&org);
    let other_id = other["key_id"].as_str().unwrap();
    let revoke = format!("/v1/keys/{other_id}/revoke");
    assert_eq!(
        ok(api.post(&revoke, json!({})), 200),
        json!({"key_id": other_id, "revocation": "revoked"})
    );
    assert_eq!(
        ok(api.post(&revoke, json!({})), 200)["revocation"],
        "already_revoked"
    );
    assert_eq!(
        ok(api.get(&format!("/v1/keys/{other_id}")), 200)["status"],
        "revoked"
    );
    refused(
        api.post(&format!("/v1/keys/{other_id}/rotate"), json!({})),
        409,
        "key_revoked",
    );
    refused(
        api.post(&format!("/v1/keys/{unknown}/revoke"), json!({})),
        404,
        "key_not_found",
    );
    refused(
        api.post("/v1/keys/nope/revoke", json!({})),
        400,
        "invalid_request",
    );
}

#[test]
fn tokens_missing_wrong_revoked_and_read_only() {
    let service = Service::start();
    let url = &service.database_url;
    let (token, token_id) = admin_token(url, "backend", false);
    let (reader, _) = admin_token(url, "dashboard", true);
    let writer = Api::new(&service.keysync, &token);
    let org = writer.create_org("tokens");

    // Missing, wrong, malformed: 401 with a challenge, and nothing done.
    let anonymous = Api::anonymous(&service.keysync);
    let missing = anonymous.get("/v1/orgs");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    refused(missing, 401, "missing_token");
    refused(
        anonymous.post("/v1/orgs", json!({"name": "sneaky"})),
        401,
        "missing_token",
    );
    let wrong = Api::new(
        &service.keysync,
        "ksa_ThisTokenWasNeverIssuedByKeysync00000000",
    );
    refused(wrong.get("/v1/orgs"), 401, "invalid_token");
    let basic = anonymous.send("GET", "/v1/orgs", &[("authorization", "Basic a2V5")], "");
    refused(basic, 401, "missing_token");
    let api_key_as_token = Api::new(&service.keysync, "sk_live_NotAnAdminTokenAtAll000000000");
    refused(api_key_as_token.get("/v1/orgs"), 401, "invalid_token");
    assert_eq!(
        ks::cli_json(url, &["orgs", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Read-only: reads everything, changes nothing.
    let read_only = Api::new(&service.keysync, &reader);
    ok(read_only.get("/v1/orgs"), 200);
    ok(read_only.get(&format!("/v1/orgs/{org}/keys")), 200);
    refused(
        read_only.post("/v1/orgs", json!({"name": "nope"})),
        403,
        "read_only_token",
    );
    refused(
        read_only.post("/v1/keys", json!({"org_id": org, "name": "nope"})),
        403,
        "read_only_token",
    );
    refused(
        read_only.put(
            &format!("/v1/orgs/{org}/rate-limit"),
            json!({"requests_per_minute": 1}),
        ),
        403,
        "read_only_token",
    );
    refused(
        read_only.delete(&format!("/v1/orgs/{org}/rate-limit")),
        403,
        "read_only_token",
    );

    // Every change names its token; the CLI's name none.
    let key = writer.create_key(&org);
    let key_id = key["key_id"].as_str().unwrap();
    ok(
        writer.post(&format!("/v1/keys/{key_id}/revoke"), json!({})),
        200,
    );
    ks::cli_json(url, &["orgs", "create", "--name", "from the cli"]);
    assert_eq!(
        service.sql(&format!(
            "SELECT changed_by_token FROM api_keys WHERE id = '{key_id}'"
        )),
        token_id
    );
    assert_eq!(
        service.sql(&format!(
            "SELECT changed_by_token FROM organizations WHERE id = '{org}'"
        )),
        token_id
    );
    assert_eq!(
        service.sql("SELECT count(*) FROM organizations WHERE changed_by_token IS NULL"),
        "1"
    );
    service
        .keysync
        .process
        .wait_for_log(&format!("by admin token {token_id}"), DEADLINE);

    // Listed without the token itself; revoked, it stops working at once.
    let listed = ks::cli_json(url, &["admin-tokens", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&token));
    assert_eq!(listed[0]["prefix"], &token[..12]);
    let revoked = ks::cli(url, &["admin-tokens", "revoke", &token_id]);
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(
        String::from_utf8_lossy(&revoked.stdout),
        format!("revoked admin token {token_id}\n")
    );
    refused(writer.get("/v1/orgs"), 401, "invalid_token");
    let listed = ks::cli_json(url, &["admin-tokens", "list"]);
    assert_eq!(listed[0]["status"], "revoked");

    // No token and no key in keysync's log.
    let log = service.keysync.process.log();
    for secret in [
        token.as_str(),
        reader.as_str(),
        key["key"].as_str().unwrap(),
    ] {
        assert!(!log.contains(secret), "a secret in the log");
    }
}

#[test]
fn an_address_that_keeps_sending_bad_tokens_is_slowed_down() {
    let service = Service::start();
    let good = service.api();
    let bad = Api::new(
        &service.keysync,
        "ksa_GuessingGuessingGuessingGuessing00000000",
    );
    for _ in 0..10 {
        refused(bad.get("/v1/orgs"), 401, "invalid_token");
    }
    let slowed = bad.get("/v1/orgs");
    let retry_after: u64 = slowed.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry_after), "{retry_after}");
    refused(slowed, 429, "too_many_failed_tokens");
    // Before any token is looked at: a good one waits too (same address).
    refused(good.get("/v1/orgs"), 429, "too_many_failed_tokens");
    service.keysync.process.wait_for_log(
        "admin api: unknown or revoked token from 127.0.0.1",
        DEADLINE,
    );
    // Forgiven with time: one failure a LEAK_EVERY (6 s).
    poll::eventually(
        "the address to be let in again",
        Duration::from_secs(10),
        || good.get("/v1/orgs").status,
        |status| *status == 200,
    );
}

#[test]
fn creates_with_an_idempotency_key_happen_once() {
    let service = Service::start();
    let api = service.api();
    let org = api.create_org("signups");
    let count_keys = || {
        ks::cli_json(&service.database_url, &["keys", "list", "--org-id", &org])
            .as_array()
            .unwrap()
            .len()
    };

    // A signup retried: the first answer again, the same key, one key made.
    let request = json!({"org_id": org, "name": "customer 42"});
    let first = api.post_once("/v1/keys", "signup-customer-42-attempt", request.clone());
    assert_eq!(first.header("idempotent-replayed"), None);
    let first = ok(first, 201);
    let retry = api.post_once("/v1/keys", "signup-customer-42-attempt", request.clone());
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(ok(retry, 201), first);
    assert_eq!(count_keys(), 1);
    // The stored answer is sealed: the key is not in the database in clear.
    let stored = service.sql("SELECT encode(response, 'escape') FROM api_idempotency");
    assert!(!stored.contains(first["key"].as_str().unwrap()));

    // The same key for another request: 422, nothing made.
    let other = json!({"org_id": org, "name": "customer 43"});
    refused(
        api.post_once("/v1/keys", "signup-customer-42-attempt", other),
        422,
        "idempotency_key_reused",
    );
    // Another token's keys are its own.
    let (token, _) = admin_token(&service.database_url, "another backend", false);
    let another = Api::new(&service.keysync, &token);
    let theirs = ok(
        another.post_once("/v1/keys", "signup-customer-42-attempt", request.clone()),
        201,
    );
    assert_ne!(theirs["key_id"], first["key_id"]);
    assert_eq!(count_keys(), 2);
    refused(
        api.post_once("/v1/keys", "short", request.clone()),
        400,
        "invalid_request",
    );

    // Retries racing each other: every one answers the same key, one is made.
    let racers = 8;
    let barrier = Arc::new(Barrier::new(racers));
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..racers)
            .map(|_| {
                let (api, barrier, request) = (api.clone(), barrier.clone(), request.clone());
                scope.spawn(move || {
                    barrier.wait();
                    ok(
                        api.post_once("/v1/keys", "signup-customer-44-racing", request),
                        201,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        answers.iter().all(|answer| *answer == answers[0]),
        "{answers:?}"
    );
    assert_eq!(count_keys(), 3);

    // Organizations and rotations too.
    let org_once = |key| ok(api.post_once("/v1/orgs", key, json!({"name": "Once"})), 201);
    assert_eq!(
        org_once("create-org-once-0001"),
        org_once("create-org-once-0001")
    );
    let key_id = first["key_id"].as_str().unwrap();
    let rotate = |key| {
        ok(
            api.post_once(
                &format!("/v1/keys/{key_id}/rotate"),
                key,
                json!({"grace": "1h"}),
            ),
            201,
        )
    };
    let rotated = rotate("rotate-customer-42-0001");
    assert_eq!(
        rotate("rotate-customer-42-0001"),
        rotated,
        "not a 409: a replay"
    );
    assert_eq!(count_keys(), 4);
    refused(
        api.post(&format!("/v1/keys/{key_id}/rotate"), json!({"grace": "1h"})),
        409,
        "key_already_rotated",
    );
}

#[test]
fn of_concurrent_rotations_of_one_key_exactly_one_wins() {
    let service = Service::start();
    let api = service.api();
    let org = api.create_org("rotations");
    let racers = 6;
    for round in 0..5 {
        let key = api.create_key(&org);
        let path = format!("/v1/keys/{}/rotate", key["key_id"].as_str().unwrap());
        let barrier = Arc::new(Barrier::new(racers));
        let answers: Vec<Response> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..racers)
                .map(|_| {
                    let (api, barrier, path) = (api.clone(), barrier.clone(), path.clone());
                    scope.spawn(move || {
                        barrier.wait();
                        api.post(&path, json!({"grace": "1h"}))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let statuses: Vec<u16> = answers.iter().map(|answer| answer.status).collect();
        assert_eq!(
            statuses.iter().filter(|&&status| status == 201).count(),
            1,
            "round {round}: {statuses:?}"
        );
        for answer in answers.into_iter().filter(|answer| answer.status != 201) {
            refused(answer, 409, "key_already_rotated");
        }
    }
    // Five keys, each rotated once: ten keys in all.
    let listed = ks::cli_json(&service.database_url, &["keys", "list", "--org-id", &org]);
    assert_eq!(listed.as_array().unwrap().len(), 10);
}

#[test]
fn keys_made_and_revoked_through_the_api_reach_the_gateway_within_a_second() {
    // Only the watch stream can deliver: no refresh for 15 minutes, no miss lookups.
    let stack = Stack::start(|options: &mut GatewayOptions| {
        options.sync_config =
            r#"{"role":"sync","refresh_interval":"15m","max_retry_interval":"1s"}"#.into();
        options.auth_config = r#"{"role":"auth","miss_lookup":{"enabled":false}}"#.into();
    });
    stack
        .gateway
        .process
        .wait_for_log("watch stream connected", DEADLINE);
    stack
        .gateway
        .wait_for_stat("stream_connected", DEADLINE, |n| n == 1);
    let (token, _) = admin_token(&stack.database_url, "signup backend", false);
    let api = Api::new(&stack.keysync, &token);
    let org = api.create_org("gateway");

    for _ in 0..3 {
        let key = api.create_key(&org);
        let created = Instant::now();
        let secret = key["key"].as_str().unwrap().to_owned();
        let works = poll::within(GATEWAY_DEADLINE, Duration::ZERO, || {
            match stack.gateway.get_with_key("/", &secret).status {
                200 => Ok(created.elapsed()),
                status => Err(status),
            }
        });
        let took = works.unwrap_or_else(|status| {
            panic!("a key created through the API still gets {status} after 1s")
        });
        eprintln!("created -> first 200: {took:?}");

        let key_id = key["key_id"].as_str().unwrap();
        ok(
            api.post(&format!("/v1/keys/{key_id}/revoke"), json!({})),
            200,
        );
        let revoked = Instant::now();
        let refused_at = poll::within(GATEWAY_DEADLINE, Duration::ZERO, || {
            match stack.gateway.get_with_key("/", &secret).status {
                403 => Ok(revoked.elapsed()),
                status => Err(status),
            }
        });
        let took = refused_at.unwrap_or_else(|status| {
            panic!("a key revoked through the API still gets {status} after 1s")
        });
        eprintln!("revoked -> first 403: {took:?}");
    }
    assert_eq!(stack.gateway.stat("refresh_ok"), 1, "no refresh helped");
}

#[test]
fn changes_through_the_api_are_audited_with_their_token_and_listed() {
    let service = Service::start();
    let url = &service.database_url;
    let (token, token_id) = admin_token(url, "backend", false);
    let (reader, reader_id) = admin_token(url, "auditor", true);
    let writer = Api::new(&service.keysync, &token);
    let auditor = Api::new(&service.keysync, &reader);

    let org = writer.create_org("audited");
    let limit_path = format!("/v1/orgs/{org}/rate-limit");
    let limit = json!({"requests_per_minute": 60, "burst": 5});
    ok(writer.put(&limit_path, limit.clone()), 200);
    // No-ops record nothing: the same limit again, a retried create, a second revoke.
    assert_eq!(
        ok(writer.put(&limit_path, limit.clone()), 200)["changed"],
        false
    );
    let retry_key = "audit-test-retry-0000000000000001";
    let request = json!({"org_id": org, "name": "web"});
    let created = ok(
        writer.post_once("/v1/keys", retry_key, request.clone()),
        201,
    );
    let replay = writer.post_once("/v1/keys", retry_key, request);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let key_id = created["key_id"].as_str().unwrap();
    let revoke_path = format!("/v1/keys/{key_id}/revoke");
    ok(writer.post(&revoke_path, json!({})), 200);
    assert_eq!(
        ok(writer.post(&revoke_path, json!({})), 200)["revocation"],
        "already_revoked"
    );

    // A read-only token reads the trail: newest first, each change naming its token.
    let page = ok(auditor.get(&format!("/v1/audit?org_id={org}")), 200);
    let items = page["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|item| item["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["key.revoked", "key.created", "org.limit_set", "org.created"],
        "{page:#}"
    );
    assert_eq!(page["next_cursor"], Value::Null);
    for item in items {
        assert_eq!(item["actor"], "admin_token", "{item:#}");
        assert_eq!(item["actor_token_id"], token_id.as_str(), "{item:#}");
        assert_eq!(item["org_id"], org.as_str(), "{item:#}");
    }
    assert_eq!(items[0]["object_type"], "key");
    assert_eq!(items[0]["object_id"], key_id);
    assert_eq!(items[0]["new_value"]["status"], "revoked");
    assert_eq!(items[1]["new_value"]["prefix"], created["prefix"]);
    assert_eq!(items[1]["old_value"], Value::Null);
    assert_eq!(items[2]["object_type"], "org");
    assert_eq!(items[2]["old_value"], Value::Null);
    assert_eq!(items[2]["new_value"], limit);
    let text = page.to_string();
    for secret in [created["key"].as_str().unwrap(), &token, &reader] {
        assert!(!text.contains(secret), "a secret in the trail");
    }

    // The whole trail, a page at a time: the tokens were made on the command line.
    let first = ok(auditor.get("/v1/audit?limit=2"), 200);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = ok(
        auditor.get(&format!("/v1/audit?limit=1000&cursor={cursor}")),
        200,
    );
    assert_eq!(rest["next_cursor"], Value::Null);
    let all: Vec<&Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .collect();
    assert_eq!(all.len(), 6, "{rest:#}");
    for (record, token) in all[4..].iter().zip([&reader_id, &token_id]) {
        assert_eq!(record["action"], "admin_token.created");
        assert_eq!(record["actor"], "cli");
        assert_eq!(record["actor_token_id"], Value::Null);
        assert_eq!(record["object_id"], token.as_str());
        assert_eq!(record["org_id"], Value::Null);
    }
    let recent = ok(auditor.get("/v1/audit?since=1h"), 200);
    assert_eq!(recent["items"].as_array().unwrap().len(), 6);
    let none = ok(auditor.get("/v1/audit?since=0s"), 200);
    assert_eq!(none["items"], json!([]));

    // Bad queries: 400; an unknown organization: 404.
    for query in [
        "since=soon",
        "since=-1h",
        "org_id=nope",
        "limit=0",
        "cursor=zz",
        "orgid=x",
    ] {
        refused(
            auditor.get(&format!("/v1/audit?{query}")),
            400,
            "invalid_request",
        );
    }
    refused(
        auditor.get("/v1/audit?org_id=00000000-0000-4000-8000-000000000000"),
        404,
        "org_not_found",
    );

    // Without a valid token: 401.
    refused(
        Api::anonymous(&service.keysync).get("/v1/audit"),
        401,
        "missing_token",
    );
    let revoked = ks::cli(url, &["admin-tokens", "revoke", &reader_id]);
    assert!(revoked.status.success(), "{revoked:?}");
    refused(auditor.get("/v1/audit"), 401, "invalid_token");
}

/// The `openapi-spec-validator` that `make deps` installs into `.venv` (PyPI, pinned),
/// or `OPENAPI_SPEC_VALIDATOR`.
fn spec_validator() -> PathBuf {
    if let Some(path) = std::env::var_os("OPENAPI_SPEC_VALIDATOR") {
        return PathBuf::from(path);
    }
    let path = paths::workspace_root()
        .join(".venv")
        .join("bin")
        .join("openapi-spec-validator");
    assert!(
        path.is_file(),
        "{} is missing: `make deps` installs it (or set OPENAPI_SPEC_VALIDATOR)",
        path.display()
    );
    path
}

#[test]
fn the_served_openapi_document_is_the_checked_in_one_and_valid_openapi_3_1() {
    let service = Service::start();
    let checked_in =
        std::fs::read_to_string(paths::workspace_root().join("keysync").join("openapi.json"))
            .unwrap();
    // Served without a token.
    let served = Api::anonymous(&service.keysync).get("/v1/openapi.json");
    assert_eq!(served.status, 200);
    assert_eq!(
        served.text(),
        checked_in,
        "served and checked-in documents differ"
    );
    let document = served.json();
    assert_eq!(document["openapi"], "3.1.0");

    let scratch = ScratchDir::new("openapi").unwrap();
    let file = scratch.path().join("openapi.json");
    std::fs::write(&file, served.text()).unwrap();
    let output = Command::new(spec_validator()).arg(&file).output().unwrap();
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Every documented operation answers (401 without a token, not 404 or 405).
    let anonymous = Api::anonymous(&service.keysync);
    let id = "7d2c4a3e-0000-4000-8000-00000000ffff";
    for (path, methods) in document["paths"].as_object().unwrap() {
        let path = path.replace("{org_id}", id).replace("{key_id}", id);
        for method in methods.as_object().unwrap().keys() {
            let status = anonymous
                .send(&method.to_uppercase(), &path, &[], "")
                .status;
            let expected = if path == "/v1/openapi.json" { 200 } else { 401 };
            assert_eq!(status, expected, "{method} {path}");
        }
    }
}
