//! Admin tokens: missing, wrong, revoked and read-only tokens refused (never logged), and
//! an address that keeps sending bad ones slowed down while valid tokens pass.

use std::time::Duration;

use keysync_e2e::keysync as ks;
use keysync_e2e::poll::{self, DEADLINE};
use serde_json::json;

use super::{admin_token, ok, refused, Api, Service};

#[test]
fn tokens_missing_wrong_revoked_and_read_only() {
    let service = Service::start();
    let url = &service.database_url;
    let (token, token_id) = admin_token(url, "backend", false);
    let (reader, _) = admin_token(url, "dashboard", true);
    let writer = Api::new(&service.keysync, &token);
    let org = writer.create_org("tokens");

    // Missing, wrong, malformed: 401 with a challenge, and nothing done.
    let anonymous = Api::anonymous(&service.keysync);
    let missing = anonymous.get("/v1/orgs");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    refused(missing, 401, "missing_token");
    refused(
        anonymous.post("/v1/orgs", json!({"name": "sneaky"})),
        401,
        "missing_token",
    );
    let wrong = Api::new(
        &service.keysync,
        "ksa_ThisTokenWasNeverIssuedByKeysync00000000",
    );
    refused(wrong.get("/v1/orgs"), 401, "invalid_token");
    let basic = anonymous.send("GET", "/v1/orgs", &[("authorization", "Basic a2V5")], "");
    refused(basic, 401, "missing_token");
    let api_key_as_token = Api::new(&service.keysync, "sk_live_NotAnAdminTokenAtAll000000000");
    refused(api_key_as_token.get("/v1/orgs"), 401, "invalid_token");
    assert_eq!(
        ks::cli_json(url, &["orgs", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Read-only: reads everything, changes nothing.
    let read_only = Api::new(&service.keysync, &reader);
    ok(read_only.get("/v1/orgs"), 200);
    ok(read_only.get(&format!("/v1/orgs/{org}/keys")), 200);
    refused(
        read_only.post("/v1/orgs", json!({"name": "nope"})),
        403,
        "read_only_token",
    );
    refused(
        read_only.post("/v1/keys", json!({"org_id": org, "name": "nope"})),
        403,
        "read_only_token",
    );
    refused(
        read_only.put(
            &format!("/v1/orgs/{org}/rate-limit"),
            json!({"requests_per_minute": 1}),
        ),
        403,
        "read_only_token",
    );
    refused(
        read_only.delete(&format!("/v1/orgs/{org}/rate-limit")),
        403,
        "read_only_token",
    );

    // Every change names its token; the CLI's name none.
    let key = writer.create_key(&org);
    let key_id = key["key_id"].as_str().unwrap();
    ok(
        writer.post(&format!("/v1/keys/{key_id}/revoke"), json!({})),
        200,
    );
    ks::cli_json(url, &["orgs", "create", "--name", "from the cli"]);
    assert_eq!(
        service.sql(&format!(
            "SELECT changed_by_token FROM api_keys WHERE id = '{key_id}'"
        )),
        token_id
    );
    assert_eq!(
        service.sql(&format!(
            "SELECT changed_by_token FROM organizations WHERE id = '{org}'"
        )),
        token_id
    );
    assert_eq!(
        service.sql("SELECT count(*) FROM organizations WHERE changed_by_token IS NULL"),
        "1"
    );
    service
        .keysync
        .process
        .wait_for_log(&format!("by admin token {token_id}"), DEADLINE);

    // Listed without the token itself; revoked, it stops working at once.
    let listed = ks::cli_json(url, &["admin-tokens", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&token));
    assert_eq!(listed[0]["prefix"], &token[..12]);
    let revoked = ks::cli(url, &["admin-tokens", "revoke", &token_id]);
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(
        String::from_utf8_lossy(&revoked.stdout),
        format!("revoked admin token {token_id}\n")
    );
    refused(writer.get("/v1/orgs"), 401, "invalid_token");
    let listed = ks::cli_json(url, &["admin-tokens", "list"]);
    assert_eq!(listed[0]["status"], "revoked");

    // No token and no key in keysync's log.
    let log = service.keysync.process.log();
    for secret in [
        token.as_str(),
        reader.as_str(),
        key["key"].as_str().unwrap(),
    ] {
        assert!(!log.contains(secret), "a secret in the log");
    }
}

#[test]
fn an_address_that_keeps_sending_bad_tokens_is_slowed_down_but_valid_tokens_pass() {
    let service = Service::start();
    let url = &service.database_url;
    let good = service.api();
    let (doomed_token, doomed_id) = admin_token(url, "revoked later", false);
    let doomed = Api::new(&service.keysync, &doomed_token);
    ok(doomed.get("/v1/orgs"), 200);
    let bad = Api::new(
        &service.keysync,
        "ksa_GuessingGuessingGuessingGuessing00000000",
    );
    for _ in 0..10 {
        refused(bad.get("/v1/orgs"), 401, "invalid_token");
    }
    let slowed = bad.get("/v1/orgs");
    let retry_after: u64 = slowed.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry_after), "{retry_after}");
    refused(slowed, 429, "too_many_failed_tokens");
    // Guesses stay slow: any token that is not a valid one gets 429, whatever its form
    // (not looked up or looked up: the same answer).
    for guess in [
        "ksa_AnotherGuessAnotherGuessAnotherGuess000",
        "sk_live_NotAnAdminTokenAtAll000000000",
        "x",
    ] {
        let guessing = Api::new(&service.keysync, guess);
        refused(guessing.get("/v1/orgs"), 429, "too_many_failed_tokens");
    }
    // But the same address's valid tokens are served: behind one NAT or ingress, a
    // guesser does not lock everyone out.
    ok(good.get("/v1/orgs"), 200);
    ok(
        good.post("/v1/orgs", json!({"name": "made while throttled"})),
        201,
    );
    // A token made while the address is throttled passes too (within a second: the
    // active tokens are read again at most once a second).
    let (fresh, _) = admin_token(url, "made while throttled", true);
    let fresh = Api::new(&service.keysync, &fresh);
    poll::eventually(
        "a token made meanwhile to be let in",
        Duration::from_secs(3),
        || fresh.get("/v1/orgs").status,
        |status| *status == 200,
    );
    // A revoked token is no way around the throttle: 429 like any other.
    let revoked = ks::cli(url, &["admin-tokens", "revoke", &doomed_id]);
    assert!(revoked.status.success(), "{revoked:?}");
    refused(doomed.get("/v1/orgs"), 429, "too_many_failed_tokens");
    refused(bad.get("/v1/orgs"), 429, "too_many_failed_tokens");
    service.keysync.process.wait_for_log(
        "admin api: unknown or revoked token from 127.0.0.1",
        DEADLINE,
    );
    // Forgiven with time: one failure a LEAK_EVERY (6 s), then a bad token is a 401.
    poll::eventually(
        "the address to be forgiven",
        Duration::from_secs(10),
        || bad.get("/v1/orgs").status,
        |status| *status == 401,
    );
}
