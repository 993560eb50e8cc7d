//! The filter's Envoy stats. Request counters are kept per worker and flushed on the
//! worker's tick, so a request costs no stats host call.

use crate::host::{Host, MetricKind};
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
    /// Requests refused (or failed open) because the store was not confirmed within
    /// `max_staleness` and keysync could not vouch for the key either.
    Stale,
    /// Lookup answers not acted on: older than the store, of another revision history,
    /// or from a keysync that had not confirmed its keys within `max_staleness`.
    StaleAnswers,
    /// Requests judged, while the store was not trusted and keysync could not answer, on
    /// a record the miss path had cached within `max_staleness` of keysync's
    /// confirmation (`store::lookup_ledger`).
    LookupVouched,
    MissLookups,
    MissLookupErrors,
    NegativeCacheHits,
    RateLimited,
    /// Keys refused by their form alone: a checksum that does not match, or a legacy
    /// key while `accept_legacy_keys` is off. No lookup was made.
    BadChecksum,
    /// Requests refused because a rate-limit counter stayed contended (exactness first).
    RateLimitContended,
    /// Valid keys refused on a route that requires a scope they do not grant (or whose
    /// requirement cannot be read).
    InsufficientScope,
    /// Valid keys refused because the request came from outside their allowlist (or
    /// from an address that cannot be read).
    IpNotAllowed,
    /// Defects in key policies from keysync (see `store::key_policy`), found on the miss
    /// path.
    BadPolicies,
    /// Requests usage metering could not count: the bounded counter space was full.
    UsageDropped,
    /// Requests counted under the endpoint `(other)`: their route's name was not a
    /// usable one, or came when `usage_max_endpoints` names were counted already.
    UsageEndpointOther,
    /// Requests refused (429) because their organization's or key's monthly quota was
    /// used up.
    QuotaExceeded,
    /// Requests refused because a quota's state stayed contended (exactness first).
    QuotaContended,
}

