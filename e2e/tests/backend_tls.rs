//! TLS to PostgreSQL and Redis, against servers that refuse plain text (as managed ones
//! do): `sslmode` and `sslrootcert` in `DATABASE_URL` mean what they mean to libpq, for
//! the CLI and for `serve` (every pool and the LISTEN connection); `rediss://` carries
//! the global rate-limit counts; a certificate problem is one clear line, the one
//! docs/tls.md shows. `make run`'s script works end to end with `sslmode=verify-full`.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use keysync_e2e::demo_script::{self, Demo, Printed};
use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::http;
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::rate_window::enough_of_the_window_left;
use keysync_e2e::redis::TestRedis;
use keysync_e2e::replies::assert_rate_limited;
use keysync_e2e::stack::{Backend, Stack};
use keysync_e2e::test_ca::TestCa;
use keysync_e2e::{ScratchDir, TestPostgres};

/// A TLS-only PostgreSQL presenting a certificate of its CA for `names`, that CA's
/// certificate in a file, and another CA's ("wrong") beside it.
struct TlsDatabase {
    postgres: TestPostgres,
    /// The URL of a fresh database, without TLS parameters.
    url: String,
    ca: PathBuf,
    wrong_ca: PathBuf,
    dir: ScratchDir,
}

impl TlsDatabase {
    fn start(names: &[&str]) -> TlsDatabase {
        let ca = TestCa::new("keysync test CA");
        let dir = ScratchDir::new("tls-ca").expect("scratch dir");
        let postgres = TestPostgres::start_tls_only(&ca.server_certificate(names));
        let url = postgres.create_database();
        TlsDatabase {
            ca: ca.write_pem(dir.path(), "ca.pem"),
            wrong_ca: TestCa::new("another CA").write_pem(dir.path(), "wrong-ca.pem"),
            postgres,
            url,
            dir,
        }
    }

    /// The database's URL with `query` (`sslmode=...&sslrootcert=...`).
    fn url_with(&self, query: &str) -> String {
        format!("{}?{query}", self.url)
    }

    /// `sslmode=<mode>&sslrootcert=<ca>`.
    fn verified(&self, mode: &str, ca: &Path) -> String {
        self.url_with(&format!("sslmode={mode}&sslrootcert={}", ca.display()))
    }

    /// One value from the database (psql over TLS, not checking the certificate).
    fn query(&self, sql: &str) -> String {
        self.postgres
            .psql(keysync_e2e::postgres::database_of(&self.url), sql)
    }
}

/// Asserts a CLI run failed with exit status 1 and exactly one line on stderr, an
/// `error: ` line containing each of `expected`; returns that line.
fn assert_one_error_line(output: &Output, expected: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "stdout: {:?}", output.stdout);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    for part in expected {
        assert!(line.contains(part), "{part:?} not in: {line}");
    }
    line.to_owned()
}

fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Only the watch stream carries changes, and keysync hears of them only through
/// PostgreSQL's notifications (LISTEN), so a revocation that arrives in seconds came
/// over the LISTEN connection.
fn push_only(options: &mut GatewayOptions) {
    options.sync_config =
        r#"{"role":"sync","refresh_interval":"15m","max_retry_interval":"1s"}"#.into();
    options.auth_config = r#"{"role":"auth","miss_lookup":{"enabled":false}}"#.into();
}
/// The built echo backend, which `make run`'s script wants to exist.
const ECHO_BACKEND: &str = env!("CARGO_BIN_EXE_echo-backend");
const NO_POLLING: (&str, &str) = ("KEYSYNC_POLL_INTERVAL", "10m");
const PUSH_DEADLINE: Duration = Duration::from_secs(10);

fn wait_until_watching(gateway: &Gateway) {
    gateway.wait_for_stat("stream_connected", DEADLINE, |n| n == 1);
}

#[test]
fn keysync_runs_end_to_end_on_a_tls_only_postgresql_with_verify_full() {
    let database = TlsDatabase::start(&["127.0.0.1"]);
    let url = database.verified("verify-full", &database.ca);
    let name = keysync_e2e::postgres::database_of(&database.url).to_owned();
    let TlsDatabase {
        postgres,
        ca: _ca,
        wrong_ca: _wrong,
        dir: _dir,
        ..
    } = database;
    // migrate, orgs create and keys create run as CLI commands over TLS.
    let stack = Stack::start_on(postgres, url, &[NO_POLLING], push_only);
    wait_until_watching(&stack.gateway);
    let org = stack.create_org("tls");
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    assert_eq!(
        stack.gateway.get_with_key("/", "sk_live_unknown").status,
        403
    );

    ks::revoke_key(&stack.database_url, &key.key_id);
    stack
        .gateway
        .wait_for_status("/", &key.key, 403, PUSH_DEADLINE);

    // Every connection keysync holds (its pools and the LISTEN one) is TLS; the server
    // refuses any other, but say so from its side too.
    assert_every_keysync_connection_is_tls(&stack.postgres, &name);
}

