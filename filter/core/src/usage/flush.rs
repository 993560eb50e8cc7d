//! The sync service's half of usage metering: every `usage_flush_interval` it reads the
//! cumulative counters the workers merged into shared data (see `usage::counters`) and
//! reports them to keysync with `ReportUsage`.
//!
//! Reports are idempotent: the counters only grow for the life of the instance, and
//! keysync adds the difference from what it stored last. So a failed flush (keysync
//! down, a timeout) is simply not retried until the next interval, which then carries
//! the newer totals; nothing is lost while Envoy lives. A flush larger than
//! [`MAX_COUNTERS_PER_CALL`] is sent as several calls, one after the other, each over a
//! range of slots read just before it is sent and complete for its counters.

use crate::host::Host;
use crate::keysync_api::{self, Reply};
use crate::stats::Stat;
use crate::steady_clock::millis;
use crate::usage::counters::{self, Totals, SLOTS};
use crate::usage::endpoints;
use crate::usage::metering::Meta;
use keysync_proto::v1 as proto;
use log::{info, warn};
use std::time::Duration;

/// Counters per `ReportUsage` call: about 2.5 MB of protobuf, well under the 16 MiB
/// gRPC message limit.
pub const MAX_COUNTERS_PER_CALL: usize = 20_000;

pub struct UsageFlush {
    interval: Duration,
    timeout: Duration,
    max_per_call: usize,
    instance_id: [u8; 16],
    next_due_ms: u64,
    in_flight: Option<InFlight>,
    ok: Stat,
    failed: Stat,
}

struct InFlight {
    token: u32,
    sent_at_ms: u64,
    /// The first slot the next call of this flush reads.
    next_slot: u16,
    cut_at_ms: i64,
    calls: u32,
    counters: usize,
}

impl UsageFlush {
    /// The VM now syncs: makes sure the slots exist and the instance has an id, reusing
    /// the one in shared data (a reloaded VM or a stand-by taking over is the same
    /// instance, with the same counters). `interval` `None` turns metering off for the
    /// workers too. Returns the flusher when metering is on.
    pub fn start<H: Host>(
        host: &H,
        interval: Option<Duration>,
        timeout: Duration,
        now_ms: u64,
        stats: (Stat, Stat),
    ) -> Option<UsageFlush> {
        let existing = Meta::read(host);
        let instance_id = existing.map_or_else(|| new_instance_id(host), |meta| meta.instance_id);
        let enabled = interval.is_some();
        if enabled {
            // Before the meta says "on": workers merge only once it does.
            if let Err(e) = counters::ensure_slots(host) {
                warn!("cannot create the usage counters: {e:?}; usage is not counted");
                return None;
            }
        }
        let meta = Meta {
            enabled,
            instance_id,
        };
        if existing != Some(meta) {
            if let Err(e) = meta.write(host) {
                warn!("cannot write the usage metering settings: {e:?}");
            }
        }
        let interval = interval?;
        info!(
            "usage metering on: instance {}, flushed every {}s",
            hex(&instance_id),
            interval.as_secs()
        );
        Some(UsageFlush {
            interval,
            timeout,
            max_per_call: MAX_COUNTERS_PER_CALL,
            instance_id,
            next_due_ms: now_ms.saturating_add(millis(interval)),
            in_flight: None,
            ok: stats.0,
            failed: stats.1,
        })
    }

    /// The instance's id: quota leases are reconciled with its flushes.
    pub fn instance_id(&self) -> [u8; 16] {
        self.instance_id
    }

    #[cfg(test)]
    pub fn set_max_per_call(&mut self, max: usize) {
        self.max_per_call = max;
    }

    /// Starts a flush when one is due; abandons a call nobody answers.
    pub fn on_tick<H: Host>(&mut self, host: &H, cluster: &str, now_ms: u64) {
        if let Some(in_flight) = &self.in_flight {
            // Envoy answers every call, if only with a timeout; this is a last resort.
            let deadline = millis(self.timeout).saturating_mul(2);
            if now_ms.saturating_sub(in_flight.sent_at_ms) > deadline {
                let token = in_flight.token;
                host.cancel_grpc(token);
                self.failed(host, now_ms, "no answer from keysync");
            }
            return;
        }
        if now_ms < self.next_due_ms {
            return;
        }
        // The wall clock: the hour keysync counts the increments in.
        let cut_at_ms = i64::try_from(host.now_unix_ms()).unwrap_or(i64::MAX);
        self.send(host, cluster, now_ms, 0, cut_at_ms, 0, 0);
    }

