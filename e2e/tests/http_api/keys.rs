//! `/v1/keys`: creating, reading, listing, rotating and revoking keys and setting their
//! limits, answered like the CLI; concurrent rotations; and keys made and revoked
//! through the API at a real gateway.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use keysync_e2e::gateway::GatewayOptions;
use keysync_e2e::http::Response;
use keysync_e2e::keysync as ks;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::stack::Stack;
use serde_json::{json, Value};

use super::{admin_token, ok, refused, Api, Service};

/// The issue's bound for a change made through the API to reach the gateway.
const GATEWAY_DEADLINE: Duration = Duration::from_secs(1);

#[test]
fn keys_answer_like_the_cli_and_refuse_what_it_refuses() {
    let service = Service::start();
    let api = service.api();
    let org = api.create_org("keys");
    let unknown = "7d2c4a3e-0000-4000-8000-00000000ffff";

    // Create: the key once, with the CLI's fields.
    let key = api.create_key(&org);
    let secret = key["key"].as_str().unwrap();
    assert!(secret.starts_with("sk_live_"), "{key}");
    assert_eq!(key["prefix"], &secret[..12]);
    assert_eq!(key["org_id"], org.as_str());
    assert_eq!(key["expires_at"], Value::Null);
    let fields: Vec<&String> = key.as_object().unwrap().keys().collect();
    let cli = ks::cli_json(
        &service.database_url,
        &["keys", "create", "--org-id", &org, "--name", "cli key"],
    );
    assert_eq!(
        fields,
        cli.as_object().unwrap().keys().collect::<Vec<_>>(),
        "the same fields as --json"
    );
    let test_key = ok(
        api.post(
            "/v1/keys",
            json!({"org_id": org, "name": "t", "env": "test", "expires_in": "90d"}),
        ),
        201,
    );
    assert!(test_key["key"].as_str().unwrap().starts_with("sk_test_"));
    assert!(test_key["expires_at"].is_string());
    refused(
        api.post("/v1/keys", json!({"org_id": unknown, "name": "k"})),
        404,
        "org_not_found",
    );
    let message = refused(
        api.post(
            "/v1/keys",
            json!({"org_id": org, "name": "k", "expires_in": "soon"}),
        ),
        422,
        "invalid_value",
    );
    assert!(
        message.starts_with("invalid expires_in 'soon'"),
        "{message}"
    );
    refused(
        api.post(
            "/v1/keys",
            json!({"org_id": org, "name": "k", "env": "prod"}),
        ),
        400,
        "invalid_request",
    );
    refused(
        api.post("/v1/keys", json!({"org_id": "abc", "name": "k"})),
        400,
        "invalid_request",
    );
    refused(
        api.post("/v1/keys", json!({"org_id": org, "name": ""})),
        422,
        "invalid_value",
    );

    // List and get: what `keys list --json` shows, never a key.
    let key_id = key["key_id"].as_str().unwrap().to_owned();
    let listed = ks::cli_json(&service.database_url, &["keys", "list", "--org-id", &org]);
    let page = ok(api.get(&format!("/v1/orgs/{org}/keys")), 200);
    assert_eq!(page["items"], listed);
    assert_eq!(page["next_cursor"], Value::Null);
    assert!(!page.to_string().contains(secret));
    let got = ok(api.get(&format!("/v1/keys/{key_id}")), 200);
    assert_eq!(got, listed[0]);
    assert_eq!(got["status"], "active");
    refused(
        api.get(&format!("/v1/keys/{unknown}")),
        404,
        "key_not_found",
    );
    refused(
        api.get(&format!("/v1/orgs/{unknown}/keys")),
        404,
        "org_not_found",
    );
    let first = ok(api.get(&format!("/v1/orgs/{org}/keys?limit=2")), 200);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = ok(
        api.get(&format!("/v1/orgs/{org}/keys?limit=2&cursor={cursor}")),
        200,
    );
    let mut walked = first["items"].as_array().unwrap().clone();
    walked.extend(rest["items"].as_array().unwrap().iter().cloned());
    assert_eq!(Value::Array(walked), listed);

    // A key's own limit, and back to the organization's.
    let path = format!("/v1/keys/{key_id}/rate-limit");
    let own = ok(api.put(&path, json!({"requests_per_minute": 10})), 200);
    assert_eq!(
        own["rate_limit"],
        json!({"requests_per_minute": 10, "burst": 0, "per_key": true})
    );
    refused(
        api.put(&path, json!({"requests_per_minute": -3})),
        422,
        "invalid_value",
    );
    refused(
        api.put(
            &format!("/v1/keys/{unknown}/rate-limit"),
            json!({"requests_per_minute": 1}),
        ),
        404,
        "key_not_found",
    );
    let cleared = ok(api.delete(&path), 200);
    assert_eq!(cleared["rate_limit"], Value::Null);
    assert_eq!(cleared["changed"], true);

    // Rotate: a new key shown once, the old one ending after the grace; only once.
    let rotated = ok(
        api.post(&format!("/v1/keys/{key_id}/rotate"), json!({"grace": "1h"})),
        201,
    );
    assert_eq!(rotated["old_key_id"], key_id.as_str());
    assert!(rotated["key"].as_str().unwrap().starts_with("sk_live_"));
    assert_ne!(rotated["key"], key["key"]);
    let message = refused(
        api.post(&format!("/v1/keys/{key_id}/rotate"), json!({})),
        409,
        "key_already_rotated",
    );
    assert!(
        message.contains(rotated["key_id"].as_str().unwrap()),
        "{message}"
    );
    let new_id = rotated["key_id"].as_str().unwrap().to_owned();
    refused(
        api.post(
            &format!("/v1/keys/{new_id}/rotate"),
            json!({"grace": "-1h"}),
        ),
        422,
        "invalid_value",
    );
    refused(
        api.post(
            &format!("/v1/keys/{new_id}/rotate"),
            json!({"grace": "1h", "extra": 1}),
        ),
        400,
        "invalid_request",
    );
    refused(
        api.post(&format!("/v1/keys/{unknown}/rotate"), json!({})),
        404,
        "key_not_found",
    );
    // An empty body takes the defaults (a day of grace).
    let defaults = ok(
        api.send("POST", &format!("/v1/keys/{new_id}/rotate"), &[], ""),
        201,
    );
    assert!(defaults["old_key_expires_at"].is_string());
    let next = defaults["key_id"].as_str().unwrap();
    ok(
        api.send("POST", &format!("/v1/keys/{next}/rotate"), &[], "null"),
        201,
    );

    // Revoke: twice is not an error; a revoked key cannot be rotated.
    let other = api.create_key(&org);
    let other_id = other["key_id"].as_str().unwrap();
    let revoke = format!("/v1/keys/{other_id}/revoke");
    assert_eq!(
        ok(api.post(&revoke, json!({})), 200),
        json!({"key_id": other_id, "revocation": "revoked"})
    );
    assert_eq!(
        ok(api.post(&revoke, json!({})), 200)["revocation"],
        "already_revoked"
    );
    assert_eq!(
        ok(api.get(&format!("/v1/keys/{other_id}")), 200)["status"],
        "revoked"
    );
    refused(
        api.post(&format!("/v1/keys/{other_id}/rotate"), json!({})),
        409,
        "key_revoked",
    );
    refused(
        api.post(&format!("/v1/keys/{unknown}/revoke"), json!({})),
        404,
        "key_not_found",
    );
    refused(
        api.post("/v1/keys/nope/revoke", json!({})),
        400,
        "invalid_request",
    );
}

