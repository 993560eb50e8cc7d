//! The sync service's gateway reports: this Envoy's identity (instance id, mode,
//! version, host) and the store revision it serves (`served_revision`), sent to keysync
//! as a `ReportUsage` call that carries no counters, over the cluster the usage flushes
//! already use. keysync keeps them as the fleet (revocation receipts, `keysync
//! gateways`).
//!
//! A report goes when the served revision moves, so that a revocation is confirmed at
//! once, and otherwise every [`HEARTBEAT`], so that keysync can tell a live gateway from
//! a gone one. One call at a time: a revision that moves while one is in flight goes in
//! the next.

use std::time::Duration;

use keysync_contract::gateway_mode::GatewayMode;
use keysync_proto::v1 as proto;
use log::warn;

use crate::host::Host;
use crate::keysync_api::{self, Reply};
use crate::steady_clock::millis;

/// How often a gateway reports when nothing moved: well inside keysync's live window
/// (`KEYSYNC_GATEWAY_LIVE_WINDOW`, 30 s by default).
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Who this gateway is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayIdentity {
    pub mode: GatewayMode,
    /// The machine's name; empty when the host cannot tell (keysync then uses the
    /// address the report came from).
    pub host: String,
}

impl Default for GatewayIdentity {
    fn default() -> Self {
        GatewayIdentity {
            mode: GatewayMode::Wasm,
            host: String::new(),
        }
    }
}

pub struct GatewayReport {
    identity: GatewayIdentity,
    instance_id: [u8; 16],
    timeout: Duration,
    /// The (epoch, revision) keysync last acknowledged.
    reported: Option<(u64, u64)>,
    next_due_ms: u64,
    in_flight: Option<InFlight>,
}

struct InFlight {
    token: u32,
    sent_at_ms: u64,
    state: Option<(u64, u64)>,
}

impl GatewayReport {
    pub fn new(identity: GatewayIdentity, instance_id: [u8; 16], timeout: Duration) -> Self {
        GatewayReport {
            identity,
            instance_id,
            timeout,
            reported: None,
            next_due_ms: 0,
            in_flight: None,
        }
    }

    /// Sends a report when the served revision moved or the heartbeat is due; abandons a
    /// call nobody answers.
    pub fn on_tick<H: Host>(
        &mut self,
        host: &H,
        cluster: &str,
        now_ms: u64,
        served: Option<(u64, u64)>,
    ) {
        if let Some(in_flight) = &self.in_flight {
            let deadline = millis(self.timeout).saturating_mul(2);
            if now_ms.saturating_sub(in_flight.sent_at_ms) > deadline {
                host.cancel_grpc(in_flight.token);
                self.in_flight = None;
            }
            return;
        }
        if served == self.reported && now_ms < self.next_due_ms {
            return;
        }
        let (epoch, revision) = served.unwrap_or_default();
        let request = proto::ReportUsageRequest {
            instance_id: self.instance_id.to_vec(),
            cut_at_ms: i64::try_from(host.now_unix_ms()).unwrap_or(i64::MAX),
            gateway: Some(proto::GatewayState {
                mode: self.identity.mode.name().to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                host: self.identity.host.clone(),
                revision,
                epoch,
            }),
            ..proto::ReportUsageRequest::default()
        };
        match keysync_api::dispatch(
            host,
            cluster,
            keysync_api::REPORT_USAGE,
            &request,
            self.timeout,
        ) {
            Ok(token) => {
                self.in_flight = Some(InFlight {
                    token,
                    sent_at_ms: now_ms,
                    state: served,
                })
            }
            Err(e) => {
                warn!("cannot send the gateway report: {e}");
                self.next_due_ms = now_ms.saturating_add(millis(HEARTBEAT));
            }
        }
    }

