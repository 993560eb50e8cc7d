//! The audit trail of changes made through the API: each with its token, listed by
//! `/v1/audit`.

use keysync_e2e::keysync as ks;
use serde_json::{json, Value};

use super::{admin_token, ok, refused, Api, Service};

#[test]
fn changes_through_the_api_are_audited_with_their_token_and_listed() {
    let service = Service::start();
    let url = &service.database_url;
    let (token, token_id) = admin_token(url, "backend", false);
    let (reader, reader_id) = admin_token(url, "auditor", true);
    let writer = Api::new(&service.keysync, &token);
    let auditor = Api::new(&service.keysync, &reader);

    let org = writer.create_org("audited");
    let limit_path = format!("/v1/orgs/{org}/rate-limit");
    let limit = json!({"requests_per_minute": 60, "burst": 5});
    ok(writer.put(&limit_path, limit.clone()), 200);
    // No-ops record nothing: the same limit again, a retried create, a second revoke.
    assert_eq!(
        ok(writer.put(&limit_path, limit.clone()), 200)["changed"],
        false
    );
    let retry_key = "audit-test-retry-0000000000000001";
    let request = json!({"org_id": org, "name": "web"});
    let created = ok(
        writer.post_once("/v1/keys", retry_key, request.clone()),
        201,
    );
    let replay = writer.post_once("/v1/keys", retry_key, request);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let key_id = created["key_id"].as_str().unwrap();
    let revoke_path = format!("/v1/keys/{key_id}/revoke");
    ok(writer.post(&revoke_path, json!({})), 200);
    assert_eq!(
        ok(writer.post(&revoke_path, json!({})), 200)["revocation"],
        "already_revoked"
    );

    // A read-only token reads the trail: newest first, each change naming its token.
    let page = ok(auditor.get(&format!("/v1/audit?org_id={org}")), 200);
    let items = page["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|item| item["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["key.revoked", "key.created", "org.limit_set", "org.created"],
        "{page:#}"
    );
    assert_eq!(page["next_cursor"], Value::Null);
    for item in items {
        assert_eq!(item["actor"], "admin_token", "{item:#}");
        assert_eq!(item["actor_token_id"], token_id.as_str(), "{item:#}");
        assert_eq!(item["org_id"], org.as_str(), "{item:#}");
    }
    assert_eq!(items[0]["object_type"], "key");
    assert_eq!(items[0]["object_id"], key_id);
    assert_eq!(items[0]["new_value"]["status"], "revoked");
    assert_eq!(items[1]["new_value"]["prefix"], created["prefix"]);
    assert_eq!(items[1]["old_value"], Value::Null);
    assert_eq!(items[2]["object_type"], "org");
    assert_eq!(items[2]["old_value"], Value::Null);
    assert_eq!(items[2]["new_value"], limit);
    let text = page.to_string();
    for secret in [created["key"].as_str().unwrap(), &token, &reader] {
        assert!(!text.contains(secret), "a secret in the trail");
    }

    // The whole trail, a page at a time: the tokens were made on the command line.
    let first = ok(auditor.get("/v1/audit?limit=2"), 200);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = ok(
        auditor.get(&format!("/v1/audit?limit=1000&cursor={cursor}")),
        200,
    );
    assert_eq!(rest["next_cursor"], Value::Null);
    let all: Vec<&Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .collect();
    assert_eq!(all.len(), 6, "{rest:#}");
    for (record, token) in all[4..].iter().zip([&reader_id, &token_id]) {
        assert_eq!(record["action"], "admin_token.created");
        assert_eq!(record["actor"], "cli");
        assert_eq!(record["actor_token_id"], Value::Null);
        assert_eq!(record["object_id"], token.as_str());
        assert_eq!(record["org_id"], Value::Null);
    }
    let recent = ok(auditor.get("/v1/audit?since=1h"), 200);
    assert_eq!(recent["items"].as_array().unwrap().len(), 6);
    let none = ok(auditor.get("/v1/audit?since=0s"), 200);
    assert_eq!(none["items"], json!([]));

    // Bad queries: 400; an unknown organization: 404.
    for query in [
        "since=soon",
        "since=-1h",
        "org_id=nope",
        "limit=0",
        "cursor=zz",
        "orgid=x",
    ] {
        refused(
            auditor.get(&format!("/v1/audit?{query}")),
            400,
            "invalid_request",
        );
    }
    refused(
        auditor.get("/v1/audit?org_id=00000000-0000-4000-8000-000000000000"),
        404,
        "org_not_found",
    );

    // Without a valid token: 401.
    refused(
        Api::anonymous(&service.keysync).get("/v1/audit"),
        401,
        "missing_token",
    );
    let revoked = ks::cli(url, &["admin-tokens", "revoke", &reader_id]);
    assert!(revoked.status.success(), "{revoked:?}");
    refused(auditor.get("/v1/audit"), 401, "invalid_token");
}

/// The console's audit page filters by key, action and actor: each filter selects
/// exactly the records it names, and an action or actor that does not exist is a 400
/// in words.
#[test]
fn the_audit_trail_filters_by_key_action_and_actor() {
    let service = Service::start();
    let url = &service.database_url;
    let (token, token_id) = admin_token(url, "console", false);
    let api = Api::new(&service.keysync, &token);
    let org = api.create_org("filtered");
    let kept = api.create_key(&org);
    let revoked = api.create_key(&org);
    let revoked_id = revoked["key_id"].as_str().unwrap();
    ok(
        api.post(&format!("/v1/keys/{revoked_id}/revoke"), json!({})),
        200,
    );
    // A change from the command line, for the actor filter.
    ks::set_org_limit(url, &org, &["--rpm", "60"]);

    let actions = |query: &str| -> Vec<(String, String)> {
        let page = ok(api.get(&format!("/v1/audit?org_id={org}&{query}")), 200);
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| {
                (
                    item["action"].as_str().unwrap().to_owned(),
                    item["object_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        actions(&format!("object_id={revoked_id}")),
        [
            ("key.revoked".to_owned(), revoked_id.to_owned()),
            ("key.created".to_owned(), revoked_id.to_owned())
        ]
    );
    assert_eq!(
        actions("action=key.created").len(),
        2,
        "{:?}",
        actions("action=key.created")
    );
    assert_eq!(
        actions("action=key.revoked"),
        [("key.revoked".to_owned(), revoked_id.to_owned())]
    );
    assert_eq!(
        actions("actor=cli"),
        [("org.limit_set".to_owned(), org.clone())]
    );
    assert_eq!(actions(&format!("actor={token_id}")).len(), 4);
    assert_eq!(actions("actor=admin_token").len(), 4);
    assert!(actions(&format!("object_id={}", kept["key_id"].as_str().unwrap())).len() == 1);

    let message = refused(
        api.get("/v1/audit?action=key.exploded"),
        400,
        "invalid_request",
    );
    assert!(
        message.starts_with("invalid action 'key.exploded'"),
        "{message}"
    );
    let message = refused(api.get("/v1/audit?actor=somebody"), 400, "invalid_request");
    assert!(message.starts_with("invalid actor 'somebody'"), "{message}");
}