    /// Whether `token` is this flush's call.
    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.token == token)
    }

    /// keysync answered the call `token` (see `owns`): sends the next part, or ends.
    pub fn on_response<H: Host>(
        &mut self,
        host: &H,
        cluster: &str,
        now_ms: u64,
        token: u32,
        reply: Reply,
    ) {
        let Some(in_flight) = self.in_flight.take_if(|f| f.token == token) else {
            return;
        };
        if let Err(e) = keysync_api::decode::<proto::ReportUsageResponse>(reply) {
            return self.failed(host, now_ms, &e.to_string());
        }
        if in_flight.next_slot < SLOTS {
            return self.send(
                host,
                cluster,
                now_ms,
                in_flight.next_slot,
                in_flight.cut_at_ms,
                in_flight.calls,
                in_flight.counters,
            );
        }
        self.ok.add(host, 1);
        info!(
            "usage flushed: {} counters in {} call(s)",
            in_flight.counters, in_flight.calls
        );
        self.next_due_ms = now_ms.saturating_add(millis(self.interval));
    }

    /// Stops: another VM syncs now.
    pub fn stop<H: Host>(&mut self, host: &H) {
        if let Some(in_flight) = self.in_flight.take() {
            host.cancel_grpc(in_flight.token);
        }
    }

    /// Sends the part of the flush starting at slot `from`, or ends the flush when
    /// there is nothing left to send.
    #[allow(clippy::too_many_arguments)]
    fn send<H: Host>(
        &mut self,
        host: &H,
        cluster: &str,
        now_ms: u64,
        from: u16,
        cut_at_ms: i64,
        calls: u32,
        counters: usize,
    ) {
        let (request, next_slot) = self.read_part(host, from, cut_at_ms);
        let first = calls == 0;
        let nothing = request.counters.is_empty()
            && (!first || (request.unattributed_requests == 0 && request.dropped_requests == 0));
        if nothing {
            if !first {
                self.ok.add(host, 1);
                info!("usage flushed: {counters} counters in {calls} call(s)");
            }
            self.in_flight = None;
            self.next_due_ms = now_ms.saturating_add(millis(self.interval));
            return;
        }
        let sent = request.counters.len();
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
                    next_slot,
                    cut_at_ms,
                    calls: calls.saturating_add(1),
                    counters: counters.saturating_add(sent),
                })
            }
            Err(e) => self.failed(host, now_ms, &e.to_string()),
        }
    }

    /// Reads slots from `from` on until the next would make the call too large.
    fn read_part<H: Host>(
        &self,
        host: &H,
        from: u16,
        cut_at_ms: i64,
    ) -> (proto::ReportUsageRequest, u16) {
        let mut read = Vec::new();
        let mut slot = from;
        while slot < SLOTS {
            let value = host.get(&counters::slot_name(slot)).value;
            let in_slot = value
                .as_deref()
                .map(counters::decode_slot)
                .unwrap_or_default();
            if !read.is_empty() && read.len() + in_slot.len() > self.max_per_call {
                break;
            }
            read.extend(in_slot);
            slot += 1;
        }
        // Read after the slots: the table only grows, so it names every endpoint they
        // hold. A code it does not have (an entry nobody of ours wrote) is left out.
        let table = endpoints::read_table(host);
        let counters = read
            .into_iter()
            .filter_map(|(key, counts)| {
                Some(proto::UsageCounter {
                    org_id: key.org.0.to_vec(),
                    key_id: key.key.0.to_vec(),
                    outcome: u32::from(key.outcome.code()),
                    requests: counts.requests,
                    duration_us: counts.duration_us,
                    duration_buckets: counts.buckets.to_vec(),
                    request_bytes: counts.request_bytes,
                    response_bytes: counts.response_bytes,
                    endpoint: key.endpoint.name(&table)?.to_string(),
                })
            })
            .collect();
        // Every part carries the totals: cumulative, so keysync counts them once.
        let totals = Totals::read(host);
        let request = proto::ReportUsageRequest {
            instance_id: self.instance_id.to_vec(),
            cut_at_ms,
            counters,
            unattributed_requests: totals.unattributed,
            dropped_requests: totals.dropped,
            gateway: None,
        };
        (request, slot)
    }

    fn failed<H: Host>(&mut self, host: &H, now_ms: u64, reason: &str) {
        self.in_flight = None;
        self.failed.add(host, 1);
        warn!(
            "usage flush failed: {reason}; the totals go with the next flush in {}s",
            self.interval.as_secs()
        );
        self.next_due_ms = now_ms.saturating_add(millis(self.interval));
    }
}