    /// Whether `token` is this report's call.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.token == token)
    }

    /// keysync answered the call `token` (see `owns`).
    pub fn on_response(&mut self, now_ms: u64, token: u32, reply: Reply) {
        let Some(in_flight) = self.in_flight.take_if(|f| f.token == token) else {
            return;
        };
        self.next_due_ms = now_ms.saturating_add(millis(HEARTBEAT));
        match keysync_api::decode::<proto::ReportUsageResponse>(reply) {
            Ok(_) => self.reported = in_flight.state,
            // Sent again at the next heartbeat; the usage flushes log keysync's outages.
            Err(e) => log::debug!("gateway report failed: {e}"),
        }
    }

    /// Stops: another VM syncs now.
    pub fn stop<H: Host>(&mut self, host: &H) {
        if let Some(in_flight) = self.in_flight.take() {
            host.cancel_grpc(in_flight.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_host::FakeHost;
    use crate::keysync_api::ApiError;

    const TIMEOUT: Duration = Duration::from_secs(2);

    fn report() -> GatewayReport {
        let identity = GatewayIdentity {
            mode: GatewayMode::Native,
            host: "edge-1".into(),
        };
        GatewayReport::new(identity, [3; 16], TIMEOUT)
    }

    fn sent(host: &FakeHost) -> Vec<proto::ReportUsageRequest> {
        host.calls
            .borrow()
            .iter()
            .map(|call| call.decode())
            .collect()
    }

    fn answer(report: &mut GatewayReport, host: &FakeHost, now_ms: u64) {
        let token = host.last_call().expect("a call").token;
        let reply = prost::Message::encode_to_vec(&proto::ReportUsageResponse { accepted: 0 });
        report.on_response(now_ms, token, Ok(reply));
    }

    #[test]
    fn a_report_says_who_the_gateway_is_and_carries_no_usage() {
        let host = FakeHost::at(1_700_000_000_000);
        let mut report = report();
        report.on_tick(&host, "keysync", 0, Some((7, 42)));
        let sent = sent(&host);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].instance_id, vec![3; 16]);
        assert!(sent[0].counters.is_empty());
        assert_eq!(sent[0].unattributed_requests, 0);
        let gateway = sent[0].gateway.clone().expect("the gateway's state");
        assert_eq!(gateway.mode, "native");
        assert_eq!(gateway.host, "edge-1");
        assert_eq!(gateway.version, env!("CARGO_PKG_VERSION"));
        assert_eq!((gateway.epoch, gateway.revision), (7, 42));
        assert_eq!(host.last_call().unwrap().timeout, Some(TIMEOUT));
    }

    #[test]
    fn a_moved_revision_goes_at_once_and_a_still_one_at_the_heartbeat() {
        let host = FakeHost::at(1_700_000_000_000);
        let mut report = report();
        report.on_tick(&host, "keysync", 0, Some((7, 1)));
        report.on_tick(&host, "keysync", 100, Some((7, 2)));
        assert_eq!(sent(&host).len(), 1, "one call at a time");
        answer(&mut report, &host, 100);
        report.on_tick(&host, "keysync", 250, Some((7, 2)));
        assert_eq!(sent(&host).len(), 2, "the revision moved while in flight");
        answer(&mut report, &host, 250);
        report.on_tick(&host, "keysync", 500, Some((7, 2)));
        report.on_tick(&host, "keysync", 1_249, Some((7, 2)));
        assert_eq!(sent(&host).len(), 2, "nothing moved");
        report.on_tick(&host, "keysync", 1_250, Some((7, 2)));
        assert_eq!(sent(&host).len(), 3, "the heartbeat");
        assert_eq!(sent(&host)[2].gateway.as_ref().unwrap().revision, 2);
    }

    #[test]
    fn a_failed_report_is_sent_again_and_an_unanswered_one_abandoned() {
        let host = FakeHost::at(1_700_000_000_000);
        let mut report = report();
        report.on_tick(&host, "keysync", 0, Some((7, 1)));
        let token = host.last_call().unwrap().token;
        assert!(report.owns(token));
        report.on_response(10, token, Err(ApiError::Grpc(14, "unavailable".into())));
        assert!(!report.owns(token));
        report.on_tick(&host, "keysync", 500, Some((7, 1)));
        assert_eq!(sent(&host).len(), 2, "not acknowledged: sent again");
        let token = host.last_call().unwrap().token;
        report.on_tick(&host, "keysync", 4_500, Some((7, 1)));
        assert!(host.cancelled.borrow().is_empty());
        report.on_tick(&host, "keysync", 4_501, Some((7, 1)));
        assert_eq!(*host.cancelled.borrow(), [token]);
    }
}
