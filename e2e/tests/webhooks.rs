//! Signed webhooks through the real keysync, PostgreSQL and a real receiver that verifies
//! every delivery with the Standard Webhooks reference library (`standardwebhooks`): each
//! key event arrives signed, once, with no key in it; a receiver that fails twice gets
//! the same webhook-id three times; a change made while `serve` is down is delivered
//! after it restarts, and one killed mid-attempt is sent again once its lease ends; two
//! replicas send each delivery once; a change that rolls back sends nothing; a slow
//! receiver delays nobody else; URLs to private addresses are refused at creation and at
//! delivery; https goes to the checked address with the certificate checked against the
//! host name; quota thresholds crossed by a real Envoy's traffic are sent from the quota
//! alert's decision.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use keysync_e2e::http;
use keysync_e2e::keysync::{self as ks, cli_json, Keysync};
use keysync_e2e::leak_signer::{key_list, Signer};
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::postgres::{database_of, TestPostgres};
use keysync_e2e::scratch::ScratchDir;
use keysync_e2e::stack::Stack;
use keysync_e2e::test_ca::TestCa;
use keysync_e2e::webhook_receiver::{Delivery, Receiver};
use serde_json::Value;

/// Retries spaced by a fraction of a second, expiries noticed within moments: the tests
/// wait for what they assert, not for the defaults. No polling to speak of: deliveries
/// are sent because their change's notification, a retry's due time or a freed slot woke
/// the sender.
const FAST: &[(&str, &str)] = &[
    ("KEYSYNC_WEBHOOK_POLL_INTERVAL", "1h"),
    ("KEYSYNC_WEBHOOK_RETRY_FIRST", "200ms"),
    ("KEYSYNC_WEBHOOK_RETRY_MAX", "1s"),
    ("KEYSYNC_WEBHOOK_TIMEOUT", "20s"),
    ("KEYSYNC_WEBHOOK_EXPIRY_SCAN_INTERVAL", "200ms"),
];

/// PostgreSQL, a migrated database, `keysync serve` and a receiver.
struct Setup {
    postgres: TestPostgres,
    database_url: String,
    keysync: Keysync,
    receiver: Receiver,
}

impl Setup {
    fn start(extra: &[(&str, &str)]) -> Setup {
        let postgres = TestPostgres::start();
        let database_url = postgres.create_database();
        ks::migrate(&database_url);
        let keysync = Keysync::start(&database_url, &[FAST, extra].concat());
        Setup {
            postgres,
            database_url,
            keysync,
            receiver: Receiver::start(),
        }
    }

    /// `keysync webhooks create` for the receiver's endpoint `name` (with its behaviour
    /// in `query`), its secret registered with the receiver; the webhook's id.
    fn webhook(&self, name: &str, query: &str, events: &[&str]) -> String {
        create_webhook(&self.database_url, &self.receiver, name, query, events)
    }

    fn sql(&self, query: &str) -> String {
        self.postgres.psql(database_of(&self.database_url), query)
    }

    /// `keysync webhooks deliveries <args> --json`.
    fn deliveries(&self, args: &[&str]) -> Vec<Value> {
        let listed = cli_json(
            &self.database_url,
            &[&["webhooks", "deliveries"], args].concat(),
        );
        listed.as_array().expect("a list").clone()
    }
}

fn create_webhook(
    database_url: &str,
    receiver: &Receiver,
    name: &str,
    query: &str,
    events: &[&str],
) -> String {
    let url = receiver.url(name, query);
    let mut args = vec![
        "webhooks",
        "create",
        "--url",
        &url,
        "--allow-http",
        "--allow-private",
    ];
    for event in events {
        args.extend(["--event", event]);
    }
    let created = cli_json(database_url, &args);
    let secret = created["secret"].as_str().expect("the secret");
    assert!(secret.starts_with("whsec_"), "{created}");
    receiver.register(name, secret);
    created["webhook_id"].as_str().expect("an id").to_owned()
}

