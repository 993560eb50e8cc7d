//! `Idempotency-Key`: a create sent twice happens once and the replay answers the same;
//! stored answers are sealed under a server secret as well as the key.

use std::sync::{Arc, Barrier};

use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::ScratchDir;
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

/// The attack on a database backup: open a stored answer knowing only the
/// `Idempotency-Key` (guessable when a client derives it from, say, a customer number)
/// and the code, which is public. Tries each sealing context keysync has used, with the
/// key as the only input keying material: `Some` if the answer opens.
fn open_with_the_idempotency_key_alone(stored: &[u8], idempotency_key: &str) -> Option<Vec<u8>> {
    use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
    use ring::hkdf;
    let (salt, sealed) = stored.split_at_checked(16)?;
    [
        &b"keysync admin api idempotent response v1"[..],
        &b"keysync admin api idempotent response v2"[..],
    ]
    .iter()
    .find_map(|info| {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(idempotency_key.as_bytes());
        let info = [*info];
        let okm = prk.expand(&info, &aead::CHACHA20_POLY1305).ok()?;
        let key = LessSafeKey::new(UnboundKey::from(okm));
        let mut buffer = sealed.to_vec();
        key.open_in_place(
            Nonce::assume_unique_for_key([0; aead::NONCE_LEN]),
            Aad::empty(),
            &mut buffer,
        )
        .ok()
        .map(|plaintext| plaintext.to_vec())
    })
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_stored_answer_cannot_be_opened_with_the_idempotency_key_alone() {
    let service = Service::start();
    let api = service.api();
    let org = api.create_org("backups");
    let guessable = "signup-for-customer-000042";
    let created = ok(
        api.post_once(
            "/v1/keys",
            guessable,
            json!({"org_id": org, "name": "customer 42"}),
        ),
        201,
    );
    let stored = hex_decode(&service.sql("SELECT encode(response, 'hex') FROM api_idempotency"));
    assert!(stored.len() > 16, "a sealed answer is stored");
    let opened = open_with_the_idempotency_key_alone(&stored, guessable);
    assert_eq!(
        opened.map(|plaintext| String::from_utf8_lossy(&plaintext).into_owned()),
        None,
        "the backup and the Idempotency-Key alone open the answer, key {} included",
        created["key_id"]
    );
    // keysync itself still opens it.
    let replay = api.post_once(
        "/v1/keys",
        guessable,
        json!({"org_id": org, "name": "customer 42"}),
    );
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(ok(replay, 201), created);
}

#[test]
fn replays_survive_a_restart_with_a_secret_file_and_are_refused_without_one() {
    let mut service = Service::start();
    let url = service.database_url.clone();
    let (token, _) = admin_token(&url, "signups", false);
    let org = ks::create_org(&url, "restarts");
    let request = json!({"org_id": org, "name": "customer 7"});
    let count_keys = || {
        ks::cli_json(&url, &["keys", "list", "--org-id", &org])
            .as_array()
            .unwrap()
            .len()
    };
    let scratch = ScratchDir::new("idempotency-secret").unwrap();
    let secret_file = scratch.path().join("idempotency-secret");
    std::fs::write(
        &secret_file,
        "c2VjcmV0LW9mLTMyLWJ5dGVzLWF0LWxlYXN0LW5vdy4uLg==\n",
    )
    .unwrap();
    let secret_file = secret_file.display().to_string();
    let with_secret = [("KEYSYNC_IDEMPOTENCY_SECRET_FILE", secret_file.as_str())];

    // Without a secret file: sealed under a secret of this process alone.
    let first = ok(
        Api::new(&service.keysync, &token).post_once(
            "/v1/keys",
            "customer-7-signup-0001",
            request.clone(),
        ),
        201,
    );
    service.keysync.process.terminate();
    service.keysync = Keysync::start(&url, &with_secret);
    let api = Api::new(&service.keysync, &token);
    let message = refused(
        api.post_once("/v1/keys", "customer-7-signup-0001", request.clone()),
        409,
        "idempotent_answer_unavailable",
    );
    assert!(
        message.contains("KEYSYNC_IDEMPOTENCY_SECRET_FILE"),
        "{message}"
    );
    assert_eq!(count_keys(), 1, "the refused replay made nothing");
    assert!(!message.contains(first["key"].as_str().unwrap()));

    // With one: the first answer again after a restart with the same file.
    let sealed = ok(
        api.post_once("/v1/keys", "customer-7-signup-0002", request.clone()),
        201,
    );
    service.keysync.process.terminate();
    service.keysync = Keysync::start(&url, &with_secret);
    let api = Api::new(&service.keysync, &token);
    let replay = api.post_once("/v1/keys", "customer-7-signup-0002", request.clone());
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(ok(replay, 201), sealed);
    assert_eq!(count_keys(), 2);
}
