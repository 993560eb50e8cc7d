//! `make run`'s script as a new user runs it, with no `DATABASE_URL`: its own throwaway
//! PostgreSQL, from a checkout anywhere, a clone under `/root` (a folder of mode 0700)
//! included, and nothing of it left running or on disk once the demo is stopped.
#![allow(clippy::expect_used)]

use std::fs::{self, Permissions};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use keysync_e2e::demo_script::{self, Demo, Printed};
use keysync_e2e::http;
use keysync_e2e::keysync;
use keysync_e2e::poll;
use keysync_e2e::stack::Backend;
use keysync_e2e::ScratchDir;

/// The built echo backend, which `make run`'s script wants to exist.
const ECHO_BACKEND: &str = env!("CARGO_BIN_EXE_echo-backend");

#[test]
fn make_run_starts_its_postgresql_from_a_checkout_the_postgres_user_cannot_enter() {
    // As a clone under /root: run as root, the script runs PostgreSQL as the postgres
    // user, who cannot enter this folder.
    let private = ScratchDir::new("private-folder").expect("scratch dir");
    fs::set_permissions(private.path(), Permissions::from_mode(0o700)).expect("chmod 0700");
    let checkout = demo_script::checkout_in(private.path());
    let backend = Backend::start();
    let mut demo = Demo::start(&checkout, None, &backend, ECHO_BACKEND.as_ref());

    let Printed { key, org_id, .. } = demo.printed();
    let bearer = format!("Bearer {key}");
    let answer = http::get(
        demo.gateway,
        "/hello",
        &[("authorization", bearer.as_bytes())],
    )
    .expect("GET /hello");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["headers"]["x-org-id"][0], org_id.as_str());

    // The demo org is on the demo plan: `keysync usage --cost` prices that request once
    // the gateway has flushed it (every 10 s).
    let commands = demo
        .process
        .wait_for_log("keysync usage --org-id", poll::DEADLINE);
    let database_url = commands
        .split("DATABASE_URL='")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no DATABASE_URL in {commands:?}"))
        .to_owned();
    let invoice = poll::within(Duration::from_secs(60), Duration::from_millis(500), || {
        let invoice = keysync::cli_json(&database_url, &["usage", "--org-id", &org_id, "--cost"]);
        if invoice["segments"][0]["units"] == 1 {
            Ok(invoice)
        } else {
            Err(invoice)
        }
    })
    .unwrap_or_else(|last| panic!("the request was never priced: {last}"));
    assert_eq!(invoice["segments"][0]["plan_name"], "demo", "{invoice}");
    assert_eq!(invoice["currency"], "EUR", "{invoice}");

    // Ctrl-C stops everything the demo started, its PostgreSQL included.
    let started = demo
        .process
        .wait_for_log("starting a throwaway PostgreSQL on ", poll::DEADLINE);
    let postgres: SocketAddr = started
        .split("starting a throwaway PostgreSQL on ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {started:?}"));
    demo.process.signal(keysync_e2e::Signal::Int);
    demo.process
        .wait_exit(poll::DEADLINE)
        .expect("the demo stops on Ctrl-C");
    assert!(
        TcpStream::connect_timeout(&postgres, Duration::from_secs(1)).is_err(),
        "the demo's PostgreSQL still listens on {postgres}: {}",
        demo.process.log()
    );
    let data = started
        .split("(data in ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no data folder in {started:?}"));
    assert!(
        !Path::new(data).exists(),
        "the throwaway cluster's data is left in {data}"
    );
}

/// With several backends (the seed's own `BACKEND_URLS`), every curl line the demo prints
/// answers what its comment says (no `/hello` that no route takes), and the printed
/// console address and admin token sign in.
#[test]
fn the_demo_prints_lines_that_work_for_its_backends_and_a_console_to_sign_in_to() {
    let postgres = keysync_e2e::postgres::TestPostgres::start();
    let database_url = postgres.create_database();
    let checkout = demo_script::checkout();
    let backend = Backend::start();
    let backends = format!("api-service={0},billing={0}", backend.url());
    let demo = Demo::start_with_backends(
        &checkout,
        Some(&database_url),
        &backends,
        ECHO_BACKEND.as_ref(),
    );
    let printed = demo.printed();

    // Each `# NNN: ...` comment and the curl line under it.
    let lines: Vec<&str> = printed.message.lines().map(str::trim).collect();
    let mut tried = Vec::new();
    for pair in lines.windows(2) {
        let (Some(expected), Some(curl)) = (
            pair[0].strip_prefix("# ").and_then(|rest| rest.get(..3)),
            pair[1].strip_prefix("curl -i "),
        ) else {
            continue;
        };
        let url = curl.split(' ').next().unwrap_or_default();
        let path = url
            .split_once("localhost:")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(_, path)| format!("/{path}"))
            .unwrap_or_else(|| panic!("no path in {curl:?}"));
        let key = curl
            .split_once("Bearer ")
            .map(|(_, rest)| rest.trim_end_matches('\''));
        let bearer = key.map(|key| format!("Bearer {key}"));
        let headers: Vec<(&str, &[u8])> = bearer
            .iter()
            .map(|bearer| ("authorization", bearer.as_bytes()))
            .collect();
        let answer = http::get(demo.gateway, &path, &headers).expect("GET through the demo");
        assert_eq!(
            answer.status.to_string(),
            expected,
            "{curl}: {}",
            answer.text()
        );
        tried.push(path);
    }
    assert!(
        tried.contains(&"/api-service/".to_owned()) && tried.contains(&"/billing/".to_owned()),
        "the demo printed no line for each backend: {tried:?}\n{}",
        printed.message
    );
    assert!(!tried.iter().any(|path| path == "/hello"), "{tried:?}");

    // The console's page, and its token, which reads the demo organization.
    let console: SocketAddr = printed
        .console
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/console/"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no console address in {:?}", printed.console));
    let page = http::get(console, "/console/", &[]).expect("GET /console/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("keysync console"), "{}", page.text());
    let bearer = format!("Bearer {}", printed.admin_token);
    let org = http::get(
        console,
        &format!("/v1/orgs/{}", printed.org_id),
        &[("authorization", bearer.as_bytes())],
    )
    .expect("GET the demo org");
    assert_eq!(org.status, 200, "{}", org.text());
    assert_eq!(org.json()["name"], "Demo Org");
}
