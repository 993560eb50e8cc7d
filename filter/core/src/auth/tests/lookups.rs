//! The miss path: keysync asked for a key the store lacks, and what its answer may do.

use super::*;
use crate::host::fake_log::logged_line;
use crate::keysync_api::{self, ApiError};

#[test]
fn an_unknown_key_found_by_keysync_is_admitted_and_cached() {
    let worker = synced_worker("{}");
    let (mut request, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Pause, "waits for keysync");
    let call = worker.host.last_call().unwrap();
    assert_eq!(call.cluster, "keysync");
    assert_eq!(call.method, keysync_api::LOOKUP_KEY);
    assert_eq!(call.timeout, Some(std::time::Duration::from_secs(1)));
    let asked: proto::LookupKeyRequest = call.decode();
    assert_eq!(asked.key_hash, KeyHash::of_key(KEY.as_bytes()).0.to_vec());
    assert_eq!(worker.lookups_in_flight.get(), 1);

    answer(&mut request, &worker, found(&record(KEY), STORE_REVISION));
    assert_eq!(worker.host.resumed.get(), 1, "the request goes on");
    assert_forwarded_with_identity(&worker, Action::Continue);
    assert_eq!(worker.lookups_in_flight.get(), 0);
    assert_eq!(
        worker.store().find(&record(KEY).hash),
        Ok(Some(record(KEY))),
        "cached for every worker"
    );
    assert!(logged_line("found by keysync (cached)").is_some());
}

#[test]
fn an_answer_older_than_the_store_never_admits_a_key_the_store_lacks() {
    let worker = synced_worker("{}");
    let (mut request, _) = send_key(&worker, KEY);
    answer(
        &mut request,
        &worker,
        found(&record(KEY), STORE_REVISION - 1),
    );
    assert_eq!(
        status(&worker),
        Some(403),
        "the store may have dropped it since"
    );
    assert_eq!(worker.host.resumed.get(), 0);
    assert_eq!(
        worker.store().find(&record(KEY).hash),
        Ok(None),
        "not cached"
    );

    // If the store has the key by the time the late answer arrives, it decides.
    let (mut request, _) = send_key(&worker, KEY);
    store(&worker, record(KEY));
    answer(
        &mut request,
        &worker,
        found(&record(KEY), STORE_REVISION - 1),
    );
    assert_eq!(worker.host.resumed.get(), 1);
    assert_forwarded_with_identity(&worker, Action::Continue);
}

#[test]
fn an_answer_of_another_history_or_unconfirmed_never_admits() {
    let worker = synced_worker(r#"{"max_staleness":"2m"}"#);
    for unusable in [provenance(EPOCH + 1, 200), provenance(EPOCH, 121_000), None] {
        let (mut request, _) = send_key(&worker, KEY);
        let reply = found_with(&record(KEY), STORE_REVISION + 5, unusable);
        answer(&mut request, &worker, reply);
        assert_eq!(status(&worker), Some(403), "{unusable:?}");
        assert_eq!(worker.store().find(&record(KEY).hash), Ok(None));
    }
    worker.on_tick();
    assert_eq!(worker.host.metric("keysync.stale_answers"), Some(3));
}

#[test]
fn an_unknown_key_keysync_does_not_know_is_refused_and_remembered() {
    let worker = synced_worker("{}");
    let (mut request, _) = send_key(&worker, KEY);
    answer(&mut request, &worker, not_found());
    assert_eq!(status(&worker), Some(403));
    assert_eq!(
        worker.host.resumed.get(),
        0,
        "a refused request is not resumed"
    );

    let calls = worker.host.calls.borrow().len();
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Pause);
    assert_eq!(
        status(&worker),
        Some(403),
        "refused from the negative cache"
    );
    assert_eq!(
        worker.host.calls.borrow().len(),
        calls,
        "without asking again"
    );

    worker.host.advance(std::time::Duration::from_secs(31));
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Pause);
    assert_eq!(
        worker.host.calls.borrow().len(),
        calls + 1,
        "asked again after the TTL"
    );
}

#[test]
fn a_lookup_timeout_leaves_the_store_to_decide() {
    let worker = synced_worker("{}");
    let (mut request, _) = send_key(&worker, KEY);
    answer(
        &mut request,
        &worker,
        Err(ApiError::Grpc(4, "deadline exceeded".into())),
    );
    assert_eq!(
        status(&worker),
        Some(403),
        "a synced store: absent means invalid"
    );
    assert!(logged_line("lookup of key_hash=").is_some());

    let unsynced = worker_never_synced();
    let (mut request, _) = send_key(&unsynced, KEY);
    answer(
        &mut request,
        &unsynced,
        Err(ApiError::Grpc(14, String::new())),
    );
    assert_eq!(
        status(&unsynced),
        Some(503),
        "a store that never synced cannot tell"
    );
}

#[test]
fn an_answer_for_another_key_is_not_trusted() {
    let worker = synced_worker("{}");
    let (mut request, _) = send_key(&worker, KEY);
    answer(
        &mut request,
        &worker,
        found(&record(OTHER_KEY), STORE_REVISION),
    );
    assert_eq!(status(&worker), Some(403));
    assert_eq!(worker.store().find(&record(OTHER_KEY).hash), Ok(None));
}