/// A fresh random instance id (16 bytes).
pub fn new_instance_id<H: Host>(host: &H) -> [u8; 16] {
    let high = u128::from(host.random_u64()) << 64;
    (high | u128::from(host.random_u64())).to_le_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    //! The flusher on its own, against a fake host: no sync service around it.

    use super::*;
    use crate::host::fake_host::FakeHost;
    use crate::host::fake_log::logged_line;
    use crate::host::MetricKind;
    use crate::keysync_api::ApiError;
    use crate::usage::counters::{Counts, Tally, UsageKey};
    use crate::usage::endpoints::{EndpointCode, LocalEndpoint};
    use keysync_contract::id::Id;
    use keysync_contract::usage_outcome::Outcome;

    const NOW_MS: u64 = 1_700_000_000_000;
    const INTERVAL: Duration = Duration::from_secs(10);
    const TIMEOUT: Duration = Duration::from_secs(2);

    fn stats(host: &FakeHost) -> (Stat, Stat) {
        (
            Stat::define(host, MetricKind::Counter, "ok"),
            Stat::define(host, MetricKind::Counter, "failed"),
        )
    }

    fn start(host: &FakeHost, interval: Option<Duration>) -> Option<UsageFlush> {
        UsageFlush::start(host, interval, TIMEOUT, 0, stats(host))
    }

    /// A worker's tick merges one request of each key `0..keys` into the slots.
    fn counted(host: &FakeHost, keys: u16) {
        let mut tally = Tally::default();
        for n in 0..keys {
            let mut id = [0u8; 16];
            id[..2].copy_from_slice(&n.to_le_bytes());
            let key = UsageKey {
                org: Id([0xab; 16]),
                key: Id(id),
                endpoint: LocalEndpoint::Code(EndpointCode::NO_NAME),
                outcome: Outcome::Status2xx,
            };
            tally.record(key, Counts::one(None, 1, 2));
        }
        tally.unattributed();
        counters::merge(host, &mut tally);
    }

    fn reports(host: &FakeHost) -> Vec<proto::ReportUsageRequest> {
        host.calls
            .borrow()
            .iter()
            .map(|call| call.decode())
            .collect()
    }

    fn answer(flush: &mut UsageFlush, host: &FakeHost, now_ms: u64) {
        let token = host.last_call().expect("a call").token;
        let reply = prost::Message::encode_to_vec(&proto::ReportUsageResponse { accepted: 1 });
        flush.on_response(host, "keysync", now_ms, token, Ok(reply));
    }

    #[test]
    fn starting_makes_the_slots_and_an_instance_that_outlives_the_vm() {
        let host = FakeHost::at(NOW_MS);
        let flush = start(&host, Some(INTERVAL)).expect("metering on");
        let meta = Meta::read(&host).unwrap();
        assert!(meta.enabled);
        assert_eq!(meta.instance_id, flush.instance_id());
        assert!(host.shared.value(&counters::slot_name(SLOTS - 1)).is_some());
        assert!(host.shared.value(counters::TOTALS_ENTRY).is_some());
        assert!(logged_line("usage metering on: instance").is_some());
        // A reloaded VM, or a stand-by taking over: the same instance.
        let again = start(&host, Some(INTERVAL)).unwrap();
        assert_eq!(again.instance_id(), flush.instance_id());
    }

    #[test]
    fn metering_off_tells_the_workers_and_flushes_nothing() {
        let host = FakeHost::at(NOW_MS);
        assert!(start(&host, None).is_none());
        assert_eq!(Meta::read(&host).map(|meta| meta.enabled), Some(false));
        assert!(
            host.shared.value(&counters::slot_name(0)).is_none(),
            "no slots"
        );
        assert!(host.calls.borrow().is_empty());
    }

    #[test]
    fn a_flush_is_due_each_interval_and_only_with_something_to_report() {
        let host = FakeHost::at(NOW_MS);
        let mut flush = start(&host, Some(INTERVAL)).unwrap();
        flush.on_tick(&host, "keysync", 9_999);
        flush.on_tick(&host, "keysync", 10_000);
        assert!(
            host.calls.borrow().is_empty(),
            "nothing counted, nothing sent"
        );
        counted(&host, 3);
        flush.on_tick(&host, "keysync", 15_000);
        assert!(
            host.calls.borrow().is_empty(),
            "not before the next interval"
        );
        flush.on_tick(&host, "keysync", 20_000);
        let sent = reports(&host);
        assert_eq!(sent.len(), 1);
        let report = &sent[0];
        assert_eq!(report.instance_id, flush.instance_id().to_vec());
        assert_eq!(
            report.cut_at_ms,
            i64::try_from(NOW_MS).unwrap(),
            "the wall clock"
        );
        assert_eq!(report.counters.len(), 3);
        assert_eq!(report.counters[0].outcome, 2);
        assert_eq!(report.unattributed_requests, 1);
        assert_eq!(host.last_call().unwrap().timeout, Some(TIMEOUT));
        assert!(flush.owns(host.last_call().unwrap().token));
        assert!(!flush.owns(host.last_call().unwrap().token + 1));
        answer(&mut flush, &host, 20_100);
        assert_eq!(host.metric("ok"), Some(1));
        assert!(logged_line("usage flushed: 3 counters in 1 call(s)").is_some());
    }

    #[test]
    fn each_counter_is_reported_with_its_endpoints_name() {
        let host = FakeHost::at(NOW_MS);
        let mut flush = start(&host, Some(INTERVAL)).unwrap();
        let mut tally = Tally::default();
        for name in [
            Some(&b"orders"[..]),
            None,
            Some(b"search"),
            Some(b"bad name"),
        ] {
            let endpoint = tally.endpoints.of(name);
            let key = UsageKey {
                org: Id([0xab; 16]),
                key: Id([1; 16]),
                endpoint,
                outcome: Outcome::Status2xx,
            };
            tally.record(key, Counts::one(None, 0, 0));
        }
        counters::merge(&host, &mut tally);
        flush.on_tick(&host, "keysync", 10_000);
        let mut endpoints: Vec<(String, u64)> = reports(&host)[0]
            .counters
            .iter()
            .map(|counter| (counter.endpoint.clone(), counter.requests))
            .collect();
        endpoints.sort();
        assert_eq!(
            endpoints,
            [
                ("(other)".to_string(), 1),
                ("-".to_string(), 1),
                ("orders".to_string(), 1),
                ("search".to_string(), 1)
            ]
        );
    }

    #[test]
    fn a_large_flush_goes_in_parts_each_read_just_before_it_is_sent() {
        let host = FakeHost::at(NOW_MS);
        let mut flush = start(&host, Some(INTERVAL)).unwrap();
        flush.set_max_per_call(10);
        counted(&host, 40);
        flush.on_tick(&host, "keysync", 10_000);
        let mut parts = 1;
        // A worker counts more while the flush is under way: a later part carries it.
        counted(&host, 40);
        while host.calls.borrow().len() == parts {
            answer(&mut flush, &host, 10_000);
            parts += 1;
        }
        let sent = reports(&host);
        assert_eq!(sent.len(), parts - 1, "one call a part, one at a time");
        assert!(sent.len() >= 4);
        assert!(sent.iter().all(|report| report.counters.len() <= 10));
        assert!(sent
            .iter()
            .all(|report| report.cut_at_ms == sent[0].cut_at_ms));
        let total: u64 = sent
            .iter()
            .flat_map(|report| &report.counters)
            .map(|counter| counter.requests)
            .sum();
        assert!(
            total > 40,
            "the later counts reached the parts read after them"
        );
        assert_eq!(host.metric("ok"), Some(1), "one flush");
    }

    #[test]
    fn a_failed_or_unanswered_call_waits_for_the_next_interval() {
        let host = FakeHost::at(NOW_MS);
        let mut flush = start(&host, Some(INTERVAL)).unwrap();
        counted(&host, 1);
        flush.on_tick(&host, "keysync", 10_000);
        let token = host.last_call().unwrap().token;
        flush.on_response(
            &host,
            "keysync",
            10_050,
            token,
            Err(ApiError::Grpc(14, "unavailable".into())),
        );
        assert_eq!(host.metric("failed"), Some(1));
        assert!(!flush.owns(token));
        flush.on_tick(&host, "keysync", 20_000);
        assert_eq!(host.calls.borrow().len(), 1, "not before the next interval");
        flush.on_tick(&host, "keysync", 20_050);
        assert_eq!(host.calls.borrow().len(), 2);
        // Nobody answers: abandoned after twice the timeout, and counted.
        let token = host.last_call().unwrap().token;
        flush.on_tick(&host, "keysync", 24_050);
        assert!(host.cancelled.borrow().is_empty(), "not yet");
        flush.on_tick(&host, "keysync", 24_051);
        assert_eq!(*host.cancelled.borrow(), [token]);
        assert_eq!(host.metric("failed"), Some(2));
        assert!(logged_line("usage flush failed: no answer from keysync").is_some());
    }

    #[test]
    fn stopping_cancels_the_call_in_flight() {
        let host = FakeHost::at(NOW_MS);
        let mut flush = start(&host, Some(INTERVAL)).unwrap();
        counted(&host, 1);
        flush.on_tick(&host, "keysync", 10_000);
        let token = host.last_call().unwrap().token;
        flush.stop(&host);
        assert_eq!(*host.cancelled.borrow(), [token]);
        assert!(!flush.owns(token));
    }
}
