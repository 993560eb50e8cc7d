//! The key store's sync: full refreshes, the watch stream, failures and takeovers.

use super::*;
use crate::host::fake_log::logged_line;
use crate::keysync_api::provenance::NEVER;
use crate::keysync_api::ApiError;
use crate::limits::local_rate_limit;
use crate::stats;
use crate::sync::sync_lease::TAKEOVER_AFTER_MS;

#[test]
fn the_first_tick_loads_everything_then_opens_the_stream_after_it() {
    let mut service = service(r#"{"role":"sync","page_size":2}"#);
    service.on_tick();
    let first = last_list_call(&service).unwrap();
    assert_eq!(first.method, keysync_api::LIST_KEYS);
    assert_eq!(first.timeout, Some(Duration::from_secs(10)));
    let keys: Vec<_> = (1..=5).map(key).collect();
    serve_refresh(&mut service, &keys, 10);
    assert_eq!(list_calls(&service), 3, "five keys in pages of two");
    assert!((1..=5).all(|n| known(&service, n)));
    let meta = service.store().meta();
    assert!(meta.synced);
    assert_eq!((meta.revision, meta.keys), (10, 5));
    assert!(logged_line("cache refresh complete: updated=5, removed=0, total=5").is_some());
    assert_eq!(service.host.metric(stats::REFRESH_OK), Some(1));

    let stream = service.host.last_stream().expect("a watch stream");
    assert_eq!(stream.method, keysync_api::WATCH_KEYS);
    let request: proto::WatchKeysRequest = stream.decode();
    assert_eq!(request.after_revision, 10);
}

#[test]
fn stream_changes_reach_the_store_and_heartbeats_keep_it_fresh() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1), key(2)]);
    assert_eq!(service.host.metric(stats::STREAM_CONNECTED), Some(1));
    let token = stream_token(&service).unwrap();
    service.on_stream_message(token, changes(11, &[3], &[1]));
    assert!(!known(&service, 1), "revoked");
    assert!(known(&service, 3), "created");
    assert_eq!(service.complete, Some(11));
    assert_eq!(service.store().meta().revision, 11);

    tick_after(&mut service, Duration::from_secs(5));
    assert!(service.store().meta().confirmed_age_ms >= 5_000);
    service.on_stream_message(token, changes(11, &[], &[]));
    service.on_tick();
    assert_eq!(
        service.store().meta().confirmed_age_ms,
        300,
        "a heartbeat says when keysync last confirmed"
    );
}

#[test]
fn a_closed_stream_is_reopened_after_backoff_from_the_complete_revision() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    service.on_stream_message(token, changes(12, &[2], &[]));
    service.on_stream_close(token, 14);
    assert!(stream_token(&service).is_none());
    assert_eq!(service.host.metric(stats::STREAM_CONNECTED), Some(0));
    assert!(logged_line("watch stream down (closed with gRPC status 14)").is_some());

    let streams = service.host.streams.borrow().len();
    tick_after(&mut service, Duration::from_millis(100));
    assert_eq!(
        service.host.streams.borrow().len(),
        streams,
        "not before the backoff (at least 125 ms)"
    );
    tick_after(&mut service, Duration::from_millis(200));
    let reopened = service.host.last_stream().unwrap();
    assert_eq!(service.host.streams.borrow().len(), streams + 1);
    let request: proto::WatchKeysRequest = reopened.decode();
    assert_eq!(
        request.after_revision, 12,
        "resumes after what the store holds"
    );
}

#[test]
fn a_silent_stream_is_presumed_dead() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    for _ in 0..64 {
        tick_after(&mut service, Duration::from_millis(250));
    }
    assert!(service.host.cancelled.borrow().contains(&token));
    // Given up, and (its backoff being short) already reopened as a new stream.
    assert_ne!(stream_token(&service), Some(token));
    assert!(logged_line("no message for 15s").is_some());
}