/// Every delivery verified by the library and answered as the endpoint was told to.
#[track_caller]
fn assert_verified(deliveries: &[Delivery]) {
    for delivery in deliveries {
        assert!(
            delivery.verified,
            "not verified by standardwebhooks: {:?}",
            delivery.error
        );
        assert!(delivery.signature.starts_with("v1,"), "{delivery:?}");
        let sent_at: i64 = delivery.timestamp.parse().expect("unix seconds");
        assert!(
            (sent_at as f64 - delivery.arrived).abs() < 60.0,
            "webhook-timestamp {sent_at} is the attempt's time"
        );
    }
}

#[test]
fn every_key_event_arrives_signed_once_and_verifies_with_the_standard_webhooks_library() {
    let dir = ScratchDir::new("webhooks-leak").expect("scratch dir");
    let github =
        Signer::generate("90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a");
    let list = dir.path().join("github-keys.json");
    std::fs::write(&list, key_list(&[&github])).expect("write the key list");
    let list = list.display().to_string();
    let setup = Setup::start(&[("KEYSYNC_LEAK_PUBLIC_KEYS_FILE", &list)]);
    let all_events = [
        "key.created",
        "key.revoked",
        "key.rotated",
        "key.expired",
        "key.leaked",
    ];
    let all = setup.webhook("all", "", &all_events);
    setup.webhook("revocations", "", &["key.revoked"]);

    let org = ks::create_org(&setup.database_url, "hooked");
    let first = ks::create_key(&setup.database_url, &org, "first", &[]);
    let rotated = cli_json(
        &setup.database_url,
        &["keys", "rotate", &first.key_id, "--grace", "0s"],
    );
    let second_id = rotated["key_id"].as_str().unwrap().to_owned();
    let second_key = rotated["key"].as_str().unwrap().to_owned();
    ks::revoke_key(&setup.database_url, &second_id);
    let short = ks::create_key(&setup.database_url, &org, "short", &["--expires-in", "1s"]);
    let leaked = ks::create_key(&setup.database_url, &org, "leaked", &[]);
    let body = serde_json::to_vec(&serde_json::json!([{
        "token": leaked.key,
        "type": "keysync_api_key",
        "url": "https://github.com/someone/repo/blob/main/.env",
        "source": "content",
    }]))
    .unwrap();
    let signature = github.sign(&body);
    let mut raw = format!(
        "POST /leak-reports/github HTTP/1.1\r\nhost: keysync\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\ngithub-public-key-identifier: {}\r\n\
         github-public-key-signature: {signature}\r\n\r\n",
        body.len(),
        github.identifier
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let answer = http::send_raw(setup.keysync.api(), &raw).expect("report the leak");
    assert_eq!(answer.status, 200, "{}", answer.text());

    // created (3), rotated, revoked, expired, leaked.
    let got = setup
        .receiver
        .wait_for("seven events", "all", DEADLINE, |got| got.len() >= 7);
    assert_verified(&got);
    let types: Vec<&str> = got.iter().map(Delivery::event_type).collect();
    let mut sorted = types.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "key.created",
            "key.created",
            "key.created",
            "key.expired",
            "key.leaked",
            "key.revoked",
            "key.rotated"
        ],
        "{types:?}"
    );
    let ids: HashSet<&str> = got.iter().map(|d| d.webhook_id.as_str()).collect();
    assert_eq!(ids.len(), 7, "one webhook-id an event: {got:?}");
    assert!(got.iter().all(|d| d.status == 200 && d.attempt == 1));
    for delivery in &got {
        for key in [&first.key, &second_key, &short.key, &leaked.key] {
            assert!(
                !delivery.raw.contains(key.as_str()),
                "a key in {}",
                delivery.raw
            );
        }
        let body = &delivery.body;
        assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
        assert!(body["timestamp"].is_string(), "{body}");
        assert_eq!(body["data"]["org_id"], org.as_str(), "{body}");
    }
    let event = |kind: &str| {
        got.iter()
            .find(|d| d.event_type() == kind)
            .map(|d| d.body["data"].clone())
            .unwrap()
    };
    let rotation = event("key.rotated");
    assert_eq!(rotation["key_id"], first.key_id.as_str());
    assert_eq!(rotation["new_key_id"], second_id.as_str());
    assert_eq!(rotation["old_key_status"], "revoked");
    assert_eq!(event("key.revoked")["key_id"], second_id.as_str());
    assert_eq!(event("key.revoked")["status"], "revoked");
    let expired = event("key.expired");
    assert_eq!(expired["key_id"], short.key_id.as_str());
    assert_eq!(expired["name"], "short");
    let leak = event("key.leaked");
    assert_eq!(leak["key_id"], leaked.key_id.as_str());
    assert_eq!(leak["actor"], "leak_report");
    assert_eq!(leak["action"], "revoke");
    assert!(event("key.created")["prefix"]
        .as_str()
        .unwrap()
        .starts_with("sk_live_"));

    // The endpoint of revocations only got the revocation, under the same webhook-id.
    let revocations = setup
        .receiver
        .wait_for("the revocation", "revocations", DEADLINE, |got| {
            !got.is_empty()
        });
    assert_verified(&revocations);
    assert_eq!(revocations.len(), 1, "{revocations:?}");
    assert_eq!(revocations[0].event_type(), "key.revoked");
    let revoked = got
        .iter()
        .find(|d| d.event_type() == "key.revoked")
        .unwrap();
    assert_eq!(revocations[0].webhook_id, revoked.webhook_id);

    // The expiry is announced once, however many scans pass.
    poll::eventually(
        "the expiry scans to go on",
        DEADLINE,
        || {
            setup
                .keysync
                .metric("keysync_webhook_key_expiries_total", &[])
        },
        |n| *n == 1.0,
    );
    let listed = setup.deliveries(&["--webhook", &all]);
    assert_eq!(listed.len(), 7, "{listed:?}");
    for delivery in &listed {
        assert_eq!(delivery["state"], "delivered", "{delivery}");
        assert_eq!(delivery["attempts"], 1, "{delivery}");
        assert_eq!(delivery["last_status"], 200, "{delivery}");
    }
    let sent: BTreeSet<&str> = listed
        .iter()
        .map(|d| d["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(sent, ids.into_iter().collect());
    assert_eq!(
        setup
            .keysync
            .metric("keysync_webhook_attempts_total", &["result=\"delivered\""]),
        8.0
    );
}

#[test]
fn a_receiver_that_fails_twice_gets_the_same_webhook_id_three_times() {
    let setup = Setup::start(&[]);
    let webhook = setup.webhook("flaky", "fail=2", &["key.created"]);
    let org = ks::create_org(&setup.database_url, "flaky");
    let key = ks::create_key(&setup.database_url, &org, "k", &[]);

    let got = setup
        .receiver
        .wait_for("three attempts", "flaky", DEADLINE, |got| {
            got.iter().any(|d| d.status == 200)
        });
    assert_verified(&got);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter().all(|d| d.webhook_id == got[0].webhook_id),
        "{got:?}"
    );
    assert!(
        got.iter().all(|d| d.raw == got[0].raw),
        "the same body each time"
    );
    let statuses: Vec<u64> = got.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!(got[0].body["data"]["key_id"], key.key_id.as_str());
    // Backoff: at least half the first delay (200ms) between attempts, more the second time.
    assert!(got[1].arrived - got[0].answered >= 0.1, "{got:?}");
    assert!(got[2].arrived - got[1].answered >= 0.2, "{got:?}");

    let listed = setup.deliveries(&["--webhook", &webhook]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "delivered");
    assert_eq!(listed[0]["attempts"], 3);
    assert_eq!(listed[0]["message_id"], got[0].webhook_id.as_str());
    assert!(setup.deliveries(&["--failed"]).is_empty());
    let metric = |result: &str| {
        setup.keysync.metric(
            "keysync_webhook_attempts_total",
            &[&format!("result=\"{result}\"")],
        )
    };
    assert_eq!(metric("rejected"), 2.0);
    assert_eq!(metric("delivered"), 1.0);
}

