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