#[test]
fn lookups_beyond_the_bound_or_undispatchable_are_decided_by_the_store() {
    let worker = synced_worker(r#"{"miss_lookup":{"max_in_flight":1}}"#);
    let (_waiting, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Pause);
    send_key(&worker, OTHER_KEY);
    assert_eq!(status(&worker), Some(403), "over the bound: not asked");
    assert_eq!(worker.host.calls.borrow().len(), 1);

    let worker = synced_worker("{}");
    worker.host.fail_dispatch.set(true);
    send_key(&worker, KEY);
    assert_eq!(status(&worker), Some(403));
    assert_eq!(worker.lookups_in_flight.get(), 0);
}

#[test]
fn a_client_that_leaves_mid_lookup_frees_its_slot() {
    let worker = synced_worker("{}");
    let (request, _) = send_key(&worker, KEY);
    assert_eq!(worker.lookups_in_flight.get(), 1);
    drop(request);
    assert_eq!(worker.lookups_in_flight.get(), 0);
}

#[test]
fn a_key_the_miss_path_answered_keeps_working_while_keysync_stalls_before_the_first_sync() {
    let worker = worker_never_synced();
    let (mut request, action) = send_key(&worker, KEY);
    assert_eq!(
        action,
        Action::Pause,
        "nothing trusted yet: keysync is asked"
    );
    answer(&mut request, &worker, found(&record(KEY), 5));
    assert_forwarded_with_identity(&worker, Action::Continue);
    assert_eq!(
        worker.store().find(&record(KEY).hash),
        Ok(Some(record(KEY))),
        "in the store for every worker"
    );

    // keysync stalls (SIGSTOP): the lookup times out. The store still holds the key
    // keysync confirmed moments ago.
    worker.host.advance(std::time::Duration::from_secs(1));
    let (mut request, action) = send_key(&worker, KEY);
    assert_eq!(
        action,
        Action::Pause,
        "asked first: a revocation would show"
    );
    answer(
        &mut request,
        &worker,
        Err(ApiError::Grpc(4, "deadline exceeded".into())),
    );
    assert_eq!(worker.host.resumed.get(), 1, "not a 503");
    assert_forwarded_with_identity(&worker, Action::Continue);

    // Every lookup slot busy with the stalled keysync: decided without asking.
    let stalled = worker_never_synced();
    let (mut first, _) = send_key(&stalled, KEY);
    answer(&mut first, &stalled, found(&record(KEY), 5));
    let config = r#"{"miss_lookup":{"max_in_flight":1}}"#;
    let busy = super::worker(config);
    busy.store()
        .note_lookup(
            stalled
                .store()
                .lookups()
                .find(&record(KEY).hash)
                .copied()
                .unwrap(),
        )
        .unwrap();
    store(&busy, record(KEY));
    let (_hanging, _) = send_key(&busy, OTHER_KEY);
    let (_, action) = send_key(&busy, KEY);
    assert_forwarded_with_identity(&busy, action);
    busy.on_tick();
    assert_eq!(busy.host.metric("keysync.lookup_vouched"), Some(1));

    // Only within max_staleness of keysync's confirmation, like a synced store.
    worker.host.advance(std::time::Duration::from_secs(15 * 60));
    let (mut request, _) = send_key(&worker, KEY);
    answer(
        &mut request,
        &worker,
        Err(ApiError::Grpc(14, String::new())),
    );
    assert_eq!(status(&worker), Some(503));
}

#[test]
fn a_key_keysync_no_longer_knows_is_refused_though_the_miss_path_cached_it() {
    let worker = worker_never_synced();
    let (mut request, _) = send_key(&worker, KEY);
    answer(&mut request, &worker, found(&record(KEY), 5));
    assert_forwarded_with_identity(&worker, Action::Continue);
    // Revoked since: while keysync answers, its word decides, not the ledger.
    let (mut request, _) = send_key(&worker, KEY);
    answer(&mut request, &worker, not_found());
    assert_eq!(status(&worker), Some(403));
    // And keysync stalling next does not bring it back.
    let (mut request, _) = send_key(&worker, KEY);
    answer(
        &mut request,
        &worker,
        Err(ApiError::Grpc(4, "deadline exceeded".into())),
    );
    assert_eq!(status(&worker), Some(503));
    assert_eq!(worker.host.resumed.get(), 0);
}

#[test]
fn a_key_keysync_no_longer_knows_leaves_the_store_though_an_older_answer_put_it_there() {
    let worker = synced_worker("{}");
    // Two requests for a key new to the store ask keysync at once; the key is revoked
    // between the two answers.
    let (mut first, _) = send_key(&worker, KEY);
    let (mut second, _) = send_key(&worker, KEY);
    let tokens: Vec<u32> = worker.host.calls.borrow().iter().map(|c| c.token).collect();
    let [older, newer] = tokens[..] else {
        panic!("two lookups: {tokens:?}");
    };
    first.on_lookup_reply(older, found(&record(KEY), STORE_REVISION));
    assert_eq!(
        worker.store().find(&record(KEY).hash),
        Ok(Some(record(KEY))),
        "cached for every worker"
    );
    second.on_lookup_reply(newer, not_found_at(STORE_REVISION + 1, EPOCH));
    assert_eq!(status(&worker), Some(403));
    assert_eq!(
        worker.store().find(&record(KEY).hash),
        Ok(None),
        "no worker finds it in the store any more"
    );
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(status(&worker), Some(403), "{action:?}");
}