#[test]
fn a_change_made_while_serve_is_down_is_delivered_after_it_restarts() {
    let mut setup = Setup::start(&[]);
    setup.webhook("restart", "", &["key.created", "key.revoked"]);
    let org = ks::create_org(&setup.database_url, "restart");
    let before = ks::create_key(&setup.database_url, &org, "before", &[]);
    setup
        .receiver
        .wait_for("the first key", "restart", DEADLINE, |got| got.len() == 1);

    // Killed (no shutdown of its own), then a change: written to the outbox, not sent.
    setup.keysync.process.kill();
    ks::revoke_key(&setup.database_url, &before.key_id);
    let queued = setup.sql(
        "SELECT message_id || ' ' || state || ' ' || attempts FROM webhook_deliveries \
         WHERE event_type = 'key.revoked'",
    );
    let queued = queued.trim().to_owned();
    let (message_id, rest) = queued.split_once(' ').expect("a queued delivery");
    assert_eq!(rest, "pending 0");
    assert_eq!(setup.receiver.received_by("restart").len(), 1);

    setup.keysync = Keysync::start(&setup.database_url, FAST);
    let got = setup
        .receiver
        .wait_for("the revocation", "restart", DEADLINE, |got| got.len() == 2);
    assert_verified(&got);
    assert_eq!(got[1].event_type(), "key.revoked");
    assert_eq!(got[1].webhook_id, message_id);
    assert_eq!(got[1].body["data"]["key_id"], before.key_id.as_str());
}

