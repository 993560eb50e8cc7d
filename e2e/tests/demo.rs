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
