//! The usage reports the sync service sends (`ReportUsage`), driven through the service.

use super::*;
use crate::host::fake_log::logged_line;
use crate::keysync_api::ApiError;
use crate::stats;
use crate::usage::counters::{self, Counts, Tally, UsageKey};
use crate::usage::endpoints::{EndpointCode, LocalEndpoint};
use crate::usage::metering::Meta;
use keysync_contract::usage_outcome::Outcome;

fn usage_key(n: u16, outcome: Outcome) -> UsageKey<LocalEndpoint> {
    let mut key = [0u8; 16];
    key[..2].copy_from_slice(&n.to_le_bytes());
    UsageKey {
        org: keysync_contract::id::Id([0xab; 16]),
        key: keysync_contract::id::Id(key),
        endpoint: LocalEndpoint::Code(EndpointCode::NO_NAME),
        outcome,
    }
}

/// A worker's tick adds `requests` requests of each of `keys`, and one unattributed.
fn worker_counts(host: &FakeHost, keys: std::ops::Range<u16>, requests: u64) {
    let mut tally = Tally::default();
    for n in keys {
        for _ in 0..requests {
            tally.record(
                usage_key(n, Outcome::Status2xx),
                Counts::one(Some(20_000), 10, 20),
            );
        }
    }
    tally.unattributed();
    counters::merge(host, &mut tally);
}

fn usage_calls(service: &SyncService<FakeHost>) -> Vec<Call> {
    service
        .host
        .calls
        .borrow()
        .iter()
        .filter(|c| is_usage_flush(c))
        .cloned()
        .collect()
}

/// A `ReportUsage` call that is a usage flush, not a gateway report.
fn is_usage_flush(call: &Call) -> bool {
    call.method == keysync_api::REPORT_USAGE
        && call.decode::<proto::ReportUsageRequest>().gateway.is_none()
}

fn usage_ok(accepted: u32) -> Reply {
    Ok(prost::Message::encode_to_vec(&proto::ReportUsageResponse {
        accepted,
    }))
}

/// Lets the flush interval pass, keysync answering the refresh.
fn until_flush(service: &mut SyncService<FakeHost>) -> Call {
    let before = usage_calls(service).len();
    for _ in 0..100 {
        serve_refresh(service, &[key(1)], 10);
        tick_after(service, Duration::from_secs(1));
        if let Some(call) = usage_calls(service).get(before) {
            return call.clone();
        }
    }
    panic!("no usage flush");
}