#[test]
fn a_change_that_rolls_back_sends_nothing() {
    let setup = Setup::start(&[]);
    setup.webhook("rollback", "", &["key.created"]);
    let org = ks::create_org(&setup.database_url, "rollback");
    // Fails the transaction at COMMIT, after the key, its audit record and its outbox
    // row were written: the change rolls back whole.
    setup.sql(
        "CREATE FUNCTION fail_doomed() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'the doomed change rolled back'; END $$; \
         CREATE CONSTRAINT TRIGGER fail_doomed AFTER INSERT ON webhook_deliveries \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW \
         WHEN (NEW.payload LIKE '%\"name\":\"doomed\"%') EXECUTE FUNCTION fail_doomed();",
    );
    let doomed = ks::cli(
        &setup.database_url,
        &["keys", "create", "--org-id", &org, "--name", "doomed"],
    );
    assert!(!doomed.status.success(), "the doomed change committed");
    let stderr = String::from_utf8_lossy(&doomed.stderr);
    assert!(stderr.contains("the doomed change rolled back"), "{stderr}");
    let after = ks::create_key(&setup.database_url, &org, "after", &[]);

    let got = setup
        .receiver
        .wait_for("the next change", "rollback", DEADLINE, |got| {
            !got.is_empty()
        });
    assert_verified(&got);
    // The sender reads the outbox oldest first: had the doomed row committed, it would
    // have come first.
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body["data"]["key_id"], after.key_id.as_str());
    assert_eq!(
        setup
            .sql("SELECT count(*) FROM webhook_deliveries WHERE payload LIKE '%doomed%'")
            .trim(),
        "0"
    );
    assert_eq!(
        setup
            .sql("SELECT count(*) FROM api_keys WHERE name = 'doomed'")
            .trim(),
        "0"
    );
}