#[test]
fn a_failed_page_backs_off_and_the_last_keys_keep_serving() {
    let mut service = running_with_stream(
        r#"{"role":"sync","refresh_interval":"60s","max_retry_interval":"8s"}"#,
        &[key(1)],
    );
    let mut delays = Vec::new();
    quiet_for(&mut service, Duration::from_secs(60));
    for _ in 0..5 {
        let call = last_list_call(&service).unwrap();
        service.on_response(call.token, Err(ApiError::Grpc(14, "unavailable".into())));
        assert!(known(&service, 1), "the store keeps serving");
        // Tick in 100 ms steps until the retry goes out.
        let calls = list_calls(&service);
        let mut waited = Duration::ZERO;
        while list_calls(&service) == calls {
            tick_after(&mut service, Duration::from_millis(100));
            waited += Duration::from_millis(100);
            assert!(waited < Duration::from_secs(20), "no retry");
        }
        delays.push(waited);
    }
    assert_eq!(service.host.metric(stats::REFRESH_FAILED), Some(5));
    for (delay, nominal) in delays.iter().zip([1, 2, 4, 8, 8]) {
        let nominal = Duration::from_secs(nominal);
        assert!(
            *delay >= nominal / 2 && *delay <= nominal + Duration::from_millis(100),
            "{delays:?}"
        );
    }
    assert!(logged_line("cache refresh failed: gRPC status 14: unavailable; retry 5").is_some());
    serve_refresh(&mut service, &[key(1), key(2)], 11);
    assert!(known(&service, 2), "a later refresh succeeds");
}

#[test]
fn a_refresh_nobody_answers_is_abandoned() {
    let mut service = service(r#"{"role":"sync","request_timeout":"1s"}"#);
    service.on_tick();
    let token = last_list_call(&service).unwrap().token;
    tick_after(&mut service, Duration::from_millis(2100));
    assert!(service.host.cancelled.borrow().contains(&token));
    assert_eq!(service.host.metric(stats::REFRESH_FAILED), Some(1));
}

#[test]
fn a_revision_going_backwards_is_not_applied_and_forces_a_resync() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    let lists = list_calls(&service);
    service.on_stream_message(token, changes(5, &[7], &[]));
    assert!(!known(&service, 7), "not applied");
    assert!(service.host.cancelled.borrow().contains(&token));
    assert_eq!(service.host.metric(stats::RESYNCS), Some(1));
    assert!(logged_line("revision went backwards").is_some());
    service.on_tick();
    assert_eq!(
        list_calls(&service),
        lists + 1,
        "a full refresh starts at once"
    );
    assert!(stream_token(&service).is_none(), "the stream waits for it");
    serve_refresh(&mut service, &[key(1)], 10);
    assert!(stream_token(&service).is_some(), "then reopens");
}

#[test]
fn keysync_asking_for_a_resync_gets_one() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    let message = proto::KeyChanges {
        revision: 99,
        resync_required: true,
        ..Default::default()
    };
    service.on_stream_message(token, Ok(prost::Message::encode_to_vec(&message)));
    service.on_tick();
    assert_eq!(
        last_list_call(&service).unwrap().method,
        keysync_api::LIST_KEYS
    );
    assert!(logged_line("full resync").is_some());
}

#[test]
fn a_split_change_set_completes_on_its_last_part() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    service.on_stream_message(token, partial(11, &[2]));
    assert!(known(&service, 2), "parts apply as they come");
    assert_eq!(
        service.complete,
        Some(10),
        "but the revision is not complete yet"
    );
    service.on_stream_message(token, changes(11, &[3], &[]));
    assert_eq!(service.complete, Some(11));
}

#[test]
fn a_split_change_set_that_never_ends_forces_a_resync() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    // A rogue keeps the stream busy with parts of one change set and never ends it.
    for n in 0..4 {
        service.on_stream_message(token, partial(11, &[20 + n]));
        tick_after(&mut service, Duration::from_secs(5));
    }
    assert!(service.host.cancelled.borrow().contains(&token));
    assert!(logged_line("did not complete within 15s").is_some());
    assert_eq!(service.complete, Some(10));
    assert_eq!(service.host.metric(stats::RESYNCS), Some(1));
}