#[test]
fn the_flush_reports_cumulative_counters_and_totals() {
    let mut service = service(r#"{"role":"sync"}"#);
    service.on_tick();
    worker_counts(&service.host, 0..3, 2);
    let call = until_flush(&mut service);
    assert_eq!(call.cluster, "keysync");
    let request: proto::ReportUsageRequest = call.decode();
    let meta = Meta::read(&service.host).unwrap();
    assert!(meta.enabled);
    assert_eq!(request.instance_id, meta.instance_id.to_vec());
    assert_eq!(request.instance_id.len(), 16);
    assert!(request.cut_at_ms >= i64::try_from(NOW_MS).unwrap() + 10_000);
    assert_eq!(request.counters.len(), 3);
    let counter = &request.counters[0];
    assert_eq!(counter.org_id, vec![0xab; 16]);
    assert_eq!(counter.outcome, 2);
    assert_eq!(counter.requests, 2);
    assert_eq!(counter.duration_us, 40_000);
    assert_eq!(counter.duration_buckets, [0, 2, 0, 0]);
    assert_eq!((counter.request_bytes, counter.response_bytes), (20, 40));
    assert_eq!(request.unattributed_requests, 1);
    assert_eq!(request.dropped_requests, 0);
    service.on_response(call.token, usage_ok(3));
    assert_eq!(service.host.metric(stats::USAGE_FLUSHES_OK), Some(1));

    // Counters only grow: the next flush carries the new totals, not the increments.
    worker_counts(&service.host, 0..1, 5);
    let call = until_flush(&mut service);
    let request: proto::ReportUsageRequest = call.decode();
    let first = request
        .counters
        .iter()
        .find(|c| c.key_id == usage_key(0, Outcome::Status2xx).key.0.to_vec())
        .unwrap();
    assert_eq!(first.requests, 7);
    assert_eq!(request.unattributed_requests, 2);
}

#[test]
fn a_failed_flush_is_retried_at_the_next_interval_with_the_newer_totals() {
    let mut service = service(r#"{"role":"sync","usage_flush_interval":"10s"}"#);
    service.on_tick();
    worker_counts(&service.host, 0..1, 1);
    let call = until_flush(&mut service);
    let sent_at = service.host.now_ms.get();
    service.on_response(call.token, Err(ApiError::Grpc(14, "unavailable".into())));
    assert_eq!(service.host.metric(stats::USAGE_FLUSH_FAILED), Some(1));
    assert!(logged_line("usage flush failed").is_some());
    worker_counts(&service.host, 0..1, 1);
    let retry = until_flush(&mut service);
    assert!(
        service.host.now_ms.get() >= sent_at + 10_000,
        "not before the next interval"
    );
    let request: proto::ReportUsageRequest = retry.decode();
    assert_eq!(request.counters[0].requests, 2, "nothing lost");
    assert_eq!(request.unattributed_requests, 2);

    // A call nobody answers is abandoned and counted as failed.
    for _ in 0..25 {
        tick_after(&mut service, Duration::from_secs(1));
    }
    assert!(service.host.cancelled.borrow().contains(&retry.token));
    assert_eq!(service.host.metric(stats::USAGE_FLUSH_FAILED), Some(2));
}

#[test]
fn a_large_flush_is_sent_as_several_complete_calls() {
    let mut service = service(r#"{"role":"sync"}"#);
    service.on_tick();
    service.usage.as_mut().unwrap().set_max_per_call(50);
    worker_counts(&service.host, 0..200, 1);
    let first = until_flush(&mut service);
    let mut calls = vec![first];
    loop {
        let last = calls.last().unwrap().clone();
        service.on_response(last.token, usage_ok(1));
        let all = usage_calls(&service);
        if all.len() == calls.len() {
            break;
        }
        calls.push(all.last().unwrap().clone());
    }
    assert!(calls.len() >= 4, "{} calls", calls.len());
    let requests: Vec<proto::ReportUsageRequest> = calls.iter().map(Call::decode).collect();
    assert!(requests.iter().all(|r| r.counters.len() <= 50));
    assert!(requests
        .iter()
        .all(|r| r.cut_at_ms == requests[0].cut_at_ms));
    assert!(requests.iter().all(|r| r.unattributed_requests == 1));
    let mut keys: Vec<Vec<u8>> = requests
        .iter()
        .flat_map(|r| r.counters.iter().map(|c| c.key_id.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 200, "every counter, once");
    assert_eq!(service.host.metric(stats::USAGE_FLUSHES_OK), Some(1));
}

#[test]
fn nothing_counted_nothing_sent() {
    let mut service = service(r#"{"role":"sync"}"#);
    service.on_tick();
    for _ in 0..30 {
        serve_refresh(&mut service, &[key(1)], 10);
        tick_after(&mut service, Duration::from_secs(1));
    }
    assert!(usage_calls(&service).is_empty());
}

#[test]
fn metering_off_sends_nothing_and_tells_the_workers() {
    let mut service = service(r#"{"role":"sync","usage_flush_interval":"off"}"#);
    service.on_tick();
    worker_counts(&service.host, 0..3, 1);
    for _ in 0..30 {
        serve_refresh(&mut service, &[key(1)], 10);
        tick_after(&mut service, Duration::from_secs(1));
    }
    assert!(usage_calls(&service).is_empty());
    assert!(!Meta::read(&service.host).unwrap().enabled);
    assert!(
        service.host.shared.value(&counters::slot_name(0)).is_none(),
        "no slots either"
    );
}

#[test]
fn a_reloaded_vm_is_the_same_instance_with_the_same_counters() {
    let host = FakeHost::at(NOW_MS);
    let PluginConfig::Sync(config) = PluginConfig::parse(br#"{"role":"sync"}"#).unwrap() else {
        panic!("sync");
    };
    let mut first = SyncService::singleton(&host, config.clone(), b"");
    first.on_tick();
    worker_counts(&host, 0..1, 3);
    let instance = Meta::read(&host).unwrap().instance_id;
    // The VM crashes (FAIL_RELOAD): a new one, with new memory, same shared data.
    drop(first);
    let mut reloaded = SyncService::singleton(&host, config, b"");
    let mut call = None;
    for _ in 0..40 {
        host.advance(Duration::from_secs(1));
        reloaded.on_tick();
        if let Some(running) = &reloaded.running {
            let token = running.token;
            let page = host
                .calls
                .borrow()
                .iter()
                .find(|c| c.token == token)
                .cloned();
            if let Some(page) = page {
                reloaded.on_response(token, page_for(&page, &[key(1)], 10));
            }
        }
        call = host
            .calls
            .borrow()
            .iter()
            .find(|c| is_usage_flush(c))
            .cloned();
        if call.is_some() {
            break;
        }
    }
    let request: proto::ReportUsageRequest = call.expect("a flush").decode();
    assert_eq!(request.instance_id, instance.to_vec());
    assert_eq!(request.counters[0].requests, 3);
}
