//! What each gateway of the fleet reports with `ReportUsage` every [`INTERVAL`] (the
//! filter's `usage_flush_interval` as shipped): like the filter, the cumulative counters
//! of every (key, outcome) it has served since it started, under an instance id of its
//! own, so keysync takes differences. Each gateway serves a fixed set of keys that exist;
//! in each interval about half of them are used, a few to a few dozen requests each, a
//! tenth of them also with 4xx answers, durations and sizes made up to match.

use std::time::Duration;

use keysync_e2e::seeded::Seeded;
use keysync_proto::v1::{ReportUsageRequest, UsageCounter};

/// `usage_flush_interval` as shipped (filter `usage_flush.rs`, chart default).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The filter's usage outcomes (`UsageCounter.outcome`).
const OUTCOME_2XX: u32 = 2;
const OUTCOME_4XX: u32 = 4;
/// Upper bounds of the first three duration buckets, microseconds.
const BUCKET_BOUNDS_US: [u64; 3] = [10_000, 100_000, 1_000_000];

/// A key a gateway serves: its organization's and its own id (16 bytes each).
#[derive(Clone, Debug)]
pub struct KeyIds {
    pub org_id: Vec<u8>,
    pub key_id: Vec<u8>,
}

/// One gateway's usage, growing with every report.
pub struct GatewayUsage {
    instance_id: Vec<u8>,
    counters: Vec<UsageCounter>,
    unattributed: u64,
    random: Seeded,
}

impl GatewayUsage {
    /// A gateway serving `keys`; `seed` makes its instance id and its traffic.
    pub fn new(seed: u64, keys: &[KeyIds]) -> GatewayUsage {
        let mut random = Seeded::new(seed);
        let instance_id = random.bytes(16);
        let mut counters = Vec::new();
        for key in keys {
            counters.push(counter(key, OUTCOME_2XX));
            if random.percent(10) {
                counters.push(counter(key, OUTCOME_4XX));
            }
        }
        GatewayUsage {
            instance_id,
            counters,
            unattributed: 0,
            random,
        }
    }

    /// The instance id its reports (and its quota polls) carry.
    pub fn instance_id(&self) -> &[u8] {
        &self.instance_id
    }

    /// Adds one interval's traffic, and returns the report a gateway would send now.
    pub fn next_report(&mut self, cut_at_ms: i64) -> ReportUsageRequest {
        for counter in &mut self.counters {
            if !self.random.percent(50) {
                continue;
            }
            let requests = if counter.outcome == OUTCOME_2XX {
                self.random.between(1, 40)
            } else {
                self.random.between(1, 3)
            };
            for _ in 0..requests {
                serve(counter, &mut self.random);
            }
        }
        // Requests without a key (401s) are counted per gateway, not per key.
        self.unattributed += self.random.between(0, 20) as u64;
        ReportUsageRequest {
            instance_id: self.instance_id.clone(),
            cut_at_ms,
            // Only counters with requests: the filter has no slot for a key until then.
            counters: self
                .counters
                .iter()
                .filter(|counter| counter.requests > 0)
                .cloned()
                .collect(),
            unattributed_requests: self.unattributed,
            dropped_requests: 0,
            gateway: None,
        }
    }
}

fn counter(key: &KeyIds, outcome: u32) -> UsageCounter {
    UsageCounter {
        org_id: key.org_id.clone(),
        key_id: key.key_id.clone(),
        outcome,
        duration_buckets: vec![0; BUCKET_BOUNDS_US.len() + 1],
        ..UsageCounter::default()
    }
}

/// One request: 2 to 150 ms, a small request, a response of up to 4 KB.
fn serve(counter: &mut UsageCounter, random: &mut Seeded) {
    let took_us = random.between(2_000, 150_000) as u64;
    counter.requests += 1;
    counter.duration_us += took_us;
    let bucket = BUCKET_BOUNDS_US
        .iter()
        .position(|bound| took_us <= *bound)
        .unwrap_or(BUCKET_BOUNDS_US.len());
    if let Some(count) = counter.duration_buckets.get_mut(bucket) {
        *count += 1;
    }
    counter.request_bytes += random.between(200, 600) as u64;
    counter.response_bytes += random.between(100, 4_000) as u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> Vec<KeyIds> {
        (0..n)
            .map(|i| KeyIds {
                org_id: vec![1; 16],
                key_id: vec![i; 16],
            })
            .collect()
    }

    #[test]
    fn counters_only_grow_from_report_to_report() {
        let mut usage = GatewayUsage::new(7, &keys(50));
        let first = usage.next_report(1_000);
        let second = usage.next_report(11_000);
        assert!(!first.counters.is_empty());
        assert!(second.counters.len() >= first.counters.len());
        assert!(second.unattributed_requests >= first.unattributed_requests);
        for before in &first.counters {
            let after = second
                .counters
                .iter()
                .find(|c| c.key_id == before.key_id && c.outcome == before.outcome)
                .expect("a counter stays in later reports");
            assert!(after.requests >= before.requests);
            assert!(after.duration_us >= before.duration_us);
        }
        assert_eq!(first.instance_id, second.instance_id);
    }

    #[test]
    fn every_counter_is_one_keysync_accepts() {
        let mut usage = GatewayUsage::new(3, &keys(20));
        let report = usage.next_report(1_000);
        for counter in &report.counters {
            assert_eq!(counter.duration_buckets.len(), 4);
            assert_eq!(
                counter.duration_buckets.iter().sum::<u64>(),
                counter.requests
            );
            assert!(counter.outcome == OUTCOME_2XX || counter.outcome == OUTCOME_4XX);
        }
    }
}
