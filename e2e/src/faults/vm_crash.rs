//! VM crash, of the sync VM and of an auth VM: the gateway runs the filter's crash-test
//! build (`--features crash-test`, see `filter/wasm/src/adapter/crash_test.rs`), in which a
//! request header `x-keysync-crash-test: auth` makes the worker's VM panic at once and
//! `... : sync` makes the sync service's VM panic at its next tick. A key is revoked
//! right after. It must show the statuses clients see (every one a reply of the
//! contract: 200, or the JSON errors, never Envoy's own or no answer) and the time until
//! the gateway is right again (known keys 200, the revoked key 403).
//!
//! (A rogue keysync's frame over the VM's memory, or a split change set that never
//! ends, used to be the way to crash a VM from outside; the filter now refuses both,
//! which the rogue keysync case shows.)

use std::time::{Duration, Instant};

use super::figures::{duration, statuses, Figures, Verdict};
use super::Scale;
use crate::gateway::Gateway;
use crate::http::{self, Response};
use crate::keysync::{self, CreatedKey, Keysync};
use crate::paths;
use crate::poll::DEADLINE;
use crate::stack::Backend;
use crate::TestPostgres;

/// The crash-test build's trigger.
const CRASH_HEADER: &str = "x-keysync-crash-test";
/// A client waits this long for an answer before it counts as none.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Which VM fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vm {
    /// The singleton sync service.
    Sync,
    /// The HTTP filter of one worker.
    Auth,
}

/// One answer a client got.
struct Answer {
    at: Instant,
    status: Option<u16>,
    /// 200 from the backend, or one of the contract's JSON errors.
    contract: bool,
}

/// Whether `response` is what the contract allows a client to see.
fn is_contract_reply(response: &Response) -> bool {
    let json: Option<serde_json::Value> = serde_json::from_slice(&response.body).ok();
    match response.status {
        200 => json.is_some_and(|j| j.get("path").is_some()),
        401 | 403 | 429 | 503 => json.is_some_and(|j| j.get("error").is_some()),
        _ => false,
    }
}

/// `GET /` with `key` (and `extra` headers) on a fresh connection.
fn ask(gateway: &Gateway, key: &str, extra: &[(&str, &[u8])]) -> Answer {
    let bearer = format!("Bearer {key}");
    let mut headers = vec![("authorization", bearer.as_bytes())];
    headers.extend_from_slice(extra);
    let at = Instant::now();
    let response = http::get_within(gateway.addr, "/", &headers, ANSWER_TIMEOUT).ok();
    Answer {
        at,
        status: response.as_ref().map(|r| r.status),
        contract: response.as_ref().is_some_and(is_contract_reply),
    }
}

pub fn run(scale: Scale, vm: Vm) -> Figures {
    let observe = scale.pick(Duration::from_secs(15), Duration::from_secs(60));

    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    keysync::migrate(&database_url);
    let keysync = Keysync::start(&database_url, &[]);
    let backend = Backend::start();
    let org = keysync::create_org(&database_url, "vm-crash");
    let keys: Vec<CreatedKey> = (0..3)
        .map(|_| keysync::create_key(&database_url, &org, "crash", &[]))
        .collect();
    let (known, doomed) = (&keys[0], &keys[2]);
    let mut options = super::shipped_options(keysync.grpc, &backend, None);
    options.filter_wasm = Some(paths::crash_test_filter_wasm());
    let gateway = Gateway::start(options);
    gateway.wait_for_status("/", &known.key, 200, DEADLINE);
    gateway.wait_for_status("/", &doomed.key, 200, DEADLINE);
    gateway.wait_until_synced(DEADLINE);

    let offset = gateway.process.log_len();
    let crash_sent = Instant::now();
    let trigger = match vm {
        Vm::Sync => "sync",
        Vm::Auth => "auth",
    };
    let crash_request = ask(&gateway, &known.key, &[(CRASH_HEADER, trigger.as_bytes())]);
    let failed = crate::poll::within(2 * DEADLINE, Duration::from_millis(50), || {
        let log = gateway.process.log();
        let failure = log.get(offset..).and_then(|tail| {
            tail.lines()
                .find(|line| line.contains("Uncaught") || line.contains("[critical][wasm]"))
        });
        failure.map(str::to_string).ok_or(())
    });
    let crashed_after = crash_sent.elapsed();

    // A revocation the gateway must learn.
    keysync::revoke_key(&database_url, &doomed.key_id);
    let revoked = Instant::now();
    let mut answers: Vec<(bool, Answer)> = Vec::new();
    while revoked.elapsed() < observe {
        answers.push((true, ask(&gateway, &known.key, &[])));
        answers.push((false, ask(&gateway, &doomed.key, &[])));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Recovered: from some moment on, every answer is right (known 200, doomed 403).
    let recovered_at = answers
        .iter()
        .rposition(|(is_known, a)| a.status != Some(if *is_known { 200 } else { 403 }))
        .map_or(Some(revoked), |last_wrong| {
            answers.get(last_wrong + 1).map(|(_, a)| a.at)
        });
    let recovered = recovered_at.map(|at| at.saturating_duration_since(crash_sent));
    let not_contract: Vec<Option<u16>> = answers
        .iter()
        .map(|(_, a)| a)
        .chain(std::iter::once(&crash_request))
        .filter(|a| !a.contract)
        .map(|a| a.status)
        .collect();
    let show = |took: Option<Duration>| took.map_or("never".to_string(), duration);

    let mut figures = Figures::new(&format!("VM crash ({vm:?} VM)"));
    figures.add(
        "trigger",
        format!("a request with `{CRASH_HEADER}: {trigger}` (crash-test build)"),
    );
    figures.add(
        "what the filter logged of it",
        super::distinct_lines(
            gateway.process.log().get(offset..).unwrap_or_default(),
            &["[warning][wasm]", "[error][wasm]", "[critical][wasm]"],
        ),
    );
    figures.add(
        "VM failure logged after",
        match &failed {
            Ok(_) => duration(crashed_after),
            Err(()) => "none: the VM did not fail".to_string(),
        },
    );
    {
        let request = &crash_request;
        figures.add(
            "the request that carried the trigger",
            format!(
                "{:?} (contract reply: {})",
                request.status, request.contract
            ),
        );
    }
    figures.add(
        "known key afterwards",
        statuses(answers.iter().filter(|(k, _)| *k).map(|(_, a)| a.status)),
    );
    figures.add(
        "key revoked after the crash",
        statuses(answers.iter().filter(|(k, _)| !*k).map(|(_, a)| a.status)),
    );
    figures.add(
        "answers outside the contract (must be 0)",
        if not_contract.is_empty() {
            "0".to_string()
        } else {
            format!(
                "{} ({})",
                not_contract.len(),
                statuses(not_contract.iter().copied())
            )
        },
    );
    figures.add(
        "recovered (known 200, revoked 403 from then on) after the crash",
        show(recovered),
    );
    figures.add("observed for", duration(observe));
    super::operator_figures(&mut figures, &gateway, Some(&keysync));
    figures.print();

    let mut verdict = Verdict::new();
    verdict.check(
        not_contract.is_empty(),
        "clients only see replies of the contract",
        || statuses(not_contract.iter().copied()),
    );
    verdict.check(
        recovered.is_some_and(|took| took < observe),
        "the gateway recovers",
        || {
            format!(
                "still wrong at the end of {observe:?}; envoy log:\n{}",
                gateway.process.log_tail(30)
            )
        },
    );
    verdict.finish(&format!("VM crash ({vm:?})"));
    figures
}
