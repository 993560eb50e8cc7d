//! Leak reports through the real keysync and Envoy: a report signed like GitHub's
//! secret-scanning program revokes a live key (the gateway refuses it within moments, in
//! both modes) or flags it; every token gets its label; a bad signature, an oversized
//! body and a replay change nothing; no answer or log line holds a reported key.
#![allow(clippy::expect_used)]

use keysync_e2e::http::{self, Response};
use std::path::Path;
use std::time::{Duration, Instant};

use keysync_e2e::keysync::{self as ks, cli_json, Keysync};
use keysync_e2e::leak_signer::{key_list, Signer};
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::postgres::TestPostgres;
use keysync_e2e::scratch::ScratchDir;
use keysync_e2e::stack::Stack;
use sha2::{Digest, Sha256};

const PATH: &str = "/leak-reports/github";

/// keysync's environment for reports signed by `signer`, the key list in `dir`.
fn leak_env(dir: &ScratchDir, signer: &Signer, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let list = dir.path().join("github-keys.json");
    std::fs::write(&list, key_list(&[signer])).expect("write the key list");
    let mut env = vec![(
        "KEYSYNC_LEAK_PUBLIC_KEYS_FILE".to_owned(),
        list.display().to_string(),
    )];
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

fn start(template: &str, env: &[(String, String)]) -> Stack {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Stack::start_with(&env, |options| options.template = template.into())
}

/// A report body naming `tokens`.
fn report(tokens: &[&str]) -> Vec<u8> {
    let matches: Vec<serde_json::Value> = tokens
        .iter()
        .map(|token| {
            serde_json::json!({
                "token": token,
                "type": "keysync_api_key",
                "url": "https://github.com/someone/repo/blob/main/.env",
                "source": "content",
            })
        })
        .collect();
    serde_json::to_vec(&matches).expect("JSON")
}

/// POSTs `body` to the endpoint with the given signature headers.
fn post(keysync: &Keysync, body: &[u8], signature: Option<(&str, &str)>) -> Response {
    let mut raw = format!(
        "POST {PATH} HTTP/1.1\r\nhost: keysync\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some((identifier, signature)) = signature {
        raw.push_str(&format!(
            "github-public-key-identifier: {identifier}\r\ngithub-public-key-signature: {signature}\r\n"
        ));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    http::send_raw(keysync.api(), &raw).expect("reach keysync's operator API")
}

fn signed(keysync: &Keysync, signer: &Signer, body: &[u8]) -> Response {
    post(
        keysync,
        body,
        Some((&signer.identifier, &signer.sign(body))),
    )
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The labels of an answer, by token hash.
fn labels(response: &Response) -> Vec<(String, String)> {
    assert_eq!(response.status, 200, "{}", response.text());
    response
        .json()
        .as_array()
        .expect("an array")
        .iter()
        .map(|label| {
            assert_eq!(label["token_type"], "keysync_api_key");
            (
                label["token_hash"].as_str().expect("a hash").to_owned(),
                label["label"].as_str().expect("a label").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_signed_report_revokes_the_key_at_every_gateway_in_both_modes() {
    for template in ["gateway.yaml", "ext-authz.yaml"] {
        let dir = ScratchDir::new("leak-reports").expect("scratch dir");
        let github =
            Signer::generate("90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a");
        let stack = start(template, &leak_env(&dir, &github, &[]));
        let org = stack.create_org("leaky");
        let leaked = stack.create_key(&org, &[]);
        let bystander = stack.create_key(&org, &[]);
        for key in [&leaked, &bystander] {
            stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
        }

        let never_issued = "sk_live_NobodyEverGotThisKey00000000000000";
        let body = report(&[&leaked.key, never_issued, "not a key at all"]);
        let response = signed(&stack.keysync, &github, &body);
        assert!(
            !response.text().contains(&leaked.key),
            "the answer names keys by hash"
        );
        assert_eq!(
            labels(&response),
            vec![
                (sha256_hex(&leaked.key), "true_positive".to_owned()),
                (sha256_hex(never_issued), "false_positive".to_owned()),
                (sha256_hex("not a key at all"), "false_positive".to_owned()),
            ]
        );
        stack
            .gateway
            .wait_for_status("/", &leaked.key, 403, DEADLINE);
        assert_eq!(stack.gateway.get_with_key("/", &bystander.key).status, 200);

        // A replay: the same answer, nothing more happens.
        let replay = signed(&stack.keysync, &github, &body);
        assert_eq!(labels(&replay), labels(&response));
        let listed = cli_json(&stack.database_url, &["keys", "list", "--org-id", &org]);
        let leaked_row = listed
            .as_array()
            .expect("keys")
            .iter()
            .find(|row| row["key_id"] == leaked.key_id.as_str())
            .expect("the leaked key is listed");
        assert_eq!(leaked_row["status"], "revoked");
        assert!(leaked_row["leaked_at"].is_string(), "{leaked_row}");

        // One audit record, by the leak report, without the key.
        let trail = cli_json(&stack.database_url, &["audit", "--org-id", &org]);
        let reports: Vec<&serde_json::Value> = trail
            .as_array()
            .expect("records")
            .iter()
            .filter(|record| record["action"] == "key.leak_reported")
            .collect();
        assert_eq!(reports.len(), 1, "the replay recorded nothing: {trail}");
        assert_eq!(reports[0]["actor"], "leak_report");
        assert_eq!(reports[0]["object_id"], leaked.key_id.as_str());
        assert_eq!(reports[0]["new_value"]["action"], "revoke");
        assert_eq!(reports[0]["new_value"]["active"], false);
        assert_eq!(reports[0]["new_value"]["sighting"]["source"], "content");
        assert!(!trail.to_string().contains(&leaked.key[8..]));

        let log = stack.keysync.process.log();
        assert!(
            log.contains(&format!("leak report: key {} revoked", leaked.key_id)),
            "{log}"
        );
        assert!(
            !log.contains(&leaked.key[8..]),
            "a key reached keysync's log"
        );
    }
}

#[test]
fn bad_signatures_and_oversized_reports_change_nothing() {
    let dir = ScratchDir::new("leak-reports-bad").expect("scratch dir");
    let github = Signer::generate("github-key");
    let stack = start(
        "gateway.yaml",
        &leak_env(&dir, &github, &[("KEYSYNC_LEAK_MAX_BODY_BYTES", "2048")]),
    );
    let org = stack.create_org("careful");
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    let body = report(&[&key.key]);

    let impostor = Signer::generate("github-key");
    let tampered = {
        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        tampered
    };
    let refused = [
        post(&stack.keysync, &body, None),
        signed(&stack.keysync, &impostor, &body),
        post(
            &stack.keysync,
            &tampered,
            Some((&github.identifier, &github.sign(&body))),
        ),
        post(
            &stack.keysync,
            &body,
            Some(("another-key", &github.sign(&body))),
        ),
    ];
    for response in &refused {
        assert_eq!(response.status, 401, "{}", response.text());
        assert_eq!(response.json()["error"], "bad_signature");
    }

    let padding = "x".repeat(4096);
    let oversized = report(&[&key.key, &padding]);
    let response = signed(&stack.keysync, &github, &oversized);
    assert_eq!(response.status, 413, "{}", response.text());

    let not_a_report = br#"{"token":"x"}"#;
    let response = signed(&stack.keysync, &github, not_a_report);
    assert_eq!(response.status, 400, "{}", response.text());

    // Still working, not flagged.
    assert_eq!(stack.gateway.get_with_key("/", &key.key).status, 200);
    let listed = cli_json(&stack.database_url, &["keys", "list", "--org-id", &org]);
    assert!(listed[0]["leaked_at"].is_null(), "{listed}");
    let trail = cli_json(&stack.database_url, &["audit", "--org-id", &org]);
    assert!(!trail.to_string().contains("key.leak_reported"), "{trail}");
}

#[test]
fn flag_mode_marks_the_key_and_leaves_it_working() {
    let dir = ScratchDir::new("leak-reports-flag").expect("scratch dir");
    let github = Signer::generate("github-key");
    let stack = start(
        "gateway.yaml",
        &leak_env(&dir, &github, &[("KEYSYNC_LEAK_ACTION", "flag")]),
    );
    let org = stack.create_org("flagged");
    let key = stack.create_key(&org, &[]);
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);
    let response = signed(&stack.keysync, &github, &report(&[&key.key]));
    assert_eq!(labels(&response)[0].1, "true_positive");
    let listed = cli_json(&stack.database_url, &["keys", "list", "--org-id", &org]);
    assert_eq!(listed[0]["status"], "active");
    assert!(listed[0]["leaked_at"].is_string(), "{listed}");
    stack.wait_for_next_refresh();
    assert_eq!(stack.gateway.get_with_key("/", &key.key).status, 200);
}

/// Replaces the key list at once (a rename), as a Secret volume or a deploy tool does.
fn replace_key_list(list: &Path, text: &str) {
    let next = list.with_extension("next");
    std::fs::write(&next, text).expect("write the key list");
    std::fs::rename(&next, list).expect("replace the key list");
}

#[test]
fn a_new_key_list_is_picked_up_and_a_bad_one_keeps_the_keys_in_use() {
    let dir = ScratchDir::new("leak-reports-reload").expect("scratch dir");
    let retiring = Signer::generate("retiring-key");
    let rotated = Signer::generate("rotated-key");
    let list = dir.path().join("github-keys.json");
    std::fs::write(&list, key_list(&[&retiring])).expect("write the key list");
    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    ks::migrate(&database_url);
    let interval = Duration::from_millis(200);
    let list_path = list.display().to_string();
    let keysync = Keysync::start(
        &database_url,
        &[
            ("KEYSYNC_LEAK_PUBLIC_KEYS_FILE", list_path.as_str()),
            ("KEYSYNC_LEAK_RELOAD_INTERVAL", "200ms"),
        ],
    );
    let body = report(&["sk_live_NobodyEverGotThisKey00000000000000"]);
    let status = |signer: &Signer| signed(&keysync, signer, &body).status;
    assert_eq!(status(&retiring), 200);
    assert_eq!(status(&rotated), 401, "not listed yet");

    // GitHub rotates: the new list holds both keys; reports signed with either pass.
    replace_key_list(&list, &key_list(&[&retiring, &rotated]));
    poll::eventually(
        "a report signed with the new key to be accepted",
        Duration::from_secs(5),
        || status(&rotated),
        |status| *status == 200,
    );
    assert_eq!(status(&retiring), 200);
    keysync
        .process
        .wait_for_log("leak reports: public keys reloaded: 2 keys", DEADLINE);

    // A broken list (a half-written download): the keys in use stay, one log line says
    // why, however many periods it stays broken.
    let before = keysync.process.log_len();
    replace_key_list(&list, "{\"public_keys\": [");
    let broken_since = Instant::now();
    while broken_since.elapsed() < interval * 10 {
        assert_eq!(status(&rotated), 200);
        assert_eq!(status(&retiring), 200);
    }
    let log = keysync.process.log();
    let refusals: Vec<&str> = log[before..]
        .lines()
        .filter(|line| line.contains("leak reports: cannot reload the public keys"))
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0].contains("keeping the 2 keys in use"),
        "{}",
        refusals[0]
    );
    assert!(
        refusals[0].contains("KEYSYNC_LEAK_PUBLIC_KEYS_FILE"),
        "{}",
        refusals[0]
    );

    // The rotation ends: the retired key is dropped from the list, and refused.
    replace_key_list(&list, &key_list(&[&rotated]));
    poll::eventually(
        "a report signed with the retired key to be refused",
        Duration::from_secs(5),
        || status(&retiring),
        |status| *status == 401,
    );
    assert_eq!(status(&rotated), 200);
}