#[test]
fn undecodable_messages_and_bad_records_force_a_resync() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    service.on_stream_message(token, Ok(b"\xff\xff\xff not protobuf".to_vec()));
    assert!(logged_line("watch stream: cannot decode").is_some());
    assert!(stream_token(&service).is_none());

    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    let mut bad = key(5);
    bad.org_id = vec![1, 2, 3];
    let message = proto::KeyChanges {
        revision: 11,
        upserts: vec![bad],
        provenance: fresh(),
        ..Default::default()
    };
    service.on_stream_message(token, Ok(prost::Message::encode_to_vec(&message)));
    assert!(!known(&service, 5));
    assert!(logged_line("bad key record").is_some());
}

#[test]
fn the_periodic_refresh_repairs_drift_the_stream_missed() {
    let mut service = running_with_stream(
        r#"{"role":"sync","refresh_interval":"60s"}"#,
        &[key(1), key(2)],
    );
    // keysync dropped key 2 and the stream never said so.
    quiet_for(&mut service, Duration::from_secs(60));
    assert!(service.running.is_some(), "the periodic refresh is due");
    serve_refresh(&mut service, &[key(1)], 10);
    assert!(!known(&service, 2));
    let line = logged_line("repaired drift").expect("drift is reported");
    assert!(line.contains("removed=1"), "{line}");
}

#[test]
fn changes_during_a_refresh_are_not_undone_by_its_older_pages() {
    let mut service = running_with_stream(
        r#"{"role":"sync","refresh_interval":"60s","page_size":1}"#,
        &[key(1), key(2), key(3)],
    );
    quiet_for(&mut service, Duration::from_secs(60));
    let token = stream_token(&service).unwrap();
    // The stream revokes every key while the refresh pages out the old set.
    service.on_stream_message(token, changes(11, &[], &[1, 2, 3]));
    serve_refresh(&mut service, &[key(1), key(2), key(3)], 10);
    assert!(
        (1..=3).all(|n| !known(&service, n)),
        "no revoked key comes back"
    );
}

#[test]
fn rate_limit_slots_exist_once_the_service_syncs() {
    let mut service = service(r#"{"role":"sync"}"#);
    service.on_tick();
    assert_eq!(
        (0..local_rate_limit::SLOTS)
            .filter(|i| service
                .host
                .shared
                .value(&format!("keysync.rl.{i:04x}"))
                .is_some())
            .count(),
        usize::from(local_rate_limit::SLOTS)
    );
}

fn heartbeat_with(revision: u64, epoch: u64, confirmed_age_ms: u64) -> Reply {
    Ok(prost::Message::encode_to_vec(&proto::KeyChanges {
        revision,
        provenance: Some(proto::Provenance {
            epoch,
            confirmed_age_ms,
        }),
        ..Default::default()
    }))
}

fn watch_after(service: &SyncService<FakeHost>) -> (u64, u64) {
    let request: proto::WatchKeysRequest = service.host.last_stream().unwrap().decode();
    (request.after_revision, request.epoch)
}

#[test]
fn a_revision_that_jumped_ahead_is_repaired_by_a_resync_that_resets_the_baseline() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    // One corrupt heartbeat claims a huge revision, then keysync goes on as before.
    service.on_stream_message(token, heartbeat_with(u64::MAX / 2, EPOCH, 300));
    assert_eq!(service.complete, Some(u64::MAX / 2));
    service.on_stream_message(token, changes(11, &[2], &[]));
    assert!(logged_line("revision went backwards").is_some());
    service.on_tick();
    serve_refresh(&mut service, &[key(1), key(2)], 11);
    assert_eq!(
        service.complete,
        Some(11),
        "the baseline is keysync's again"
    );
    assert_eq!(service.store().meta().revision, 11);
    assert_eq!(watch_after(&service), (11, EPOCH));
    assert!(known(&service, 2));
}

