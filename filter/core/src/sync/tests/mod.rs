//! The sync service's transitions, driven tick by tick against a fake host: the key
//! store's sync (`keys`) and the usage reports it sends (`usage_reports`).

mod gateway_reports;
mod keys;
mod usage_reports;

use crate::config::PluginConfig;
use crate::host::fake_host::{Call, FakeHost};
use crate::keysync_api::{self, Reply};
use crate::sync::service::{Stream, SyncService};
use keysync_contract::key_hash::KeyHash;
use keysync_proto::v1 as proto;
use std::time::Duration;

const NOW_MS: u64 = 1_700_000_000_000;
const EPOCH: u64 = 0xe90c;

/// What a healthy keysync says of its data: confirmed 300 ms ago.
fn fresh() -> Option<proto::Provenance> {
    Some(proto::Provenance {
        epoch: EPOCH,
        confirmed_age_ms: 300,
    })
}

fn service(config: &str) -> SyncService<FakeHost> {
    let PluginConfig::Sync(config) = PluginConfig::parse(config.as_bytes()).unwrap() else {
        panic!("not a sync configuration: {config}");
    };
    SyncService::singleton(FakeHost::at(NOW_MS), config, b"")
}

fn key(n: u8) -> proto::KeyRecord {
    proto::KeyRecord {
        key_hash: KeyHash::of_key(&[n]).0.to_vec(),
        key_id: vec![n; 16],
        org_id: vec![0xab; 16],
        expires_at: 0,
        rate_limit: None,
        ..Default::default()
    }
}

fn hash(n: u8) -> KeyHash {
    KeyHash::of_key(&[n])
}

fn known(service: &SyncService<FakeHost>, n: u8) -> bool {
    service.store().find(&hash(n)).unwrap().is_some()
}

/// keysync's answer to a `ListKeys` call: `keys` sorted by hash, in pages as asked.
fn page_for(call: &Call, keys: &[proto::KeyRecord], revision: u64) -> Reply {
    let request: proto::ListKeysRequest = call.decode();
    let mut sorted = keys.to_vec();
    sorted.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
    let rest: Vec<_> = sorted
        .into_iter()
        .filter(|k| k.key_hash > request.after_hash)
        .collect();
    let size = request.page_size as usize;
    Ok(prost::Message::encode_to_vec(&proto::ListKeysResponse {
        more: rest.len() > size,
        keys: rest.into_iter().take(size).collect(),
        revision,
        provenance: fresh(),
    }))
}

/// The last `ListKeys` call (quota polls go out beside them).
fn last_list_call(service: &SyncService<FakeHost>) -> Option<Call> {
    let calls = service.host.calls.borrow();
    calls
        .iter()
        .rev()
        .find(|c| c.method == keysync_api::LIST_KEYS)
        .cloned()
}

fn list_calls(service: &SyncService<FakeHost>) -> usize {
    service
        .host
        .calls
        .borrow()
        .iter()
        .filter(|c| c.method == keysync_api::LIST_KEYS)
        .count()
}

/// Answers `ListKeys` calls until the refresh in progress completes.
fn serve_refresh(service: &mut SyncService<FakeHost>, keys: &[proto::KeyRecord], revision: u64) {
    for _ in 0..100 {
        let Some(running) = &service.running else {
            return;
        };
        let token = running.token;
        let call = service
            .host
            .calls
            .borrow()
            .iter()
            .find(|c| c.token == token)
            .cloned()
            .unwrap();
        service.on_response(token, page_for(&call, keys, revision));
    }
    panic!("the refresh never completed");
}

fn tick_after(service: &mut SyncService<FakeHost>, by: Duration) {
    service.host.advance(by);
    service.on_tick();
}

/// Lets `by` pass in 5 s ticks while keysync heartbeats, as it does on a quiet stream.
fn quiet_for(service: &mut SyncService<FakeHost>, by: Duration) {
    let mut passed = Duration::ZERO;
    while passed < by {
        if let Some(token) = stream_token(service) {
            let revision = service.complete.unwrap_or(0);
            service.on_stream_message(token, changes(revision, &[], &[]));
        }
        tick_after(service, Duration::from_secs(5));
        passed += Duration::from_secs(5);
    }
}

fn stream_token(service: &SyncService<FakeHost>) -> Option<u32> {
    match service.stream {
        Stream::Open { token, .. } => Some(token),
        Stream::Down { .. } => None,
    }
}

fn changes(revision: u64, upserts: &[u8], removals: &[u8]) -> Reply {
    Ok(prost::Message::encode_to_vec(&proto::KeyChanges {
        revision,
        upserts: upserts.iter().map(|n| key(*n)).collect(),
        removals: removals.iter().map(|n| hash(*n).0.to_vec()).collect(),
        resync_required: false,
        partial: false,
        provenance: fresh(),
    }))
}

fn partial(revision: u64, upserts: &[u8]) -> Reply {
    let mut message: proto::KeyChanges =
        prost::Message::decode(changes(revision, upserts, &[]).unwrap().as_slice()).unwrap();
    message.partial = true;
    Ok(prost::Message::encode_to_vec(&message))
}

/// A service that completed its first refresh at revision 10 and whose stream is up.
fn running_with_stream(config: &str, keys: &[proto::KeyRecord]) -> SyncService<FakeHost> {
    let mut service = service(config);
    service.on_tick();
    serve_refresh(&mut service, keys, 10);
    let token = stream_token(&service).expect("the stream opens after the refresh");
    service.on_stream_message(token, changes(10, &[], &[]));
    assert!(service.stream_connected());
    service
}
