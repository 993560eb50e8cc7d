//! The operator HTTP API (`/v1/` on keysync's API listener) over real HTTP, against a real
//! `keysync serve` and PostgreSQL (and a real Envoy for the gateway test): every
//! endpoint's answers and errors ([`organizations`], [`keys`]), admin tokens
//! ([`tokens`], [`org_tokens`]), idempotent creates ([`idempotency`]), concurrent
//! rotations and keys made and revoked through the API at the gateway ([`keys`]), the
//! audit trail of API changes ([`audit`]), webhooks ([`webhooks`]), the fleet and
//! revocation receipts ([`gateways`]) and the OpenAPI document ([`openapi`]). This
//! file holds the API client and the service they share.

// Tests: an answer without the expected field fails the test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use keysync_e2e::http::{self, Response};
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::postgres::{database_of, TestPostgres};
use serde_json::{json, Value};

mod audit;
mod fleet_usage;
mod gateways;
mod idempotency;
mod key_data;
mod keys;
mod openapi;
mod org_tokens;
mod organizations;
mod tokens;
mod webhooks;

/// A client of one keysync's API.
#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    token: Option<String>,
}

impl Api {
    fn new(keysync: &Keysync, token: &str) -> Api {
        Api {
            addr: keysync.api(),
            token: Some(token.to_owned()),
        }
    }

    fn anonymous(keysync: &Keysync) -> Api {
        Api {
            addr: keysync.api(),
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
    admin_token_of(database_url, name, read_only, None)
}

/// `keysync admin-tokens create`, limited to an organization (`--org-id`) or not: the
/// token and its id.
fn admin_token_of(
    database_url: &str,
    name: &str,
    read_only: bool,
    org_id: Option<&str>,
) -> (String, String) {
    let mut args = vec!["admin-tokens", "create", "--name", name];
    if read_only {
        args.push("--read-only");
    }
    if let Some(org_id) = org_id {
        args.extend(["--org-id", org_id]);
    }
    let created = ks::cli_json(database_url, &args);
    assert_eq!(created["read_only"], read_only);
    assert_eq!(created["org_id"].as_str(), org_id);
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