#[test]
fn a_new_revision_history_replaces_the_store_whatever_its_revisions() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1), key(2)]);
    let token = stream_token(&service).unwrap();
    // keysync's database was restored from an older dump: a new epoch, revision 4.
    service.on_stream_message(token, heartbeat_with(4, EPOCH + 1, 300));
    assert!(logged_line("revision history changed").is_some());
    assert!(service.host.cancelled.borrow().contains(&token));
    service.on_tick();
    let call = last_list_call(&service).unwrap();
    let request: proto::ListKeysRequest = call.decode();
    let page = proto::ListKeysResponse {
        keys: vec![key(1)],
        more: false,
        revision: 4,
        provenance: Some(proto::Provenance {
            epoch: EPOCH + 1,
            confirmed_age_ms: 100,
        }),
    };
    assert!(request.after_hash.is_empty());
    service.on_response(call.token, Ok(prost::Message::encode_to_vec(&page)));
    let meta = service.store().meta();
    assert_eq!((meta.epoch, meta.revision), (EPOCH + 1, 4));
    assert!(
        !known(&service, 2),
        "the restored database does not have it"
    );
    assert_eq!(watch_after(&service), (4, EPOCH + 1));
}

#[test]
fn a_periodic_refresh_from_a_keysync_behind_the_store_is_refused() {
    let mut service = running_with_stream(r#"{"role":"sync","refresh_interval":"60s"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    service.on_stream_message(token, changes(15, &[], &[1]));
    quiet_for(&mut service, Duration::from_secs(60));
    // Another keysync, lagging at revision 12, answers the refresh.
    let call = last_list_call(&service).unwrap();
    service.on_response(call.token, page_for(&call, &[key(1)], 12));
    assert!(!known(&service, 1), "the revocation is not undone");
    assert!(logged_line("keysync is behind the store (revision 12 < 15)").is_some());
    assert_eq!(service.host.metric(stats::REFRESH_FAILED), Some(1));
}

#[test]
fn a_stream_whose_keysync_stopped_confirming_is_reopened() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    service.on_stream_message(token, heartbeat_with(10, EPOCH, 4_000));
    assert!(
        stream_token(&service).is_some(),
        "within max_unconfirmed (5 s)"
    );
    service.on_stream_message(token, heartbeat_with(10, EPOCH, 6_000));
    assert!(service.host.cancelled.borrow().contains(&token));
    assert!(logged_line("has not confirmed its keys against PostgreSQL for 6s").is_some());
    assert!(stream_token(&service).is_none());
}

#[test]
fn every_tick_tells_the_workers_how_old_the_store_is() {
    let mut service = service(r#"{"role":"sync"}"#);
    service.on_tick();
    let meta = service.store().meta();
    assert_eq!(meta.confirmed_age_ms, NEVER, "nothing confirmed yet");
    let beat = meta.beat;
    serve_refresh(&mut service, &[key(1)], 10);
    service.on_tick();
    let meta = service.store().meta();
    assert_eq!(meta.confirmed_age_ms, 300);
    assert!(meta.beat > beat);
    for _ in 0..8 {
        tick_after(&mut service, Duration::from_millis(250));
    }
    // The stream opened but nothing arrived on it: the age grows.
    assert_eq!(service.store().meta().confirmed_age_ms, 300 + 2_000);
    assert_eq!(service.host.metric(stats::SECONDS_SINCE_SYNC), Some(2));
}

#[test]
fn a_wall_clock_stepped_back_an_hour_does_not_stop_the_sync() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1)]);
    let token = stream_token(&service).unwrap();
    service.on_stream_close(token, 14);
    let now = service.host.now_ms.get();
    service.host.now_ms.set(now - 3_600_000);
    let streams = service.host.streams.borrow().len();
    for _ in 0..8 {
        tick_after(&mut service, Duration::from_millis(250));
    }
    assert_eq!(
        service.host.streams.borrow().len(),
        streams + 1,
        "the stream is reopened after its backoff, not an hour later"
    );
    let confirmed = service.store().meta().confirmed_age_ms;
    // 300 ms at the heartbeat, then seven ticks of 250 ms: the step back counts 0.
    assert_eq!(confirmed, 300 + 7 * 250);
}

