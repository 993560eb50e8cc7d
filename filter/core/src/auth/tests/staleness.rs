//! A store not confirmed within `max_staleness` cannot vouch for a key.

use super::*;
use crate::host::fake_log::logged_line;

#[test]
fn a_stale_store_cannot_vouch_for_a_key() {
    let worker = synced_worker(r#"{"max_staleness":"2m","miss_lookup":{"enabled":false}}"#);
    store(&worker, record(KEY));
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Continue, "confirmed just now");

    // The sync service stops beating (its VM died): the worker's own time counts.
    for _ in 0..(121 * 4) {
        worker.host.advance(std::time::Duration::from_millis(250));
        worker.on_tick();
    }
    send_key(&worker, KEY);
    assert_eq!(status(&worker), Some(503));
    assert!(logged_line("over max_staleness").is_some());

    sync_beat(&worker, 1_000);
    worker.on_tick();
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(
        action,
        Action::Continue,
        "trusted again once keysync confirms"
    );
}

#[test]
fn a_store_confirmed_too_long_ago_is_not_trusted_even_while_the_sync_service_beats() {
    let worker = synced_worker(r#"{"max_staleness":"2m","miss_lookup":{"enabled":false}}"#);
    store(&worker, record(KEY));
    sync_beat(&worker, 120_001);
    worker.on_tick();
    send_key(&worker, KEY);
    assert_eq!(status(&worker), Some(503));
}

#[test]
fn a_stale_store_lets_keysync_vouch_with_fresh_answers_only() {
    let worker = synced_worker(r#"{"max_staleness":"2m"}"#);
    store(&worker, record(KEY));
    sync_beat(&worker, 200_000);
    worker.on_tick();
    let (mut request, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Pause, "the store is not asked: keysync is");
    answer(&mut request, &worker, found(&record(KEY), 1));
    assert_eq!(worker.host.resumed.get(), 1, "a fresh answer admits");
    assert_forwarded_with_identity(&worker, Action::Continue);

    let (mut request, _) = send_key(&worker, KEY);
    answer(
        &mut request,
        &worker,
        found_with(&record(KEY), 99, provenance(EPOCH, 130_000)),
    );
    assert_eq!(status(&worker), Some(503), "keysync cannot vouch either");
}

#[test]
fn a_worker_trusts_nothing_before_it_sees_a_confirmed_store() {
    let worker = worker(r#"{"miss_lookup":{"enabled":false}}"#);
    store(&worker, record(KEY));
    send_key(&worker, KEY);
    assert_eq!(status(&worker), Some(503));
    // The first sync completes: the next request sees it without waiting for a tick.
    sync_beat(&worker, 0);
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Continue);
}

/// A worker trusting its store, which holds `KEY`; the store then ages past
/// `max_staleness` (keysync frozen) and the worker's tick sees it.
fn worker_gone_stale(serve_first: bool) -> Worker {
    let worker = synced_worker(r#"{"max_staleness":"6s"}"#);
    store(&worker, record(KEY));
    worker.on_tick();
    if serve_first {
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
    }
    sync_beat(&worker, 7_000);
    worker.on_tick();
    worker
}

/// keysync is back, and the key was revoked while it was frozen: the stale store asks
/// keysync, whose fresh word refuses it.
fn refused_by_keysync(worker: &Worker) {
    let (mut request, action) = send_key(worker, KEY);
    assert_eq!(action, Action::Pause, "a stale store asks keysync");
    answer(
        &mut request,
        worker,
        not_found_at(STORE_REVISION + 1, EPOCH),
    );
    assert_eq!(status(worker), Some(403));
}

#[test]
fn a_key_refused_while_the_store_was_stale_is_not_admitted_from_a_copy_once_it_is_trusted() {
    // The key was served while the store was trusted: the worker keeps a copy of it.
    let worker = worker_gone_stale(true);
    refused_by_keysync(&worker);

    // The stream delivers the revocation and keysync's confirmation: the store is
    // trusted again, before this worker's next tick.
    let hash = record(KEY).hash;
    worker
        .store()
        .apply_changes(&[Change::Remove(hash)])
        .unwrap();
    sync_beat(&worker, 0);
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(
        status(&worker),
        Some(403),
        "the copy made before the store went stale is older than the store ({action:?})"
    );
    assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
}

#[test]
fn a_key_keysync_refused_while_the_store_was_stale_leaves_the_store() {
    let worker = worker_gone_stale(false);
    let generation = worker.store().generation();
    refused_by_keysync(&worker);
    let hash = record(KEY).hash;
    assert_eq!(
        worker.store().find(&hash),
        Ok(None),
        "taken out of the store"
    );
    assert!(
        worker.store().generation() > generation,
        "so every worker drops its copy at its next tick"
    );

    // keysync confirms the store before its stream has delivered the revocation: the
    // store is trusted again, and must not admit the key keysync refused.
    sync_beat(&worker, 0);
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(status(&worker), Some(403), "{action:?}");
    worker.on_tick();
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(status(&worker), Some(403), "{action:?}");
}

#[test]
fn an_answer_older_than_the_store_takes_nothing_out_of_it() {
    let worker = worker_gone_stale(false);
    let hash = record(KEY).hash;
    let (mut request, _) = send_key(&worker, KEY);
    answer(
        &mut request,
        &worker,
        not_found_at(STORE_REVISION - 1, EPOCH),
    );
    assert_eq!(status(&worker), Some(403), "keysync's fresh word decides");
    assert_eq!(
        worker.store().find(&hash),
        Ok(Some(record(KEY))),
        "a keysync behind the store may not know a key created since"
    );
    let (mut request, _) = send_key(&worker, KEY);
    answer(
        &mut request,
        &worker,
        not_found_at(STORE_REVISION + 1, EPOCH + 1),
    );
    assert_eq!(
        worker.store().find(&hash),
        Ok(Some(record(KEY))),
        "nor one of another revision history (the resync decides)"
    );
}
