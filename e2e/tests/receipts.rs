//! Revocation receipts and the fleet (issue 25, section 6) through real Envoys (the wasm
//! filter, or the native one with `KEYSYNC_E2E_GATEWAY=native`), keysync's ext_authz,
//! keysync and PostgreSQL: `keysync keys revoke --wait` returns only when no worker of
//! any live gateway admits the key any more, names the gateways that did not confirm,
//! stops counting one gone past the live window, and `keysync gateways` lists each
//! gateway with its mode.

// Tests: an answer without the expected field fails the test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use keysync_e2e::gateway::{FilterKind, Gateway, GatewayOptions};
use keysync_e2e::http::Connection;
use keysync_e2e::keysync as ks;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::stack::Stack;
use keysync_e2e::Signal;
use serde_json::Value;

/// A short live window, so that a stopped gateway leaves the fleet within the test.
const LIVE_WINDOW: (&str, &str) = ("KEYSYNC_GATEWAY_LIVE_WINDOW", "4s");
/// The exit status of `keys revoke --wait` when some gateway did not confirm.
const UNCONFIRMED_EXIT: i32 = 3;

/// `keysync gateways --json` with the live window of this suite.
fn gateways(database_url: &str) -> Value {
    let output = ks::cli_with_env(database_url, &["gateways", "--json"], &[LIVE_WINDOW]);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("gateways --json")
}

fn live(fleet: &Value) -> Vec<&Value> {
    fleet["gateways"]
        .as_array()
        .expect("gateways")
        .iter()
        .filter(|gateway| gateway["stale"] == false)
        .collect()
}

/// `keysync keys revoke KEY_ID --wait <args>`, and when it returned.
fn revoke_wait(database_url: &str, key_id: &str, args: &[&str]) -> (Output, Instant) {
    let mut all = vec!["keys", "revoke", key_id, "--wait"];
    all.extend_from_slice(args);
    let output = ks::cli_with_env(database_url, &all, &[LIVE_WINDOW]);
    (output, Instant::now())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(output)
        )
    })
}

/// The gateway's instance id as keysync shows it, from the line its sync service logs at
/// start (`usage metering on: instance <32 hex digits>`).
fn instance_of(gateway: &Gateway) -> String {
    let line = gateway
        .process
        .wait_for_log("usage metering on: instance ", DEADLINE);
    let hex: String = line
        .split("instance ")
        .nth(1)
        .expect("an instance")
        .chars()
        .take(32)
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn mode_of(filter: FilterKind) -> &'static str {
    match filter {
        FilterKind::Wasm => "wasm",
        FilterKind::Native => "native",
        FilterKind::None => "ext_authz",
    }
}

/// Waits until `count` gateways are live.
fn wait_for_live(database_url: &str, count: usize) -> Value {
    poll::eventually(
        &format!("{count} live gateways"),
        DEADLINE,
        || gateways(database_url),
        |fleet| live(fleet).len() == count,
    )
}

