//! The filter's Envoy stats. Request counters are kept per worker and flushed on the
//! worker's tick, so a request costs no stats host call.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::cell::Cell;

/// Counters bumped on the request path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Allowed,
    Missing,
    Invalid,
    Unavailable,
    /// Requests to public paths that went through without an accepted key.
    PublicPath,
    /// Requests let through by `failure_mode: open`.
    FailedOpen,
    /// Requests refused (or failed open) because keysync was silent past `max_staleness`.
    Stale,
    MissLookups,
    MissLookupErrors,
    NegativeCacheHits,
    RateLimited,
    /// Requests refused because a rate-limit counter stayed contended (exactness first).
    RateLimitContended,
}

const COUNTERS: [(Counter, &str); 12] = [
    (Counter::Allowed, "keysync.allowed"),
    (Counter::Missing, "keysync.missing"),
    (Counter::Invalid, "keysync.invalid"),
    (Counter::Unavailable, "keysync.unavailable"),
    (Counter::PublicPath, "keysync.public_path"),
    (Counter::FailedOpen, "keysync.failed_open"),
    (Counter::Stale, "keysync.stale"),
    (Counter::MissLookups, "keysync.miss_lookups"),
    (Counter::MissLookupErrors, "keysync.miss_lookup_errors"),
    (Counter::NegativeCacheHits, "keysync.negative_cache_hits"),
    (Counter::RateLimited, "keysync.rate_limited"),
    (Counter::RateLimitContended, "keysync.rate_limit_contended"),
];

/// Stats of the sync service, written as they happen (a few a minute).
pub const REFRESH_OK: &str = "keysync.refresh_ok";
pub const REFRESH_FAILED: &str = "keysync.refresh_failed";
pub const KEYS_LOADED: &str = "keysync.keys_loaded";
pub const STORE_REVISION: &str = "keysync.store_revision";
pub const STREAM_CONNECTED: &str = "keysync.stream_connected";
pub const SECONDS_SINCE_SYNC: &str = "keysync.seconds_since_sync";
pub const RESYNCS: &str = "keysync.resyncs";
pub const STREAM_CHANGES: &str = "keysync.stream_changes";

pub struct RequestStats {
    ids: [Option<u32>; COUNTERS.len()],
    pending: [Cell<u64>; COUNTERS.len()],
}

impl RequestStats {
    /// Defines the counters with Envoy (every worker gets handles to the same stats).
    pub fn define() -> Self {
        RequestStats {
            ids: COUNTERS.map(|(_, name)| define(MetricType::Counter, name)),
            pending: Default::default(),
        }
    }

    pub fn bump(&self, counter: Counter) {
        if let Some(cell) = COUNTERS
            .iter()
            .position(|(c, _)| *c == counter)
            .and_then(|i| self.pending.get(i))
        {
            cell.set(cell.get().saturating_add(1));
        }
    }

    /// Hands the pending counts to `sink` and resets them.
    fn drain(&self, mut sink: impl FnMut(usize, u64)) {
        for (i, cell) in self.pending.iter().enumerate() {
            let count = cell.replace(0);
            if count > 0 {
                sink(i, count);
            }
        }
    }

    pub fn flush(&self) {
        self.drain(|i, count| {
            if let Some(Some(id)) = self.ids.get(i) {
                let delta = i64::try_from(count).unwrap_or(i64::MAX);
                // A failed stat update is not worth failing anything for.
                let _ = hostcalls::increment_metric(*id, delta);
            }
        });
    }
}

pub fn define(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

pub fn increment(id: Option<u32>) {
    add(id, 1);
}

pub fn add(id: Option<u32>, count: u64) {
    if let Some(id) = id {
        let _ = hostcalls::increment_metric(id, i64::try_from(count).unwrap_or(i64::MAX));
    }
}

pub fn record(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        let _ = hostcalls::record_metric(id, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_a_distinct_name() {
        for (i, (counter, name)) in COUNTERS.iter().enumerate() {
            assert!(name.starts_with("keysync."));
            assert_eq!(
                COUNTERS.iter().position(|(c, _)| c == counter),
                Some(i),
                "{counter:?} listed twice"
            );
        }
    }

    #[test]
    fn drain_hands_over_counts_once() {
        let stats = RequestStats {
            ids: [None; COUNTERS.len()],
            pending: Default::default(),
        };
        stats.bump(Counter::Allowed);
        stats.bump(Counter::Allowed);
        stats.bump(Counter::Invalid);
        let mut seen = Vec::new();
        stats.drain(|i, n| seen.push((COUNTERS[i].1, n)));
        assert_eq!(seen, vec![("keysync.allowed", 2), ("keysync.invalid", 1)]);
        let mut again = Vec::new();
        stats.drain(|i, n| again.push((i, n)));
        assert!(again.is_empty());
    }
}