#[test]
fn of_concurrent_rotations_of_one_key_exactly_one_wins() {
    let service = Service::start();
    let api = service.api();
    let org = api.create_org("rotations");
    let racers = 6;
    for round in 0..5 {
        let key = api.create_key(&org);
        let path = format!("/v1/keys/{}/rotate", key["key_id"].as_str().unwrap());
        let barrier = Arc::new(Barrier::new(racers));
        let answers: Vec<Response> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..racers)
                .map(|_| {
                    let (api, barrier, path) = (api.clone(), barrier.clone(), path.clone());
                    scope.spawn(move || {
                        barrier.wait();
                        api.post(&path, json!({"grace": "1h"}))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let statuses: Vec<u16> = answers.iter().map(|answer| answer.status).collect();
        assert_eq!(
            statuses.iter().filter(|&&status| status == 201).count(),
            1,
            "round {round}: {statuses:?}"
        );
        for answer in answers.into_iter().filter(|answer| answer.status != 201) {
            refused(answer, 409, "key_already_rotated");
        }
    }
    // Five keys, each rotated once: ten keys in all.
    let listed = ks::cli_json(&service.database_url, &["keys", "list", "--org-id", &org]);
    assert_eq!(listed.as_array().unwrap().len(), 10);
}

#[test]
fn keys_made_and_revoked_through_the_api_reach_the_gateway_within_a_second() {
    // Only the watch stream can deliver: no refresh for 15 minutes, no miss lookups.
    let stack = Stack::start(|options: &mut GatewayOptions| {
        options.sync_config =
            r#"{"role":"sync","refresh_interval":"15m","max_retry_interval":"1s"}"#.into();
        options.auth_config = r#"{"role":"auth","miss_lookup":{"enabled":false}}"#.into();
    });
    stack
        .gateway
        .process
        .wait_for_log("watch stream connected", DEADLINE);
    stack
        .gateway
        .wait_for_stat("stream_connected", DEADLINE, |n| n == 1);
    let (token, _) = admin_token(&stack.database_url, "signup backend", false);
    let api = Api::new(&stack.keysync, &token);
    let org = api.create_org("gateway");

    for _ in 0..3 {
        let key = api.create_key(&org);
        let created = Instant::now();
        let secret = key["key"].as_str().unwrap().to_owned();
        let works = poll::within(GATEWAY_DEADLINE, Duration::ZERO, || {
            match stack.gateway.get_with_key("/", &secret).status {
                200 => Ok(created.elapsed()),
                status => Err(status),
            }
        });
        let took = works.unwrap_or_else(|status| {
            panic!("a key created through the API still gets {status} after 1s")
        });
        eprintln!("created -> first 200: {took:?}");

        let key_id = key["key_id"].as_str().unwrap();
        ok(
            api.post(&format!("/v1/keys/{key_id}/revoke"), json!({})),
            200,
        );
        let revoked = Instant::now();
        let refused_at = poll::within(GATEWAY_DEADLINE, Duration::ZERO, || {
            match stack.gateway.get_with_key("/", &secret).status {
                403 => Ok(revoked.elapsed()),
                status => Err(status),
            }
        });
        let took = refused_at.unwrap_or_else(|status| {
            panic!("a key revoked through the API still gets {status} after 1s")
        });
        eprintln!("revoked -> first 403: {took:?}");
    }
    assert_eq!(stack.gateway.stat("refresh_ok"), 1, "no refresh helped");
}
