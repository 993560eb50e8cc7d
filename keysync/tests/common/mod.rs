//! Helpers shared by the database-backed tests: running the real `keysync` binary,
//! checking its one-line errors, reading tables with psql, and the operator API in
//! process ([`api`]).
#![allow(dead_code)]

pub mod api;
pub mod blackhole;
pub mod org_lock;
pub mod serve;
pub mod usage_flush;

use std::process::{Command, Output};

use keysync_e2e::TestPostgres;

/// The binary under test, built by cargo for these tests.
pub const KEYSYNC: &str = env!("CARGO_BIN_EXE_keysync");

/// A `keysync` command with a clean environment: no inherited `DATABASE_URL`,
/// `REDIS_URL`, `KEYSYNC_*` or `RUST_LOG` from the developer's shell.
pub fn command(database_url: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new(KEYSYNC);
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KEYSYNC_") {
            command.env_remove(name);
        }
    }
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command
}

/// What one CLI run produced.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

pub fn keysync(database_url: Option<&str>, args: &[&str]) -> Run {
    command(database_url, args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {KEYSYNC}: {error}"))
        .into()
}

/// Runs a command that must succeed quietly and returns its stdout.
pub fn ok(database_url: &str, args: &[&str]) -> String {
    let run = keysync(Some(database_url), args);
    assert!(run.success, "keysync {args:?} failed: {run:?}");
    assert_eq!(run.stderr, "", "keysync {args:?} wrote to stderr");
    run.stdout
}

/// Runs a command that must succeed and print JSON.
pub fn json(database_url: &str, args: &[&str]) -> serde_json::Value {
    let stdout = ok(database_url, args);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("keysync {args:?} printed no JSON ({error}): {stdout}"))
}

/// Asserts a failed run: exit 1, nothing on stdout, exactly one stderr line, which
/// starts with `error: ` and contains `expected`.
pub fn assert_one_line_error(run: &Run, expected: &str) {
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(run.stdout, "", "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.ends_with('\n'), "{run:?}");
    assert!(run.stderr.starts_with("error: "), "{run:?}");
    assert!(
        run.stderr.contains(expected),
        "expected {expected:?} in {:?}",
        run.stderr
    );
}

/// A fresh cluster with one migrated database; returns both and the database URL.
pub fn migrated_database() -> (TestPostgres, String) {
    let postgres = TestPostgres::start();
    let url = postgres.create_database();
    assert_eq!(ok(&url, &["migrate"]), "migrations applied\n");
    (postgres, url)
}

/// The database name at the end of a URL, for psql.
pub fn database_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Runs SQL in the URL's database and returns psql's unaligned output.
pub fn sql(postgres: &TestPostgres, url: &str, statement: &str) -> String {
    postgres.psql(database_name(url), statement)
}

/// Creates an organization and returns its id.
pub fn create_org(url: &str, name: &str) -> String {
    let created = json(url, &["orgs", "create", "--name", name, "--json"]);
    created["org_id"].as_str().unwrap().to_owned()
}

/// A key as `keys create --json` printed it.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub key: String,
    pub key_id: String,
    pub org_id: String,
    pub prefix: String,
    pub expires_at: Option<String>,
}

pub fn create_key(url: &str, org_id: &str, name: &str, extra: &[&str]) -> CreatedKey {
    let mut args = vec![
        "keys", "create", "--org-id", org_id, "--name", name, "--json",
    ];
    args.extend_from_slice(extra);
    let created = json(url, &args);
    let text = |field: &str| created[field].as_str().map(str::to_owned);
    CreatedKey {
        key: text("key").unwrap(),
        key_id: text("key_id").unwrap(),
        org_id: text("org_id").unwrap(),
        prefix: text("prefix").unwrap(),
        expires_at: text("expires_at"),
    }
}

/// SHA-256 of a key, as keysync stores and serves it.
pub fn key_hash(key: &str) -> Vec<u8> {
    keysync_contract::key_hash::KeyHash::of_key(key.as_bytes())
        .0
        .to_vec()
}