#[test]
fn a_slow_receiver_does_not_delay_another() {
    let setup = Setup::start(&[]);
    setup.webhook("slow", "delay=6", &["key.created"]);
    setup.webhook("fast", "", &["key.created"]);
    let org = ks::create_org(&setup.database_url, "busy");
    // More events than the slow endpoint has slots (4): it holds them all, for seconds.
    for n in 0..6 {
        ks::create_key(&setup.database_url, &org, &format!("k{n}"), &[]);
    }
    let fast = setup
        .receiver
        .wait_for("the fast endpoint's six", "fast", DEADLINE, |got| {
            got.len() == 6
        });
    assert_verified(&fast);
    let slow = setup.receiver.wait_for(
        "the slow endpoint's six",
        "slow",
        Duration::from_secs(60),
        |got| got.len() == 6,
    );
    assert_verified(&slow);
    let first_slow_answer = slow
        .iter()
        .map(|d| d.answered)
        .fold(f64::INFINITY, f64::min);
    let last_fast = fast.iter().map(|d| d.arrived).fold(0.0, f64::max);
    assert!(
        last_fast < first_slow_answer,
        "the fast endpoint waited for the slow one: last fast delivery at {last_fast}, \
         first slow answer at {first_slow_answer}"
    );
    // Never more than the endpoint's share at once.
    let mut arrivals: Vec<f64> = slow.iter().map(|d| d.arrived).collect();
    arrivals.sort_by(f64::total_cmp);
    assert!(
        arrivals[4] >= first_slow_answer - 0.5,
        "a fifth attempt to the slow endpoint started before one of four ended: {arrivals:?}"
    );
}

#[test]
fn urls_to_private_addresses_are_refused_at_creation_and_at_delivery() {
    let setup = Setup::start(&[]);
    let refused = |args: &[&str], reason: &str| {
        let mut all = vec!["webhooks", "create", "--event", "key.created"];
        all.extend_from_slice(args);
        let output = ks::cli(&setup.database_url, &all);
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    };
    let url = setup.receiver.url("pinned", "");
    refused(&["--url", &url], "not https");
    refused(
        &["--url", &url, "--allow-http"],
        "private, loopback or link-local",
    );
    refused(
        &["--url", "https://localhost:1/h"],
        "private, loopback or link-local",
    );
    refused(
        &["--url", "https://169.254.169.254/latest"],
        "169.254.169.254",
    );
    refused(
        &["--url", "https://[::1]/h"],
        "private, loopback or link-local",
    );
    refused(
        &["--url", "https://h.example/x", "--event", "key.deleted"],
        "unknown event",
    );
    assert_eq!(
        cli_json(&setup.database_url, &["webhooks", "list"]),
        serde_json::json!([])
    );

    // Allowed when it was made; the rule is applied again when sending (as if its name
    // resolved elsewhere now): refused, and said so.
    let webhook = setup.webhook("pinned", "", &["key.created"]);
    setup.sql("UPDATE webhooks SET allow_private = false");
    let org = ks::create_org(&setup.database_url, "pinned");
    ks::create_key(&setup.database_url, &org, "k", &[]);
    let failed = poll::eventually(
        "a refused attempt",
        DEADLINE,
        || setup.deliveries(&["--failed"]),
        |failed| !failed.is_empty(),
    );
    assert_eq!(failed[0]["webhook_id"], webhook.as_str());
    assert_eq!(failed[0]["state"], "pending");
    assert_eq!(failed[0]["last_status"], Value::Null);
    let error = failed[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("127.0.0.1") && error.contains("private"),
        "{error}"
    );
    assert!(
        setup
            .keysync
            .metric("keysync_webhook_attempts_total", &["result=\"address\""])
            >= 1.0
    );
    assert!(
        setup.receiver.received().is_empty(),
        "nothing reached the receiver"
    );
    let listed = cli_json(&setup.database_url, &["webhooks", "list"]);
    assert_eq!(listed[0]["pending"], 1, "{listed}");
    assert!(
        !listed.to_string().contains("whsec_"),
        "the secret is never listed: {listed}"
    );

    // Allowed again: the retry goes through.
    setup.sql("UPDATE webhooks SET allow_private = true");
    let got = setup
        .receiver
        .wait_for("the retry", "pinned", DEADLINE, |got| !got.is_empty());
    assert_verified(&got);
}

