//! `Idempotency-Key`: a create sent twice happens once, and the replay answers the same.

use std::sync::{Arc, Barrier};

use keysync_e2e::keysync as ks;
use serde_json::{json, Value};

use super::{admin_token, ok, refused, Api, Service};

#[test]
fn creates_with_an_idempotency_key_happen_once() {
    let service = Service::start();
    let api = service.api();
    let org = api.create_org("signups");
    let count_keys = || {
        ks::cli_json(&service.database_url, &["keys", "list", "--org-id", &org])
            .as_array()
            .unwrap()
            .len()
    };

    // A signup retried: the first answer again, the same key, one key made.
    let request = json!({"org_id": org, "name": "customer 42"});
    let first = api.post_once("/v1/keys", "signup-customer-42-attempt", request.clone());
    assert_eq!(first.header("idempotent-replayed"), None);
    let first = ok(first, 201);
    let retry = api.post_once("/v1/keys", "signup-customer-42-attempt", request.clone());
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(ok(retry, 201), first);
    assert_eq!(count_keys(), 1);
    // The stored answer is sealed: the key is not in the database in clear.
    let stored = service.sql("SELECT encode(response, 'escape') FROM api_idempotency");
    assert!(!stored.contains(first["key"].as_str().unwrap()));

    // The same key for another request: 422, nothing made.
    let other = json!({"org_id": org, "name": "customer 43"});
    refused(
        api.post_once("/v1/keys", "signup-customer-42-attempt", other),
        422,
        "idempotency_key_reused",
    );
    // Another token's keys are its own.
    let (token, _) = admin_token(&service.database_url, "another backend", false);
    let another = Api::new(&service.keysync, &token);
    let theirs = ok(
        another.post_once("/v1/keys", "signup-customer-42-attempt", request.clone()),
        201,
    );
    assert_ne!(theirs["key_id"], first["key_id"]);
    assert_eq!(count_keys(), 2);
    refused(
        api.post_once("/v1/keys", "short", request.clone()),
        400,
        "invalid_request",
    );

    // Retries racing each other: every one answers the same key, one is made.
    let racers = 8;
    let barrier = Arc::new(Barrier::new(racers));
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..racers)
            .map(|_| {
                let (api, barrier, request) = (api.clone(), barrier.clone(), request.clone());
                scope.spawn(move || {
                    barrier.wait();
                    ok(
                        api.post_once("/v1/keys", "signup-customer-44-racing", request),
                        201,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        answers.iter().all(|answer| *answer == answers[0]),
        "{answers:?}"
    );
    assert_eq!(count_keys(), 3);

    // Organizations and rotations too.
    let org_once = |key| ok(api.post_once("/v1/orgs", key, json!({"name": "Once"})), 201);
    assert_eq!(
        org_once("create-org-once-0001"),
        org_once("create-org-once-0001")
    );
    let key_id = first["key_id"].as_str().unwrap();
    let rotate = |key| {
        ok(
            api.post_once(
                &format!("/v1/keys/{key_id}/rotate"),
                key,
                json!({"grace": "1h"}),
            ),
            201,
        )
    };
    let rotated = rotate("rotate-customer-42-0001");
    assert_eq!(
        rotate("rotate-customer-42-0001"),
        rotated,
        "not a 409: a replay"
    );
    assert_eq!(count_keys(), 4);
    refused(
        api.post(&format!("/v1/keys/{key_id}/rotate"), json!({"grace": "1h"})),
        409,
        "key_already_rotated",
    );
}
