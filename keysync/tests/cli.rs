//! The operator CLI against a real PostgreSQL: migrations, organizations, keys, and
//! every way of misusing them (one stderr line, exit 1, nothing written).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use keysync_e2e::{Process, TestPostgres};
use uuid::Uuid;

#[test]
fn migrate_twice_then_create_and_list_organizations() {
    let (_postgres, url) = migrated_database();
    // Second run: nothing to apply, still one quiet line.
    assert_eq!(ok(&url, &["migrate"]), "migrations applied\n");

    let text = ok(&url, &["orgs", "create", "--name", "Acme Corp"]);
    let id = text
        .strip_prefix("created organization ")
        .and_then(|rest| rest.strip_suffix(" (Acme Corp)\n"))
        .unwrap_or_else(|| panic!("unexpected output {text:?}"));
    let acme = Uuid::parse_str(id).unwrap();

    let chosen = Uuid::new_v4();
    let created = json(
        &url,
        &[
            "orgs",
            "create",
            "--name",
            "Beta",
            "--id",
            &chosen.to_string(),
            "--json",
        ],
    );
    assert_eq!(
        created,
        serde_json::json!({"org_id": chosen.to_string(), "name": "Beta", "external_id": null, "metadata": null})
    );

    let table = ok(&url, &["orgs", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "NAME", "EXTERNAL_ID", "CREATED", "QUOTA", "LIMIT"]
    );
    assert!(
        lines[1].starts_with(&format!("{acme}  Acme Corp  ")),
        "{table}"
    );
    assert!(
        lines[2].starts_with(&format!("{chosen}  Beta       ")),
        "{table}"
    );
    // Columns line up: CREATED starts at the same offset on every line.
    let column = lines[0].find("CREATED").unwrap();
    let quota_column = lines[0].find("QUOTA").unwrap();
    let limit_column = lines[0].find("LIMIT").unwrap();
    for line in &lines[1..] {
        DateTime::parse_from_rfc3339(line[column..quota_column].trim_end()).unwrap();
        // No quota or limit yet.
        assert_eq!(line[quota_column..limit_column].trim_end(), "-", "{table}");
        assert_eq!(&line[limit_column..], "-", "{table}");
    }

    let listed = json(&url, &["orgs", "list", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["org_id"], acme.to_string());
    assert_eq!(listed[0]["name"], "Acme Corp");
    assert_eq!(listed[1]["org_id"], chosen.to_string());
    let created_at = listed[1]["created_at"].as_str().unwrap();
    let created_at: DateTime<Utc> = created_at.parse().unwrap();
    assert!((Utc::now() - created_at).num_seconds().abs() < 300);
}

#[test]
fn keys_create_prints_the_key_once_and_stores_only_its_hash() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");

    let text = ok(&url, &["keys", "create", "--org-id", &org, "--name", "ci"]);
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
    assert_eq!(key.len(), 8 + 32 + 6, "random part and checksum");
    assert!(key[8..].chars().all(|c| c.is_ascii_alphanumeric()), "{key}");
    assert_eq!(field("org_id"), org);
    assert_eq!(field("prefix"), key[..12]);
    assert_eq!(field("expires_at"), "never");
    assert!(lines.last().unwrap().contains("shown only once"), "{text}");
    let key_id = field("key_id");

    let stored = sql(
        &postgres,
        &url,
        &format!(
            "SELECT encode(key_hash, 'hex'), key_prefix, name, active, expires_at IS NULL \
             FROM api_keys WHERE id = '{key_id}'"
        ),
    );
    assert_eq!(
        stored,
        format!("{}|{}|ci|t|t", hex::encode(key_hash(&key)), &key[..12])
    );

    let test_key = create_key(
        &url,
        &org,
        "staging",
        &["--env", "test", "--expires-in", "90d"],
    );
    assert!(test_key.key.starts_with("sk_test_"));
    assert_eq!(test_key.prefix, test_key.key[..12]);
    assert_eq!(test_key.org_id, org);
    let expires: DateTime<Utc> = test_key.expires_at.as_deref().unwrap().parse().unwrap();
    let expected = Utc::now() + chrono::TimeDelta::days(90);
    assert!((expected - expires).num_seconds().abs() < 120, "{expires}");
    let stored_expiry = sql(
        &postgres,
        &url,
        &format!(
            "SELECT extract(epoch FROM expires_at)::bigint FROM api_keys WHERE id = '{}'",
            test_key.key_id
        ),
    );
    assert_eq!(stored_expiry, expires.timestamp().to_string());

    // No column of any row holds either key, nor even its random part.
    let everything = sql(&postgres, &url, "SELECT t::text FROM api_keys t");
    for secret in [&key, &test_key.key] {
        assert!(!everything.contains(&secret[8..]), "{everything}");
    }
}