#[test]
fn a_worker_takes_over_a_sync_service_that_died_and_the_store_keeps_up() {
    let host = FakeHost::at(NOW_MS);
    let PluginConfig::Sync(config) =
        PluginConfig::parse(br#"{"role":"sync","page_size":50}"#).unwrap()
    else {
        panic!("sync");
    };
    let mut singleton = SyncService::singleton(&host, config, br#"{"role":"sync","page_size":50}"#);
    let mut standby = SyncService::standby(&host, "keysync").unwrap();
    assert_eq!(
        standby.config.page_size, 50,
        "the singleton's configuration"
    );
    singleton.on_tick();
    standby.on_tick();
    let token = singleton.running.as_ref().unwrap().token;
    let call = host
        .calls
        .borrow()
        .iter()
        .find(|c| c.token == token)
        .cloned()
        .unwrap();
    singleton.on_response(token, page_for(&call, &[key(1)], 10));
    let calls = host.calls.borrow().len();
    for _ in 0..40 {
        host.advance(Duration::from_millis(250));
        singleton.on_tick();
        standby.on_tick();
    }
    assert_eq!(
        host.calls.borrow().len(),
        calls,
        "the stand-by sends nothing"
    );
    assert!(!standby.active);

    // The singleton's VM dies: it ticks no more. Within the takeover delay and a
    // tick or two, the stand-by syncs in its place.
    let mut waited = Duration::ZERO;
    while standby.running.is_none() {
        host.advance(Duration::from_millis(250));
        standby.on_tick();
        waited += Duration::from_millis(250);
        assert!(waited < Duration::from_secs(7), "no takeover");
    }
    assert!(waited >= Duration::from_millis(TAKEOVER_AFTER_MS));
    assert!(logged_line("sync service taken over").is_some());
    let token = standby.running.as_ref().unwrap().token;
    let call = host
        .calls
        .borrow()
        .iter()
        .find(|c| c.token == token)
        .cloned()
        .unwrap();
    standby.on_response(token, page_for(&call, &[key(2)], 11));
    assert!(standby.store().find(&hash(2)).unwrap().is_some());
    assert!(standby.store().find(&hash(1)).unwrap().is_none());
    assert_eq!(host.metric(stats::SYNC_TAKEOVERS), Some(1));

    // A singleton that was only stalled comes back and stands down.
    singleton.on_tick();
    assert!(!singleton.active);
    assert!(logged_line("standing down").is_some());
}

#[test]
fn the_lookup_ledger_forgets_what_the_store_is_complete_past() {
    let mut service = running_with_stream("{\"role\":\"sync\"}", &[key(1)]);
    let lookup = |n: u8, revision: u64| crate::store::lookup_ledger::Lookup {
        hash: hash(n),
        epoch: EPOCH,
        revision,
        confirmed_at_ms: NOW_MS,
    };
    service.store().note_lookup(lookup(2, 9)).unwrap();
    service.store().note_lookup(lookup(3, 12)).unwrap();
    tick_after(&mut service, Duration::from_millis(250));
    let ledger = service.store().lookups();
    assert!(
        ledger.find(&hash(2)).is_none(),
        "covered by the refresh at 10"
    );
    assert!(ledger.find(&hash(3)).is_some(), "not yet");
    let token = stream_token(&service).unwrap();
    service.on_stream_message(token, changes(12, &[3], &[]));
    tick_after(&mut service, Duration::from_millis(250));
    assert!(
        service.store().lookups().is_empty(),
        "the stream brought 12"
    );
}