/// keysync holds at least two connections to `database` (a pool's and the LISTEN one),
/// as PostgreSQL sees them, and every one is TLS.
fn assert_every_keysync_connection_is_tls(postgres: &TestPostgres, database: &str) {
    let connections = postgres.psql(
        database,
        "SELECT bool_and(s.ssl), count(*) FROM pg_stat_activity a \
         JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'keysync'",
    );
    let (all_tls, count) = connections.split_once('|').expect("two columns");
    assert_eq!(all_tls, "t", "{connections}");
    assert!(count.parse::<u32>().expect("a count") >= 2, "{connections}");
}

#[test]
fn make_run_works_end_to_end_on_a_tls_only_postgresql_with_verify_full() {
    let database = TlsDatabase::start(&["127.0.0.1"]);
    let url = database.verified("verify-full", &database.ca);
    let backend = Backend::start();
    let checkout = demo_script::checkout();
    let demo = Demo::start(&checkout, Some(&url), &backend, ECHO_BACKEND.as_ref());

    // The curl lines come once the gateway has synced its keys: the printed key works
    // at the first try.
    let Printed {
        key,
        key_id,
        org_id,
        ..
    } = demo.printed();
    let gateway = demo.gateway;
    let bearer = format!("Bearer {key}");
    let with_key = || http::get(gateway, "/hello", &[("authorization", bearer.as_bytes())]);
    let answer = with_key().expect("GET /hello");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["headers"]["x-org-id"][0], org_id.as_str());
    let without = http::get(gateway, "/hello", &[]).expect("GET /hello");
    assert_eq!(without.status, 401, "{}", without.text());

    // The operator commands it prints work over TLS too: a revocation reaches the
    // gateway.
    ks::revoke_key(&url, &key_id);
    poll::within(
        PUSH_DEADLINE,
        Duration::from_millis(50),
        || match with_key() {
            Ok(answer) if answer.status == 403 => Ok(()),
            other => Err(other.map(|answer| answer.status)),
        },
    )
    .unwrap_or_else(|seen| panic!("the revoked key still gets {seen:?}"));

    // Every connection of the demo's keysync is TLS.
    assert_every_keysync_connection_is_tls(
        &database.postgres,
        keysync_e2e::postgres::database_of(&database.url),
    );
}

#[test]
fn make_run_with_a_wrong_ca_stops_at_one_error_line_and_writes_nothing() {
    let database = TlsDatabase::start(&["127.0.0.1"]);
    let url = database.verified("verify-full", &database.wrong_ca);
    let backend = Backend::start();
    let checkout = demo_script::checkout();
    let Demo { mut process, .. } =
        Demo::start(&checkout, Some(&url), &backend, ECHO_BACKEND.as_ref());
    let status = process.wait_exit(DEADLINE).expect("make run stops");
    assert_eq!(status.code(), Some(1), "{}", process.log());
    assert_eq!(
        process.log(),
        format!("{}\n", wrong_ca_line(&url, &database.wrong_ca))
    );
    assert_eq!(
        database.query("SELECT to_regclass('_sqlx_migrations') IS NULL"),
        "t",
        "no migration was applied"
    );
}

/// The one line a certificate that does not chain to `ca` gets, as docs/tls.md shows it
/// (`url` holds no password to hide).
fn wrong_ca_line(url: &str, ca: &Path) -> String {
    format!(
        "error: cannot connect to PostgreSQL at {url}: TLS handshake failed: the server's \
         certificate is not signed by a CA in sslrootcert \"{}\" (invalid peer \
         certificate: UnknownIssuer)",
        ca.display()
    )
}