#[test]
fn keys_list_shows_prefix_and_status_and_revoke_is_idempotent() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let live = create_key(&url, &org, "live one", &[]);
    let revoked = create_key(&url, &org, "to revoke", &[]);
    let expired = create_key(&url, &org, "short lived", &["--expires-in", "1h"]);
    sql(
        &postgres,
        &url,
        &format!(
            "UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = '{}'",
            expired.key_id
        ),
    );

    assert_eq!(
        ok(&url, &["keys", "revoke", &revoked.key_id]),
        format!("revoked key {}\n", revoked.key_id)
    );
    let again = keysync(Some(&url), &["keys", "revoke", &revoked.key_id]);
    assert!(again.success, "{again:?}");
    assert_eq!(
        again.stdout,
        format!("key {} was already revoked\n", revoked.key_id)
    );
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!(
                "SELECT active, revoked_at IS NOT NULL FROM api_keys WHERE id = '{}'",
                revoked.key_id
            )
        ),
        "f|t"
    );

    let table = ok(&url, &["keys", "list", "--org-id", &org]);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|line| {
            line.split("  ")
                .filter(|cell| !cell.is_empty())
                .map(str::trim)
                .collect()
        })
        .collect();
    assert_eq!(
        rows[0],
        [
            "ID",
            "PREFIX",
            "NAME",
            "CREATED",
            "EXPIRES",
            "STATUS",
            "QUOTA",
            "LIMIT",
            "BUDGET",
            "SCOPES",
            "ALLOWED_FROM",
            "LAST_USED"
        ]
    );
    let row = |id: &str| {
        rows.iter()
            .find(|row| row[0] == id)
            .unwrap_or_else(|| panic!("{id} not in {table}"))
            .clone()
    };
    assert_eq!(row(&live.key_id)[1], live.prefix);
    assert_eq!(row(&live.key_id)[2], "live one");
    assert_eq!(row(&live.key_id)[4], "never");
    assert_eq!(row(&live.key_id)[5], "active");
    assert_eq!(row(&revoked.key_id)[5], "revoked");
    assert_eq!(row(&expired.key_id)[5], "expired");
    // No gateway has reported a use of any of them.
    assert_eq!(row(&live.key_id)[11], "never");
    for key in [&live, &revoked, &expired] {
        assert!(!table.contains(&key.key[8..]), "a key leaked into {table}");
    }

    let listed = json(&url, &["keys", "list", "--org-id", &org, "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    let status = |id: &str| {
        listed
            .iter()
            .find(|key| key["key_id"] == id)
            .map(|key| key["status"].as_str().unwrap().to_owned())
            .unwrap()
    };
    assert_eq!(status(&live.key_id), "active");
    assert_eq!(status(&revoked.key_id), "revoked");
    assert_eq!(status(&expired.key_id), "expired");
    let text = serde_json::to_string(listed).unwrap();
    for key in [&live, &revoked, &expired] {
        assert!(!text.contains(&key.key[8..]), "a key leaked into {text}");
    }
    assert_eq!(listed[0]["prefix"], live.prefix);
}

