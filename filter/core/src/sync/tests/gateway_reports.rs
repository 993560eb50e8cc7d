//! The gateway reports the sync service sends (the revision every worker serves),
//! driven through the service.

use super::*;
use crate::sync::gateway_report::GatewayIdentity;
use crate::usage::metering::Meta;
use keysync_contract::gateway_mode::GatewayMode;

/// The gateway reports sent so far, oldest first.
fn reports(service: &SyncService<FakeHost>) -> Vec<(u32, proto::GatewayState)> {
    service
        .host
        .calls
        .borrow()
        .iter()
        .filter(|c| c.method == keysync_api::REPORT_USAGE)
        .filter_map(|c| {
            let request: proto::ReportUsageRequest = c.decode();
            Some((c.token, request.gateway?))
        })
        .collect()
}

/// keysync acknowledges the last report.
fn acknowledge(service: &mut SyncService<FakeHost>) {
    if let Some((token, _)) = reports(service).last() {
        let reply = prost::Message::encode_to_vec(&proto::ReportUsageResponse { accepted: 0 });
        service.on_response(*token, Ok(reply));
    }
}

fn last_revision(service: &SyncService<FakeHost>) -> Option<u64> {
    reports(service).last().map(|(_, gateway)| gateway.revision)
}

#[test]
fn a_revocation_is_reported_served_only_after_every_worker_ticked_past_it() {
    let mut service = running_with_stream(r#"{"role":"sync"}"#, &[key(1), key(2)]);
    for _ in 0..4 {
        tick_after(&mut service, Duration::from_millis(250));
        acknowledge(&mut service);
    }
    assert_eq!(last_revision(&service), Some(10));
    let token = stream_token(&service).unwrap();
    service.on_stream_message(token, changes(11, &[], &[1]));
    assert!(!known(&service, 1), "the store has the revocation");
    // The tick that samples revision 11, then one worker tick: not yet.
    tick_after(&mut service, Duration::from_millis(250));
    acknowledge(&mut service);
    tick_after(&mut service, Duration::from_millis(250));
    acknowledge(&mut service);
    assert_eq!(last_revision(&service), Some(10));
    tick_after(&mut service, Duration::from_millis(250));
    assert_eq!(last_revision(&service), Some(11), "two worker ticks after");
    let (_, gateway) = reports(&service).pop().unwrap();
    assert_eq!(gateway.mode, "wasm");
    assert_eq!(gateway.epoch, EPOCH);
}

#[test]
fn the_report_names_the_usage_instance_and_the_mode_it_was_given() {
    let identity = GatewayIdentity {
        mode: GatewayMode::Native,
        host: "edge-7".into(),
    };
    let mut service =
        service(r#"{"role":"sync","usage_flush_interval":"off"}"#).reporting_as(identity);
    service.on_tick();
    serve_refresh(&mut service, &[key(1)], 10);
    tick_after(&mut service, Duration::from_millis(250));
    let calls = service.host.calls.borrow().clone();
    let request: proto::ReportUsageRequest = calls
        .iter()
        .rev()
        .find(|c| c.method == keysync_api::REPORT_USAGE)
        .expect("a report, metering off or not")
        .decode();
    let instance = Meta::read(&service.host).unwrap().instance_id;
    assert_eq!(request.instance_id, instance.to_vec());
    let gateway = request.gateway.unwrap();
    assert_eq!(
        (gateway.mode.as_str(), gateway.host.as_str()),
        ("native", "edge-7")
    );
}