/// Several connections send the key as fast as they can, each request recorded with
/// when it was sent and its status, until stopped.
struct Hammer {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(Instant, u16)>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Hammer {
    fn start(gateway: &Gateway, key: &str, connections: usize) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let request =
            format!("GET / HTTP/1.1\r\nhost: receipts\r\nauthorization: Bearer {key}\r\n\r\n");
        let threads = (0..connections)
            .map(|_| {
                let (stop, seen, request) = (stop.clone(), seen.clone(), request.clone());
                let mut connection = Connection::new(gateway.addr);
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let status = connection
                            .exchange(request.as_bytes())
                            .map_or(0, |response| response.status);
                        seen.lock().unwrap().push((sent, status));
                    }
                })
            })
            .collect();
        Hammer {
            stop,
            seen,
            threads,
        }
    }

    /// Waits until `count` requests were sent after `since`.
    fn wait_for_sent_after(&self, since: Instant, count: usize) {
        poll::eventually(
            &format!("{count} requests sent"),
            DEADLINE,
            || {
                let seen = self.seen.lock().unwrap();
                seen.iter().filter(|(sent, _)| *sent >= since).count()
            },
            |sent| *sent >= count,
        );
    }

    fn stop(self) -> Vec<(Instant, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

#[test]
fn once_revoke_wait_returns_no_worker_admits_the_key() {
    let stack = Stack::start(|options| options.concurrency = 4);
    let org = stack.create_org("receipts");
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    wait_for_live(&stack.database_url, 1);

    // Eight connections over four workers: every worker has the key in its record cache.
    let started = Instant::now();
    let hammer = Hammer::start(&stack.gateway, &key.key, 8);
    hammer.wait_for_sent_after(started, 2_000);
    let (output, returned) = revoke_wait(&stack.database_url, &key.key_id, &["--json"]);
    hammer.wait_for_sent_after(returned, 500);
    let seen = hammer.stop();

    assert!(output.status.success(), "{}", stderr(&output));
    let receipt = json(&output);
    assert_eq!(receipt["key_id"], key.key_id.as_str());
    assert_eq!(receipt["revocation"], "revoked");
    assert_eq!(
        (&receipt["confirmed"], &receipt["gateways"]),
        (&1.into(), &1.into()),
        "{receipt}"
    );
    assert_eq!(receipt["missing"], Value::Array(vec![]));
    assert!(receipt["revision"].as_u64().unwrap() > 0);
    eprintln!("revoke --wait: {} ms", receipt["elapsed_ms"]);

    let admitted_before = seen
        .iter()
        .filter(|(sent, status)| *sent < returned && *status == 200)
        .count();
    assert!(
        admitted_before >= 1_000,
        "the key was in use: {admitted_before}"
    );
    let after: Vec<u16> = seen
        .iter()
        .filter(|(sent, _)| *sent >= returned)
        .map(|(_, status)| *status)
        .collect();
    let admitted_after = after.iter().filter(|status| **status == 200).count();
    assert_eq!(
        admitted_after,
        0,
        "{admitted_after} of {} requests sent after --wait returned were admitted",
        after.len()
    );
    assert!(after.iter().all(|status| *status == 403), "{after:?}");
}

#[test]
fn a_stopped_gateway_is_named_until_it_is_gone_past_the_live_window() {
    let stack = Stack::start_with(&[LIVE_WINDOW], |_| {});
    // The other kind of filter beside the default one: the fleet shows both modes.
    let other_template = match stack.gateway.filter {
        FilterKind::Native => "gateway.yaml",
        _ => "native.yaml",
    };
    let other = stack.start_another_gateway(|options: &mut GatewayOptions| {
        options.template = other_template.into();
    });
    let org = stack.create_org("fleet");
    let first = stack.create_key(&org, &[]);
    let second = stack.create_key(&org, &[]);
    for gateway in [&stack.gateway, &other] {
        gateway.wait_for_status("/", &first.key, 200, DEADLINE);
    }

    let fleet = poll::eventually(
        "both gateways live and serving the latest revision",
        DEADLINE,
        || gateways(&stack.database_url),
        |fleet| live(fleet).len() == 2 && live(fleet).iter().all(|g| g["lag"] == 0),
    );
    let mut modes: Vec<&str> = live(&fleet)
        .iter()
        .map(|gateway| gateway["mode"].as_str().unwrap())
        .collect();
    modes.sort_unstable();
    let mut expected = vec![mode_of(stack.gateway.filter), mode_of(other.filter)];
    expected.sort_unstable();
    assert_eq!(modes, expected, "{fleet}");
    let mut ids: Vec<&str> = live(&fleet)
        .iter()
        .map(|gateway| gateway["instance_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut instances = vec![instance_of(&stack.gateway), instance_of(&other)];
    instances.sort_unstable();
    assert_eq!(ids, instances, "{fleet}");
    for gateway in live(&fleet) {
        assert!(!gateway["host"].as_str().unwrap().is_empty(), "{gateway}");
        assert!(
            !gateway["version"].as_str().unwrap().is_empty(),
            "{gateway}"
        );
        assert!(gateway["revision"].as_u64().unwrap() > 0, "{gateway}");
        assert!(
            gateway["last_seen"].as_str().unwrap().ends_with('Z'),
            "{gateway}"
        );
    }

    // The other Envoy stops (SIGSTOP): alive to the live window for a while, serving
    // nothing it can confirm. The wait times out, names it, exits 3.
    other.process.signal(Signal::Stop);
    let (output, _) = revoke_wait(
        &stack.database_url,
        &first.key_id,
        &["--timeout", "1s", "--json"],
    );
    assert_eq!(
        output.status.code(),
        Some(UNCONFIRMED_EXIT),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("1 of 2 live gateways did not confirm"),
        "{}",
        stderr(&output)
    );
    let receipt = json(&output);
    assert_eq!(
        (&receipt["confirmed"], &receipt["gateways"]),
        (&1.into(), &2.into()),
        "{receipt}"
    );
    let missing = receipt["missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{receipt}");
    assert_eq!(missing[0]["instance_id"], instance_of(&other).as_str());
    assert_eq!(missing[0]["mode"], mode_of(other.filter));
    assert!(
        receipt["elapsed_ms"].as_u64().unwrap() >= 1_000,
        "{receipt}"
    );
    // The running one did confirm.
    assert_eq!(stack.gateway.get_with_key("/", &first.key).status, 403);

    // Past the live window it no longer counts, and shows as stale.
    let fleet = poll::eventually(
        "the stopped gateway goes stale",
        DEADLINE,
        || gateways(&stack.database_url),
        |fleet| live(fleet).len() == 1,
    );
    let stale: Vec<&Value> = fleet["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|gateway| gateway["stale"] == true)
        .collect();
    assert_eq!(stale.len(), 1, "{fleet}");
    assert_eq!(stale[0]["instance_id"], instance_of(&other).as_str());
    let (output, _) = revoke_wait(&stack.database_url, &second.key_id, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(&format!("revoked key {}", second.key_id)),
        "{text}"
    );
    assert!(text.contains("revoked on 1 of 1 gateways in "), "{text}");
    let listed = ks::cli_with_env(&stack.database_url, &["gateways"], &[LIVE_WINDOW]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("(stale)"), "{listed}");
    assert!(listed.contains("1 live, 1 stale"), "{listed}");
    // keysync's metrics show the fleet as it reads it every few seconds.
    poll::eventually(
        "keysync_gateways by state",
        DEADLINE,
        || {
            let metric = |state| {
                stack
                    .keysync
                    .metric("keysync_gateways", &[&format!("state=\"{state}\"")])
            };
            (metric("live"), metric("stale"))
        },
        |counts| *counts == (1.0, 1.0),
    );
    other.process.signal(Signal::Cont);
}

#[test]
fn a_keysync_answering_ext_authz_is_a_gateway_of_its_own() {
    let stack = Stack::start_with(&[LIVE_WINDOW], |options| {
        options.template = "ext-authz.yaml".into();
    });
    let org = stack.create_org("ext-authz");
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    let fleet = wait_for_live(&stack.database_url, 1);
    assert_eq!(live(&fleet)[0]["mode"], "ext_authz", "{fleet}");

    let (output, _) = revoke_wait(&stack.database_url, &key.key_id, &["--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let receipt = json(&output);
    assert_eq!(
        (&receipt["confirmed"], &receipt["gateways"]),
        (&1.into(), &1.into()),
        "{receipt}"
    );
    // No waiting: the receipt is the promise.
    assert_eq!(stack.gateway.get_with_key("/", &key.key).status, 403);
}