const COUNTERS: [(Counter, &str); 22] = [
    (Counter::Allowed, "keysync.allowed"),
    (Counter::Missing, "keysync.missing"),
    (Counter::Invalid, "keysync.invalid"),
    (Counter::Unavailable, "keysync.unavailable"),
    (Counter::PublicPath, "keysync.public_path"),
    (Counter::FailedOpen, "keysync.failed_open"),
    (Counter::Stale, "keysync.stale"),
    (Counter::StaleAnswers, "keysync.stale_answers"),
    (Counter::LookupVouched, "keysync.lookup_vouched"),
    (Counter::MissLookups, "keysync.miss_lookups"),
    (Counter::MissLookupErrors, "keysync.miss_lookup_errors"),
    (Counter::NegativeCacheHits, "keysync.negative_cache_hits"),
    (Counter::RateLimited, "keysync.rate_limited"),
    (Counter::BadChecksum, "keysync.bad_checksum"),
    (Counter::RateLimitContended, "keysync.rate_limit_contended"),
    (Counter::InsufficientScope, "keysync.insufficient_scope"),
    (Counter::IpNotAllowed, "keysync.ip_not_allowed"),
    (Counter::BadPolicies, BAD_POLICIES),
    (Counter::UsageDropped, "keysync.usage_dropped"),
    (Counter::UsageEndpointOther, "keysync.usage_endpoint_other"),
    (Counter::QuotaExceeded, "keysync.quota_exceeded"),
    (Counter::QuotaContended, "keysync.quota_contended"),
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
pub const SYNC_TAKEOVERS: &str = "keysync.sync_takeovers";
/// Usage reports to keysync: whole flushes that went through, calls that failed.
pub const USAGE_FLUSHES_OK: &str = "keysync.usage_flushes_ok";
pub const QUOTA_CLAIMS_OK: &str = "keysync.quota_claims_ok";
pub const QUOTA_CLAIMS_FAILED: &str = "keysync.quota_claims_failed";
pub const QUOTA_REVISION: &str = "keysync.quota_revision";
pub const USAGE_FLUSH_FAILED: &str = "keysync.usage_flush_failed";
/// Counted by the sync service (pages, stream) and by workers (miss-path answers) alike.
pub const BAD_POLICIES: &str = "keysync.bad_policies";

/// Every stat the core defines, with its kind: a host that must define its stats before
/// any worker or the sync service exists (a native module defines them with Envoy when its
/// configuration is loaded) defines these, and answers `define_metric` from them.
pub fn every_metric() -> impl Iterator<Item = (MetricKind, &'static str)> {
    let counters = COUNTERS
        .iter()
        .map(|(_, name)| (MetricKind::Counter, *name));
    let sync = [
        (MetricKind::Counter, REFRESH_OK),
        (MetricKind::Counter, REFRESH_FAILED),
        (MetricKind::Gauge, KEYS_LOADED),
        (MetricKind::Gauge, STORE_REVISION),
        (MetricKind::Gauge, STREAM_CONNECTED),
        (MetricKind::Gauge, SECONDS_SINCE_SYNC),
        (MetricKind::Counter, RESYNCS),
        (MetricKind::Counter, STREAM_CHANGES),
        (MetricKind::Counter, SYNC_TAKEOVERS),
        (MetricKind::Counter, USAGE_FLUSHES_OK),
        (MetricKind::Counter, USAGE_FLUSH_FAILED),
        (MetricKind::Counter, QUOTA_CLAIMS_OK),
        (MetricKind::Counter, QUOTA_CLAIMS_FAILED),
        (MetricKind::Gauge, QUOTA_REVISION),
    ];
    // BAD_POLICIES is a request counter too: listed once.
    counters.chain(sync)
}

pub struct RequestStats {
    ids: [Option<u32>; COUNTERS.len()],
    pending: [Cell<u64>; COUNTERS.len()],
}

impl RequestStats {
    /// Defines the counters with Envoy (every worker gets handles to the same stats).
    pub fn define<H: Host>(host: &H) -> Self {
        RequestStats {
            ids: COUNTERS.map(|(_, name)| host.define_metric(MetricKind::Counter, name)),
            pending: Default::default(),
        }
    }

    pub fn bump(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn add(&self, counter: Counter, count: u64) {
        if let Some(cell) = COUNTERS
            .iter()
            .position(|(c, _)| *c == counter)
            .and_then(|i| self.pending.get(i))
        {
            cell.set(cell.get().saturating_add(count));
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

    pub fn flush<H: Host>(&self, host: &H) {
        self.drain(|i, count| {
            if let Some(Some(id)) = self.ids.get(i) {
                host.increment_metric(*id, count);
            }
        });
    }
}

/// A stat of the sync service, written as things happen. `None` when Envoy refused to
/// define it: a missing stat is not worth failing anything for.
#[derive(Clone, Copy, Debug)]
pub struct Stat(Option<u32>);

impl Stat {
    pub fn define<H: Host>(host: &H, kind: MetricKind, name: &str) -> Self {
        Stat(host.define_metric(kind, name))
    }

    pub fn add<H: Host>(self, host: &H, count: u64) {
        if let Some(id) = self.0 {
            host.increment_metric(id, count);
        }
    }

    pub fn record<H: Host>(self, host: &H, value: u64) {
        if let Some(id) = self.0 {
            host.record_metric(id, value);
        }
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
    fn every_metric_lists_each_name_once() {
        let names: Vec<&str> = every_metric().map(|(_, name)| name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(names.contains(&BAD_POLICIES) && names.contains(&QUOTA_REVISION));
    }

    #[test]
    fn every_metric_covers_what_the_workers_and_the_sync_service_define() {
        use crate::auth::worker::AuthWorker;
        use crate::config::PluginConfig;
        use crate::host::fake_host::FakeHost;
        use crate::sync::service::SyncService;
        let host = FakeHost::at(1_700_000_000_000);
        let PluginConfig::Auth(auth) = PluginConfig::parse(b"{}").unwrap() else {
            panic!("an auth configuration");
        };
        let PluginConfig::Sync(sync) = PluginConfig::parse(br#"{"role":"sync"}"#).unwrap() else {
            panic!("a sync configuration");
        };
        let _worker = AuthWorker::new(host.clone(), auth);
        let _service = SyncService::singleton(host.clone(), sync, b"");
        let listed: Vec<(MetricKind, &str)> = every_metric().collect();
        let defined = host.metrics.borrow();
        assert!(!defined.is_empty());
        for (name, kind, _) in defined.iter() {
            assert!(
                listed.contains(&(*kind, name.as_str())),
                "{name} ({kind:?}) is defined but not in every_metric()"
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
