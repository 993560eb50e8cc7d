//! Ready paths (`/health`): 503 `auth_unavailable` until the store holds a complete
//! sync, then keyless like a public path.

use super::*;

fn health(worker: &Worker, headers: &[(&str, &str)]) -> Action {
    let mut all = vec![(":path", "/health")];
    all.extend_from_slice(headers);
    send(worker, &all).1
}

#[test]
fn health_answers_503_until_the_store_holds_a_complete_sync() {
    let worker = worker_never_synced();
    assert_eq!(health(&worker, &[]), Action::Pause);
    let reply = worker.host.reply().expect("answered");
    assert_eq!(reply.status, 503);
    assert!(reply.body.contains("auth_unavailable"), "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("5"));

    // Whatever the request carries: a key the store holds does not make it ready.
    store(&worker, record(KEY));
    let bearer = format!("Bearer {KEY}");
    assert_eq!(
        health(&worker, &[("authorization", &bearer)]),
        Action::Pause
    );
    assert_eq!(status(&worker), Some(503));
    assert!(
        worker.host.calls.borrow().is_empty(),
        "keysync was not asked"
    );

    // Other paths go their usual way meanwhile.
    send(&worker, &[(":path", "/orders")]);
    assert_eq!(status(&worker), Some(401));

    // A full refresh under way (its first page announced a revision) is not enough.
    let mut meta = worker.store().meta();
    meta.epoch = EPOCH;
    meta.revision = 3;
    meta.confirmed_age_ms = 100;
    worker.store().write_meta(&meta).unwrap();
    health(&worker, &[]);
    assert_eq!(status(&worker), Some(503));

    // The refresh completes: the next request sees it, without waiting for a tick.
    meta.synced = true;
    worker.store().write_meta(&meta).unwrap();
    assert_eq!(health(&worker, &[]), Action::Continue);
    assert_eq!(worker.host.reply(), None);
    assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
}

#[test]
fn once_ready_health_is_keyless_and_carries_no_credential_or_identity() {
    let worker = synced_worker("{}");
    assert_eq!(
        health(
            &worker,
            &[("x-org-id", "forged"), ("x-api-key", "sk_live_nope")]
        ),
        Action::Continue
    );
    assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
    assert!(worker.host.request_values("x-api-key").is_empty());
    // The latch holds: the store's metadata is not read again.
    worker.store().write_meta(&StoreMeta::default()).unwrap();
    worker.on_tick();
    assert_eq!(health(&worker, &[]), Action::Continue);
    // As for any keyless path: the two credential headers, the :path and the identity
    // headers' removal (no credential was there: none to remove); no metadata read.
    assert_eq!(worker.host.host_calls.get(), 5);
}

#[test]
fn without_ready_paths_health_is_an_ordinary_path() {
    let worker = worker(r#"{"ready_paths":[]}"#);
    health(&worker, &[]);
    assert_eq!(status(&worker), Some(401));
    let public = super::worker(r#"{"ready_paths":[],"public_paths":["/health"]}"#);
    assert_eq!(
        health(&public, &[]),
        Action::Continue,
        "public, whether synced or not"
    );
}