#[test]
fn a_wrong_ca_is_one_error_line_naming_the_certificate_problem_and_nothing_is_written() {
    let database = TlsDatabase::start(&["127.0.0.1"]);
    let wrong = database.verified("verify-full", &database.wrong_ca);
    // The line docs/tls.md shows, exactly.
    let expected = wrong_ca_line(&wrong, &database.wrong_ca);

    assert_eq!(
        assert_one_error_line(&ks::cli(&wrong, &["migrate"]), &[]),
        expected
    );
    assert_eq!(
        database.query("SELECT to_regclass('_sqlx_migrations') IS NULL"),
        "t",
        "no migration was applied"
    );

    let right = database.verified("verify-full", &database.ca);
    ks::migrate(&right);
    assert_eq!(
        assert_one_error_line(
            &ks::cli(&wrong, &["orgs", "create", "--name", "never"]),
            &[]
        ),
        expected
    );
    assert_eq!(database.query("SELECT count(*) FROM organizations"), "0");

    // serve stops before it listens, with the same line last.
    let serve = ks::cli_with_env(
        &wrong,
        &["serve"],
        &[
            ("KEYSYNC_GRPC_ADDR", "127.0.0.1:0"),
            ("KEYSYNC_HTTP_ADDR", "127.0.0.1:0"),
        ],
    );
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert_eq!(serve.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        expected,
        "{stderr}"
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|line| line.starts_with("error: "))
            .count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("keysync listening"), "{stderr}");
}

#[test]
fn sslmode_disable_against_a_tls_only_server_says_the_server_wants_tls() {
    let database = TlsDatabase::start(&["127.0.0.1"]);
    assert_one_error_line(
        &ks::cli(&database.url_with("sslmode=disable"), &["migrate"]),
        &[
            "no encryption",
            "the server accepts only TLS connections",
            "sslmode",
        ],
    );
}

#[test]
fn verify_full_refuses_a_certificate_for_another_host_name_and_verify_ca_accepts_it() {
    // A certificate for another name than the 127.0.0.1 keysync connects to.
    let database = TlsDatabase::start(&["db.example.internal"]);
    assert_one_error_line(
        &ks::cli(
            &database.verified("verify-full", &database.ca),
            &["migrate"],
        ),
        &[
            "certificate is not valid for 127.0.0.1",
            "db.example.internal",
        ],
    );
    assert_eq!(
        database.query("SELECT to_regclass('_sqlx_migrations') IS NULL"),
        "t",
        "no migration was applied"
    );
    // verify-ca checks the chain only, as libpq's does: the name is not looked at.
    assert_success(
        &ks::cli(&database.verified("verify-ca", &database.ca), &["migrate"]),
        "migrate with verify-ca",
    );
    assert_eq!(
        database.query("SELECT to_regclass('_sqlx_migrations') IS NOT NULL"),
        "t",
        "the migrations were applied"
    );
    // And the chain still counts: a certificate of another CA is refused.
    assert_one_error_line(
        &ks::cli(
            &database.verified("verify-ca", &database.wrong_ca),
            &["orgs", "create", "--name", "never"],
        ),
        &["certificate is not signed by a CA in sslrootcert"],
    );
    assert_eq!(database.query("SELECT count(*) FROM organizations"), "0");
}

#[test]
fn require_verifies_the_certificate_when_a_root_certificate_exists_as_libpq_does() {
    let database = TlsDatabase::start(&["127.0.0.1"]);
    // Named in the URL: require behaves like verify-ca.
    assert_one_error_line(
        &ks::cli(
            &database.verified("require", &database.wrong_ca),
            &["migrate"],
        ),
        &["certificate is not signed by a CA in sslrootcert"],
    );
    // The default ~/.postgresql/root.crt counts too.
    let home = ScratchDir::new("home").expect("scratch dir");
    std::fs::create_dir(home.path().join(".postgresql")).expect("mkdir");
    std::fs::copy(&database.wrong_ca, home.path().join(".postgresql/root.crt"))
        .expect("copy the CA");
    let home_env = home.path().display().to_string();
    assert_one_error_line(
        &ks::cli_with_env(
            &database.url_with("sslmode=require"),
            &["migrate"],
            &[("HOME", &home_env)],
        ),
        &[
            "certificate is not signed by a CA in sslrootcert",
            "root.crt",
        ],
    );
    // Without a root certificate, require encrypts without checking; the default
    // (prefer) uses TLS when the server offers it.
    let empty_home = ScratchDir::new("empty-home").expect("scratch dir");
    let empty_home = empty_home.path().display().to_string();
    let no_roots = [("HOME", empty_home.as_str())];
    for query in ["sslmode=require", "application_name=keysync"] {
        assert_success(
            &ks::cli_with_env(&database.url_with(query), &["migrate"], &no_roots),
            query,
        );
    }
    // The environment variables libpq reads, when the URL does not say.
    assert_success(
        &ks::cli_with_env(
            &database.url,
            &["orgs", "list"],
            &[
                ("PGSSLMODE", "verify-full"),
                ("PGSSLROOTCERT", &database.ca.display().to_string()),
            ],
        ),
        "PGSSLMODE=verify-full",
    );
    assert_one_error_line(
        &ks::cli_with_env(&database.url, &["orgs", "list"], &[("PGSSLMODE", "verify")]),
        &["invalid PGSSLMODE value: \"verify\""],
    );
}

