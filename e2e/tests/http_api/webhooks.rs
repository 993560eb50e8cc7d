//! `/v1/webhooks`: register (the secret once, an idempotent retry), list without secrets,
//! test, deliveries, delete; refused URLs and events (422); read-only tokens may only
//! list, tokens limited to one organization may do nothing (403); the audit trail
//! records registrations without the secret.

use serde_json::json;

use super::{admin_token, admin_token_of, ok, refused, Api, Service};

#[test]
fn webhooks_are_managed_by_admin_tokens_of_every_organization_only() {
    let service = Service::start();
    let url = &service.database_url;
    let admin = service.api();
    let body = json!({
        "url": "http://127.0.0.1:9/hook",
        "events": ["key.revoked", "key.created"],
        "allow_http": true,
        "allow_private": true,
    });

    let created = ok(
        admin.post_once("/v1/webhooks", "webhook-create-0001", body.clone()),
        201,
    );
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(created["events"], json!(["key.created", "key.revoked"]));
    let id = created["webhook_id"].as_str().unwrap().to_owned();
    // A retry with the same Idempotency-Key gets the same answer and makes nothing.
    let replay = admin.post_once("/v1/webhooks", "webhook-create-0001", body.clone());
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(ok(replay, 201)["webhook_id"], id.as_str());

    let listed = ok(admin.get("/v1/webhooks"), 200);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["webhook_id"], id.as_str());
    assert_eq!(listed[0]["url"], "http://127.0.0.1:9/hook");
    assert!(!listed.to_string().contains(&secret), "{listed}");

    // Refused input: 422, nothing made.
    for (bad, says) in [
        (
            json!({"url": "http://127.0.0.1:9/h", "events": ["key.created"]}),
            "not https",
        ),
        (
            json!({"url": "https://127.0.0.1:9/h", "events": ["key.created"]}),
            "private, loopback or link-local",
        ),
        (
            json!({"url": "https://hooks.example.com/h", "events": ["key.exploded"]}),
            "unknown event",
        ),
        (
            json!({"url": "https://hooks.example.com/h", "events": []}),
            "at least one event",
        ),
    ] {
        let message = refused(
            admin.post("/v1/webhooks", bad.clone()),
            422,
            "invalid_value",
        );
        assert!(message.contains(says), "{bad}: {message}");
    }
    refused(
        admin.post(
            "/v1/webhooks",
            json!({"url": "https://h.example/", "events": ["key.created"], "secret": "mine"}),
        ),
        400,
        "invalid_request",
    );

    // A test event is queued for it; the deliveries list it.
    let queued = ok(
        admin.post(&format!("/v1/webhooks/{id}/test"), json!({})),
        202,
    );
    assert_eq!(queued["webhook_id"], id.as_str());
    let message_id = queued["message_id"].as_str().unwrap().to_owned();
    let page = ok(
        admin.get(&format!("/v1/webhooks/deliveries?webhook_id={id}")),
        200,
    );
    assert_eq!(
        page["items"][0]["message_id"],
        message_id.as_str(),
        "{page}"
    );
    assert_eq!(page["items"][0]["event_type"], "webhook.test");
    assert_eq!(page["next_cursor"], serde_json::Value::Null);
    refused(
        admin.post(&format!("/v1/webhooks/{}/test", uuid_nil()), json!({})),
        404,
        "webhook_not_found",
    );

    // Read-only tokens list; tokens of one organization do nothing.
    let (read_only, _) = admin_token(url, "reader", true);
    let reader = Api::new(&service.keysync, &read_only);
    ok(reader.get("/v1/webhooks"), 200);
    ok(reader.get("/v1/webhooks/deliveries?failed=true"), 200);
    refused(
        reader.post("/v1/webhooks", body.clone()),
        403,
        "read_only_token",
    );
    let org = admin.create_org("tenant");
    let (scoped, _) = admin_token_of(url, "tenant", false, Some(&org));
    let tenant = Api::new(&service.keysync, &scoped);
    refused(tenant.get("/v1/webhooks"), 403, "org_scoped_token");
    refused(
        tenant.post("/v1/webhooks", body.clone()),
        403,
        "org_scoped_token",
    );
    refused(
        tenant.delete(&format!("/v1/webhooks/{id}")),
        403,
        "org_scoped_token",
    );
    refused(
        tenant.get("/v1/webhooks/deliveries"),
        403,
        "org_scoped_token",
    );

    // The audit trail has the registration and the deletion, never the secret.
    let deleted = ok(admin.delete(&format!("/v1/webhooks/{id}")), 200);
    assert_eq!(deleted["webhook_id"], id.as_str());
    assert_eq!(deleted["dropped_deliveries"], 1);
    refused(
        admin.delete(&format!("/v1/webhooks/{id}")),
        404,
        "webhook_not_found",
    );
    let audit = ok(admin.get("/v1/audit"), 200);
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"webhook.created"), "{actions:?}");
    assert!(actions.contains(&"webhook.deleted"), "{actions:?}");
    assert!(!audit.to_string().contains(&secret), "{audit}");
    assert_eq!(service.sql("SELECT count(*) FROM webhooks").trim(), "0");
}

fn uuid_nil() -> &'static str {
    "00000000-0000-0000-0000-000000000000"
}