#[test]
fn quota_thresholds_crossed_at_a_real_gateway_are_sent_once_each() {
    let stack = Stack::start_with(FAST, |options| {
        options.sync_config = r#"{"role":"sync","refresh_interval":"2s","max_retry_interval":"1s","usage_flush_interval":"1s"}"#.into();
    });
    let receiver = Receiver::start();
    create_webhook(
        &stack.database_url,
        &receiver,
        "quota",
        "",
        &["quota.threshold"],
    );
    let org = stack.create_org("metered");
    let key = stack.create_key(&org, &[]);
    let output = ks::cli(
        &stack.database_url,
        &["orgs", "set-quota", &org, "--monthly", "10"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);

    // Requests until `total` are admitted, or (`None`) until the quota is used up (a
    // 429 whose Retry-After is the reset; one while a lease is on its way is retried).
    let mut admitted = 1;
    let mut admit_until = |total: Option<u32>| {
        poll::within(DEADLINE, Duration::from_millis(20), || {
            if total.is_some_and(|total| admitted >= total) {
                return Ok(());
            }
            let response = stack.gateway.get_with_key("/orders", &key.key);
            match response.status {
                200 => admitted += 1,
                429 if response.header("retry-after") != Some("1") => {
                    assert_eq!(total, None, "used up after {admitted}");
                    return Ok(());
                }
                429 => {}
                other => panic!("unexpected {other}"),
            }
            Err(admitted)
        })
        .unwrap_or_else(|n| panic!("only {n} admitted"));
    };
    admit_until(Some(8));
    let got = receiver.wait_for("the 80% threshold", "quota", DEADLINE, |got| {
        !got.is_empty()
    });
    assert_verified(&got);
    let data = &got[0].body["data"];
    assert_eq!(got[0].event_type(), "quota.threshold");
    assert_eq!(data["threshold_percent"], 80, "{data}");
    assert_eq!(data["org_id"], org.as_str());
    assert_eq!(data["subject_kind"], "org");
    assert_eq!(data["monthly"], 10);
    admit_until(None);
    let got = receiver.wait_for("the 100% threshold", "quota", DEADLINE, |got| {
        got.len() >= 2
    });
    assert_verified(&got);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].body["data"]["threshold_percent"], 100);
    // The same decision as the quota alert's, once each.
    assert_eq!(
        stack
            .keysync
            .metric("keysync_quota_alerts_total", &["threshold=\"80\""]),
        1.0
    );
}

#[test]
fn https_deliveries_go_to_the_checked_address_and_verify_the_certificate_by_host_name() {
    let dir = ScratchDir::new("webhooks-tls").expect("scratch dir");
    let ca = TestCa::new("webhook receivers");
    let ca_file = ca.write_pem(dir.path(), "ca.pem").display().to_string();
    // Covers the name only: reached by address, the certificate does not match.
    let receiver = Receiver::start_tls(&ca.server_certificate(&["localhost"]));
    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    ks::migrate(&database_url);
    let keysync = Keysync::start(
        &database_url,
        &[FAST, &[("SSL_CERT_FILE", &ca_file)]].concat(),
    );
    let webhook = |name: &str, host: &str| {
        let url = receiver.url_by_host(host, name, "");
        let created = cli_json(
            &database_url,
            &[
                "webhooks",
                "create",
                "--url",
                &url,
                "--event",
                "key.created",
                "--allow-private",
            ],
        );
        receiver.register(name, created["secret"].as_str().unwrap());
        created["webhook_id"].as_str().unwrap().to_owned()
    };
    webhook("by-name", "localhost");
    let by_address = webhook("by-address", "127.0.0.1");
    let org = ks::create_org(&database_url, "tls");
    ks::create_key(&database_url, &org, "k", &[]);

    let got = receiver.wait_for("the https delivery", "by-name", DEADLINE, |got| {
        !got.is_empty()
    });
    assert_verified(&got);
    let failed = poll::eventually(
        "a refused certificate",
        DEADLINE,
        || {
            cli_json(
                &database_url,
                &[
                    "webhooks",
                    "deliveries",
                    "--webhook",
                    &by_address,
                    "--failed",
                ],
            )
        },
        |failed| failed.as_array().is_some_and(|all| !all.is_empty()),
    );
    let error = failed[0]["last_error"].as_str().unwrap();
    assert!(error.contains("TLS handshake failed"), "{error}");
    assert!(receiver.received_by("by-address").is_empty());
    assert!(keysync.metric("keysync_webhook_attempts_total", &["result=\"error\""]) >= 1.0);
}