/// A TLS-only Redis and its CA's certificate in `dir`.
fn tls_redis(dir: &ScratchDir) -> (TestRedis, PathBuf) {
    let ca = TestCa::new("redis test CA");
    let redis = TestRedis::start_tls_only(&ca.server_certificate(&["127.0.0.1"]), &ca.pem());
    (redis, ca.write_pem(dir.path(), "redis-ca.pem"))
}

/// The names of the rate-limit counters in `redis`, read with `redis-cli` over TLS.
fn counters(redis: &TestRedis, ca: &Path) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(ca)
        .args(["-h", "127.0.0.1", "-p", &redis.port().to_string()])
        .args(["--scan", "--pattern", "keysync:ratelimit:*"])
        .output()
        .expect("run redis-cli");
    assert_success(&output, "redis-cli --scan");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn global_rate_limits_count_in_a_tls_only_redis() {
    let dir = ScratchDir::new("redis-tls-ca").expect("scratch dir");
    let (redis, ca) = tls_redis(&dir);
    let url = redis.tls_url();
    let ca_text = ca.display().to_string();
    let stack = Stack::start_with(
        &[("REDIS_URL", &url), ("KEYSYNC_REDIS_TLS_CA", &ca_text)],
        GatewayOptions::global_rate_limits,
    );
    let org = stack.create_org("rediss");
    stack.set_org_limit(&org, &["--rpm", "3"]);
    let key = stack.create_key(&org, &[]);
    enough_of_the_window_left(30);
    // With Redis unreachable the failure mode (open) would let every request through:
    // a 429 means the count was kept in Redis.
    let limited = stack.gateway.wait_for_status("/", &key.key, 429, DEADLINE);
    assert_rate_limited(&limited, 3);
    assert_eq!(stack.keysync.metric("keysync_ratelimit_redis_up", &[]), 1.0);
    let names = counters(&redis, &ca);
    assert!(
        names.contains(&format!("keysync:ratelimit:org:{org}:")),
        "{names}"
    );
}

/// A certificate problem with Redis is a configuration error, but keysync's first job
/// is the keys: it keeps serving them (rate limits answer by the failure mode) and says
/// what is wrong.
#[test]
fn a_wrong_redis_ca_is_logged_clearly_and_keysync_keeps_serving() {
    let dir = ScratchDir::new("redis-tls-ca").expect("scratch dir");
    let (redis, _ca) = tls_redis(&dir);
    let wrong = TestCa::new("another CA").write_pem(dir.path(), "wrong.pem");
    let postgres = TestPostgres::start();
    let url = postgres.create_database();
    ks::migrate(&url);
    let redis_url = redis.tls_url();
    let wrong_text = wrong.display().to_string();
    let keysync = Keysync::start(
        &url,
        &[
            ("REDIS_URL", &redis_url),
            ("KEYSYNC_REDIS_TLS_CA", &wrong_text),
        ],
    );
    let line = keysync.process.wait_for_log(
        "certificate is not signed by a CA in KEYSYNC_REDIS_TLS_CA",
        DEADLINE,
    );
    assert!(line.contains("UnknownIssuer"), "{line}");
    poll::eventually(
        "keysync_ratelimit_redis_up 0 with errors counted",
        DEADLINE,
        || keysync.metric("keysync_ratelimit_redis_errors_total", &[]),
        |errors| *errors >= 1.0,
    );
    assert_eq!(keysync.metric("keysync_ratelimit_redis_up", &[]), 0.0);
    assert!(redis.is_running());
    let ready = keysync_e2e::http::get(keysync.http, "/readyz", &[]).expect("GET /readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
}
