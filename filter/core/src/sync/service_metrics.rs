//! The sync service's Envoy stats, written as things happen (a few a minute).

use crate::host::{Host, MetricKind};
use crate::limits::quota_sync::QuotaStats;
use crate::stats::{self, Stat};

pub struct Metrics {
    pub refresh_ok: Stat,
    pub refresh_failed: Stat,
    pub keys_loaded: Stat,
    pub store_revision: Stat,
    pub stream_connected: Stat,
    pub seconds_since_sync: Stat,
    pub resyncs: Stat,
    pub stream_changes: Stat,
    pub takeovers: Stat,
    pub bad_policies: Stat,
    pub usage_flushes_ok: Stat,
    pub usage_flush_failed: Stat,
    pub quota: QuotaStats,
}

impl Metrics {
    pub fn define<H: Host>(host: &H) -> Self {
        let counter = |name| Stat::define(host, MetricKind::Counter, name);
        let gauge = |name| Stat::define(host, MetricKind::Gauge, name);
        Metrics {
            refresh_ok: counter(stats::REFRESH_OK),
            refresh_failed: counter(stats::REFRESH_FAILED),
            keys_loaded: gauge(stats::KEYS_LOADED),
            store_revision: gauge(stats::STORE_REVISION),
            stream_connected: gauge(stats::STREAM_CONNECTED),
            seconds_since_sync: gauge(stats::SECONDS_SINCE_SYNC),
            resyncs: counter(stats::RESYNCS),
            stream_changes: counter(stats::STREAM_CHANGES),
            takeovers: counter(stats::SYNC_TAKEOVERS),
            bad_policies: counter(stats::BAD_POLICIES),
            usage_flushes_ok: counter(stats::USAGE_FLUSHES_OK),
            usage_flush_failed: counter(stats::USAGE_FLUSH_FAILED),
            quota: QuotaStats {
                ok: counter(stats::QUOTA_CLAIMS_OK),
                failed: counter(stats::QUOTA_CLAIMS_FAILED),
                revision: gauge(stats::QUOTA_REVISION),
            },
        }
    }
}