#[test]
fn misuse_is_one_line_and_changes_nothing() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "existing", &[]);
    let unknown = Uuid::new_v4().to_string();
    let counts = || {
        sql(
            &postgres,
            &url,
            "SELECT (SELECT count(*) FROM organizations), (SELECT count(*) FROM api_keys), \
             (SELECT count(*) FROM api_keys WHERE active), (SELECT revision FROM keysync_revision)",
        )
    };
    let before = counts();

    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["keys", "create", "--org-id", &unknown, "--name", "x"],
            format!("error: organization {unknown} not found"),
        ),
        (
            vec!["keys", "create", "--org-id", "abc", "--name", "x"],
            "error: invalid org id 'abc': not a UUID".to_owned(),
        ),
        (
            vec![
                "keys",
                "create",
                "--org-id",
                &org,
                "--name",
                "x",
                "--expires-in",
                "3x",
            ],
            "error: invalid --expires-in '3x': ".to_owned(),
        ),
        (
            vec![
                "keys",
                "create",
                "--org-id",
                &org,
                "--name",
                "x",
                "--expires-in",
                "0s",
            ],
            "error: invalid --expires-in '0s': must be longer than zero".to_owned(),
        ),
        (
            vec!["keys", "create", "--org-id", &org, "--name", "  "],
            "error: invalid key name: must not be empty".to_owned(),
        ),
        (
            vec!["keys", "list", "--org-id", &unknown],
            format!("error: organization {unknown} not found"),
        ),
        (
            vec!["keys", "list", "--org-id", "12345"],
            "error: invalid org id '12345': not a UUID".to_owned(),
        ),
        (
            vec!["keys", "revoke", &unknown],
            format!("error: key {unknown} not found"),
        ),
        (
            vec!["keys", "revoke", "not-a-key-id"],
            "error: invalid key id 'not-a-key-id': not a UUID".to_owned(),
        ),
        (
            vec!["orgs", "create", "--name", ""],
            "error: invalid organization name: must not be empty".to_owned(),
        ),
        (
            vec!["orgs", "create", "--name", "x", "--id", "abc"],
            "error: invalid org id 'abc': not a UUID".to_owned(),
        ),
        (
            vec!["orgs", "create", "--name", "dup", "--id", &org],
            format!("error: organization {org} already exists"),
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
    assert_eq!(counts(), before, "a failed command changed the database");
    // The existing key was not touched by the failed revocations.
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!("SELECT active FROM api_keys WHERE id = '{}'", key.key_id)
        ),
        "t"
    );

    // Usage errors stay clap's (exit 2), and change nothing either.
    let run = keysync(Some(&url), &["keys", "create", "--name", "x"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(counts(), before);
}

#[test]
fn keys_check_tells_an_issued_key_from_a_typo_without_a_database() {
    let (_postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "ci", &[]).key;

    // No DATABASE_URL: the check is offline.
    let run = keysync(None, &["keys", "check", &key]);
    assert!(run.success, "{run:?}");
    assert!(run.stdout.contains("form: checksummed"), "{run:?}");
    assert!(!run.stdout.contains(&key), "the key is not printed back");
    let json: serde_json::Value =
        serde_json::from_str(&keysync(None, &["keys", "check", &key, "--json"]).stdout).unwrap();
    assert_eq!(json["form"], "checksummed");
    assert_eq!(json["prefix"], key[..12]);

    let mut typo = key.clone().into_bytes();
    typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let run = keysync(None, &["keys", "check", &typo]);
    assert_one_line_error(&run, "the checksum does not match");
    assert!(!run.stderr.contains(&typo[12..]), "{run:?}");

    // From standard input, as `-` or without an argument.
    for args in [vec!["keys", "check", "-"], vec!["keys", "check"]] {
        let mut child = command(None, &args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        writeln!(child.stdin.take().unwrap(), "{typo}").unwrap();
        let run: Run = child.wait_with_output().unwrap().into();
        assert_one_line_error(&run, "the checksum does not match");
    }
    assert_one_line_error(
        &keysync(None, &["keys", "check", "hello"]),
        "not an API key",
    );
}

#[test]
fn commands_need_a_database_url() {
    for args in [
        vec!["migrate"],
        vec!["orgs", "list"],
        vec!["keys", "revoke", &Uuid::new_v4().to_string()],
        vec!["serve"],
    ] {
        let run = keysync(None, &args);
        assert_one_line_error(
            &run,
            "error: no database URL: set DATABASE_URL or pass --database-url",
        );
    }
}

#[test]
fn help_works_everywhere_and_never_shows_the_database_url() {
    for args in [
        vec!["--help"],
        vec!["migrate", "--help"],
        vec!["orgs", "--help"],
        vec!["orgs", "create", "--help"],
        vec!["orgs", "list", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "create", "--help"],
        vec!["keys", "list", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["keys", "revoke", "--help"],
        vec!["keys", "get", "--help"],
        vec!["keys", "set-scopes", "--help"],
        vec!["keys", "set-allowlist", "--help"],
        vec!["serve", "--help"],
    ] {
        let run = keysync(Some("postgres://keysync:topsecret@127.0.0.1:1/db"), &args);
        assert!(run.success, "{args:?}: {run:?}");
        assert!(run.stdout.contains("Usage: keysync"), "{args:?}: {run:?}");
        assert!(
            !run.stdout.contains("topsecret"),
            "{args:?}: {}",
            run.stdout
        );
    }
}

/// Runs `keysync args` with a deadline, as a process whose output is captured.
fn run_with_deadline(
    url: &str,
    args: &[&str],
    deadline: Duration,
) -> (std::process::ExitStatus, String) {
    let mut process = Process::spawn("keysync", command(Some(url), args));
    let started = Instant::now();
    let status = process.wait_exit(deadline).unwrap_or_else(|| {
        panic!(
            "keysync {args:?} still running after {deadline:?}:\n{}",
            process.log()
        )
    });
    assert!(started.elapsed() < deadline);
    (status, process.log())
}

fn assert_single_error_line(log: &str, expected: &str) {
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].starts_with("error: "), "{log}");
    assert!(
        lines[0].contains(expected),
        "expected {expected:?} in {log}"
    );
}

#[test]
fn bad_database_url_is_one_line_without_the_password() {
    for (url, expected) in [
        ("not a url topsecret", "error: invalid database URL: "),
        (
            "mysql://keysync:topsecret@127.0.0.1/db",
            "error: invalid database URL: scheme 'mysql' is not postgres:// or postgresql://",
        ),
        (
            "postgres://keysync:topsecret@127.0.0.1:99999/db",
            "error: invalid database URL: ",
        ),
    ] {
        for args in [&["orgs", "list"][..], &["serve"][..]] {
            let (status, log) = run_with_deadline(url, args, Duration::from_secs(15));
            assert_eq!(status.code(), Some(1), "{url} {args:?}: {log}");
            assert_single_error_line(&log, expected);
            assert!(!log.contains("topsecret"), "{log}");
        }
    }
}

#[test]
fn unreachable_postgres_is_one_line_within_seconds() {
    let mut postgres = TestPostgres::start();
    let url = postgres.create_database();
    ok(&url, &["migrate"]);
    let port = postgres.port();
    postgres.stop();
    let with_password = url.replacen("postgres://keysync@", "postgres://keysync:topsecret@", 1);
    let expected = format!(
        "error: cannot connect to PostgreSQL at postgres://keysync:***@127.0.0.1:{port}/{}: ",
        database_name(&url)
    );
    for args in [
        &["keys", "list", "--org-id", &Uuid::new_v4().to_string()][..],
        &["serve"][..],
    ] {
        let (status, log) = run_with_deadline(&with_password, args, Duration::from_secs(15));
        assert_eq!(status.code(), Some(1), "{args:?}: {log}");
        assert_single_error_line(&log, &expected);
        assert!(!log.contains("topsecret"), "{log}");
    }
}

#[test]
fn serve_without_migrations_fails_after_listening() {
    let postgres = TestPostgres::start();
    let url = postgres.create_database();
    let mut serve = command(Some(&url), &["serve"]);
    serve
        .env("KEYSYNC_GRPC_ADDR", "127.0.0.1:0")
        .env("KEYSYNC_HTTP_ADDR", "127.0.0.1:0")
        .env("KEYSYNC_API_ADDR", "127.0.0.1:0");
    let mut process = Process::spawn("keysync-serve", serve);
    process.wait_for_log("keysync listening:", Duration::from_secs(15));
    let status = process
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("serve kept running:\n{}", process.log()));
    assert_eq!(status.code(), Some(1));
    let log = process.log();
    let last = log.lines().last().unwrap();
    assert!(
        last.starts_with("error: cannot load the key snapshot: "),
        "{log}"
    );
    assert!(last.contains("keysync_revision"), "{log}");
}

#[test]
fn serve_with_a_bad_setting_is_one_line() {
    let (status, log) = {
        let mut serve = command(Some("postgres://keysync@127.0.0.1:1/db"), &["serve"]);
        serve.env("KEYSYNC_POLL_INTERVAL", "often");
        let mut process = Process::spawn("keysync-serve", serve);
        let status = process.wait_exit(Duration::from_secs(15)).unwrap();
        (status, process.log())
    };
    assert_eq!(status.code(), Some(1));
    assert_single_error_line(&log, "error: invalid KEYSYNC_POLL_INTERVAL='often': ");
}

#[test]
fn serve_on_a_taken_port_is_one_line() {
    let (_postgres, url) = migrated_database();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut serve = command(Some(&url), &["serve"]);
    serve
        .env("KEYSYNC_GRPC_ADDR", addr.to_string())
        .env("KEYSYNC_HTTP_ADDR", "127.0.0.1:0");
    let mut process = Process::spawn("keysync-serve", serve);
    let status = process.wait_exit(Duration::from_secs(15)).unwrap();
    assert_eq!(status.code(), Some(1));
    assert_single_error_line(
        &process.log(),
        &format!("error: cannot listen for gRPC on {addr}: "),
    );
}