#[test]
fn two_serve_replicas_send_each_delivery_once() {
    let setup = Setup::start(&[]);
    let second = Keysync::start(&setup.database_url, FAST);
    setup.webhook("replicas", "", &["key.created"]);
    let org = ks::create_org(&setup.database_url, "replicas");
    let keys: Vec<String> = (0..20)
        .map(|n| ks::create_key(&setup.database_url, &org, &format!("k{n}"), &[]).key_id)
        .collect();

    let got = setup
        .receiver
        .wait_for("twenty deliveries", "replicas", DEADLINE, |got| {
            got.len() >= 20
        });
    assert_verified(&got);
    // Both replicas kept polling meanwhile: a row sent twice would show up by now.
    let delivered = |keysync: &Keysync| {
        keysync.metric("keysync_webhook_attempts_total", &["result=\"delivered\""])
    };
    assert_eq!(delivered(&setup.keysync) + delivered(&second), 20.0);
    let got = setup.receiver.received_by("replicas");
    assert_eq!(got.len(), 20, "a delivery was sent twice: {got:?}");
    let ids: HashSet<&str> = got.iter().map(|d| d.webhook_id.as_str()).collect();
    assert_eq!(ids.len(), 20);
    let sent: HashSet<&str> = got
        .iter()
        .map(|d| d.body["data"]["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(sent, keys.iter().map(String::as_str).collect());
}

#[test]
fn serve_killed_mid_attempt_leaves_the_delivery_to_be_sent_again_after_its_lease() {
    // An attempt takes at most 3s, so a claim holds its row for 7s (twice that and 1s).
    let timeout = [("KEYSYNC_WEBHOOK_TIMEOUT", "3s")];
    let mut setup = Setup::start(&timeout);
    let webhook = setup.webhook("hangs", "hang_first=5", &["key.created"]);
    let org = ks::create_org(&setup.database_url, "hangs");
    let key = ks::create_key(&setup.database_url, &org, "k", &[]);
    // Claimed and in progress: one attempt started, none finished.
    poll::eventually(
        "the first attempt in progress",
        DEADLINE,
        || {
            setup
                .sql(
                    "SELECT attempts || ' ' || (last_error IS NULL AND last_status IS NULL) \
                     FROM webhook_deliveries",
                )
                .trim()
                .to_owned()
        },
        |row| row == "1 true",
    );
    setup.keysync.process.kill();
    setup.keysync = Keysync::start(&setup.database_url, &[FAST, &timeout].concat());

    let listed = poll::eventually(
        "delivered by the restarted serve",
        DEADLINE,
        || setup.deliveries(&["--webhook", &webhook]),
        |listed| listed.first().is_some_and(|d| d["state"] == "delivered"),
    );
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["attempts"], 2, "{listed:?}");
    let got = setup
        .receiver
        .wait_for("both attempts", "hangs", Duration::from_secs(60), |got| {
            got.len() == 2
        });
    assert_verified(&got);
    let mut attempts: Vec<u64> = got.iter().map(|d| d.attempt).collect();
    attempts.sort_unstable();
    assert_eq!(attempts, [1, 2]);
    assert_eq!(got[0].webhook_id, got[1].webhook_id);
    assert_eq!(got[0].webhook_id, listed[0]["message_id"].as_str().unwrap());
    assert_eq!(got[0].body["data"]["key_id"], key.key_id.as_str());
}
