//! The sync service's half of usage metering: every `usage_flush_interval` it reads the
//! cumulative counters the workers merged into shared data (see `usage`) and reports
//! them to keysync with `ReportUsage`.
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
use crate::usage::{self, Meta, Totals, SLOTS};
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
        let instance_id = existing.map_or_else(
            || {
                let high = u128::from(host.random_u64()) << 64;
                (high | u128::from(host.random_u64())).to_le_bytes()
            },
            |meta| meta.instance_id,
        );
        let enabled = interval.is_some();
        if enabled {
            // Before the meta says "on": workers merge only once it does.
            if let Err(e) = usage::ensure_slots(host) {
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
            next_due_ms: now_ms.saturating_add(crate::schedule::millis(interval)),
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
            let deadline = crate::schedule::millis(self.timeout).saturating_mul(2);
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
        self.next_due_ms = now_ms.saturating_add(crate::schedule::millis(self.interval));
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
            self.next_due_ms = now_ms.saturating_add(crate::schedule::millis(self.interval));
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
        let mut counters = Vec::new();
        let mut slot = from;
        while slot < SLOTS {
            let value = host.get(&usage::slot_name(slot)).value;
            let in_slot = value.as_deref().map(usage::decode_slot).unwrap_or_default();
            if !counters.is_empty() && counters.len() + in_slot.len() > self.max_per_call {
                break;
            }
            counters.extend(
                in_slot
                    .into_iter()
                    .map(|(key, counts)| proto::UsageCounter {
                        org_id: key.org.0.to_vec(),
                        key_id: key.key.0.to_vec(),
                        outcome: u32::from(key.outcome),
                        requests: counts.requests,
                        duration_us: counts.duration_us,
                        duration_buckets: counts.buckets.to_vec(),
                        request_bytes: counts.request_bytes,
                        response_bytes: counts.response_bytes,
                    }),
            );
            slot += 1;
        }
        // Every part carries the totals: cumulative, so keysync counts them once.
        let totals = Totals::read(host);
        let request = proto::ReportUsageRequest {
            instance_id: self.instance_id.to_vec(),
            cut_at_ms,
            counters,
            unattributed_requests: totals.unattributed,
            dropped_requests: totals.dropped,
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
        self.next_due_ms = now_ms.saturating_add(crate::schedule::millis(self.interval));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
