//! The Prometheus metrics `serve` exports on `/metrics`: one registry, into which each
//! subsystem registers its own metrics ([`SyncMetrics`], [`GrpcMetrics`],
//! [`RateLimitMetrics`], [`ExtAuthzMetrics`], [`UsageMetrics`], [`QuotaMetrics`],
//! [`ExportMetrics`], [`AnomalyMetrics`], [`BillingMetrics`], [`WebhookMetrics`],
//! [`FleetMetrics`]) and which the composition root hands out, each part to the tasks
//! that update it.
//!
//! Names are fixed in each subsystem's `metrics.rs`, registered once, and every label
//! combination is created up front so dashboards and alerts see zeros instead of missing
//! series. prometheus-client adds the `_total` suffix to counters itself.

use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::anomaly::metrics::AnomalyMetrics;
use crate::billing::metrics::BillingMetrics;
use crate::fleet::metrics::FleetMetrics;
use crate::global_limit::metrics::RateLimitMetrics;
use crate::grpc::ext_authz::metrics::ExtAuthzMetrics;
use crate::grpc::key_sync::KeySyncMetrics;
use crate::grpc::metrics::GrpcMetrics;
use crate::quota::metrics::QuotaMetrics;
use crate::sync::metrics::SyncMetrics;
use crate::usage::export::metrics::ExportMetrics;
use crate::usage::metrics::UsageMetrics;
use crate::webhooks::metrics::WebhookMetrics;

/// All metrics of one `serve`: the registry `/metrics` renders and each subsystem's
/// part of it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub sync: Arc<SyncMetrics>,
    pub grpc: Arc<GrpcMetrics>,
    pub rate_limit: Arc<RateLimitMetrics>,
    pub ext_authz: Arc<ExtAuthzMetrics>,
    pub usage: Arc<UsageMetrics>,
    pub quota: Arc<QuotaMetrics>,
    pub usage_export: Arc<ExportMetrics>,
    pub anomaly: Arc<AnomalyMetrics>,
    pub billing: Arc<BillingMetrics>,
    pub webhooks: Arc<WebhookMetrics>,
    pub fleet: Arc<FleetMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let sync = Arc::new(SyncMetrics::register(&mut registry));
        let grpc = Arc::new(GrpcMetrics::register(&mut registry));
        let rate_limit = Arc::new(RateLimitMetrics::register(&mut registry));
        let ext_authz = Arc::new(ExtAuthzMetrics::register(&mut registry));
        let usage = Arc::new(UsageMetrics::register(&mut registry));
        let quota = Arc::new(QuotaMetrics::register(&mut registry));
        let usage_export = Arc::new(ExportMetrics::register(&mut registry));
        let anomaly = Arc::new(AnomalyMetrics::register(&mut registry));
        let billing = Arc::new(BillingMetrics::register(&mut registry));
        let webhooks = Arc::new(WebhookMetrics::register(&mut registry));
        let fleet = Arc::new(FleetMetrics::register(&mut registry));
        Metrics {
            registry,
            sync,
            grpc,
            rate_limit,
            ext_authz,
            usage,
            quota,
            usage_export,
            anomaly,
            billing,
            webhooks,
            fleet,
        }
    }

    /// The parts the `keysync.v1.KeySync` calls update.
    pub fn key_sync(&self) -> KeySyncMetrics {
        KeySyncMetrics {
            calls: self.grpc.clone(),
            usage: self.usage.clone(),
            quota: self.quota.clone(),
        }
    }

    /// The metrics in the OpenMetrics text format that Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::anomaly::kind::AnomalyKind;
    use crate::anomaly::metrics::EvaluationResult;
    use crate::global_limit::metrics::RateLimitResult;
    use crate::grpc::ext_authz::metrics::ExtAuthzResult;
    use crate::grpc::metrics::{GrpcMethod, LookupResult, RefusalReason};
    use crate::sync::metrics::{LoadKind, MissAnswer, ProbeResult};
    use crate::usage::metrics::UsageFlushResult;

    /// A rendering's families by name, each its `# HELP`, `# TYPE` and `# UNIT` lines
    /// and its samples, the samples sorted: a family keeps its series in a hash map, so
    /// their order changes from one process to the next.
    fn families(text: &str) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
        let mut families: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
        let mut current = String::new();
        for line in text.lines().filter(|line| *line != "# EOF") {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                current = rest.split(' ').next().unwrap().to_owned();
            }
            let family = families.entry(current.clone()).or_default();
            if line.starts_with("# ") {
                family.0.push(line.to_owned());
            } else {
                family.1.push(line.to_owned());
            }
        }
        for (_, samples) in families.values_mut() {
            samples.sort();
        }
        families
    }

    fn checked_in() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("metrics.txt")
    }

    /// `/metrics` of a fresh `serve` is the checked-in rendering, family by family: every
    /// name, type, help text, label and series the dashboards and alerts in `deploy/`
    /// rely on. Only the order of the families may differ (Prometheus reads them in any
    /// order). A metric added, renamed or reworded fails here: `KEYSYNC_BLESS=1`
    /// rewrites `keysync/metrics.txt`, to be reviewed with the charts that use it.
    #[test]
    fn a_fresh_registry_renders_the_checked_in_families() {
        let rendered = Metrics::new().encode();
        if std::env::var_os("KEYSYNC_BLESS").is_some() {
            std::fs::write(checked_in(), &rendered).unwrap();
        }
        let stored = std::fs::read_to_string(checked_in()).unwrap_or_default();
        let (rendered, stored) = (families(&rendered), families(&stored));
        for (name, family) in &stored {
            assert_eq!(rendered.get(name), Some(family), "family {name} changed");
        }
        let added: Vec<&String> = rendered
            .keys()
            .filter(|name| !stored.contains_key(*name))
            .collect();
        assert!(
            added.is_empty(),
            "families not in keysync/metrics.txt: {added:?}"
        );
        assert!(stored.len() > 30, "{stored:?}");
    }

    #[test]
    fn all_names_are_exported_before_anything_happens() {
        let text = Metrics::new().encode();
        for name in [
            "keysync_snapshot_keys 0",
            "keysync_store_revision 0",
            "keysync_db_loads_total{kind=\"full\",result=\"ok\"} 0",
            "keysync_db_loads_total{kind=\"incremental\",result=\"error\"} 0",
            "keysync_db_errors_total 0",
            "keysync_db_query_duration_seconds_count{kind=\"full\"} 0",
            "keysync_lookups_total{result=\"not_found\"} 0",
            "keysync_grpc_requests_total{method=\"ListKeys\"} 0",
            "keysync_grpc_request_duration_seconds_count{method=\"LookupKey\"} 0",
            "keysync_ready 0",
            "keysync_database_revision 0",
            "keysync_watch_streams 0",
            "keysync_notifications_total 0",
            "keysync_change_listener_up 0",
            "keysync_misses_total{answered_by=\"store\"} 0",
            "keysync_misses_total{answered_by=\"catch_up\"} 0",
            "keysync_changelog_batches 0",
            "keysync_changelog_records 0",
            "keysync_grpc_requests_total{method=\"WatchKeys\"} 0",
            "keysync_ratelimit_requests_total{result=\"ok\"} 0",
            "keysync_ratelimit_requests_total{result=\"over_limit\"} 0",
            "keysync_ratelimit_requests_total{result=\"error\"} 0",
            "keysync_ratelimit_redis_errors_total 0",
            "keysync_ratelimit_redis_up 0",
            "keysync_ratelimit_duration_seconds_count 0",
            "keysync_ext_authz_checks_total{result=\"allowed\"} 0",
            "keysync_ext_authz_checks_total{result=\"missing\"} 0",
            "keysync_ext_authz_checks_total{result=\"invalid\"} 0",
            "keysync_ext_authz_checks_total{result=\"insufficient_scope\"} 0",
            "keysync_ext_authz_checks_total{result=\"ip_not_allowed\"} 0",
            "keysync_ext_authz_checks_total{result=\"unavailable\"} 0",
            "keysync_ext_authz_duration_seconds_count 0",
            "keysync_confirmed_age_seconds 0.0",
            "keysync_revision_probes_total{result=\"current\"} 0",
            "keysync_revision_probes_total{result=\"history_changed\"} 0",
            "keysync_history_resets_total 0",
            "keysync_grpc_refused_total{reason=\"unauthenticated\"} 0",
            "keysync_grpc_refused_total{reason=\"permission_denied\"} 0",
            "keysync_grpc_refused_total{reason=\"in_flight\"} 0",
            "keysync_grpc_refused_total{reason=\"watch_streams\"} 0",
            "keysync_usage_flushes_total{result=\"ok\"} 0",
            "keysync_usage_flushes_total{result=\"invalid\"} 0",
            "keysync_usage_flushes_total{result=\"unavailable\"} 0",
            "keysync_usage_requests_total 0",
            "keysync_usage_refused_requests_total{reason=\"unknown_key\"} 0",
            "keysync_usage_refused_requests_total{reason=\"foreign_org\"} 0",
            "keysync_usage_refused_requests_total{reason=\"over_ceiling\"} 0",
            "keysync_quota_refused_requests_total{reason=\"unknown_subject\"} 0",
            "keysync_quota_refused_requests_total{reason=\"over_ceiling\"} 0",
            "keysync_usage_flush_duration_seconds_count 0",
            "keysync_usage_export_published_total 0",
            "keysync_usage_export_dropped_total 0",
            "keysync_usage_export_failed_batches_total 0",
            "keysync_usage_export_backlog 0",
            "keysync_anomaly_evaluations_total{result=\"ok\"} 0",
            "keysync_anomaly_evaluations_total{result=\"skipped\"} 0",
            "keysync_anomaly_evaluations_total{result=\"failed\"} 0",
            "keysync_anomaly_evaluation_duration_seconds_count 0",
            "keysync_anomaly_alerts_total{kind=\"spike\"} 0",
            "keysync_anomaly_alerts_total{kind=\"drop\"} 0",
            "keysync_anomaly_alerts_total{kind=\"refusals\"} 0",
            "keysync_anomaly_alerts_total{kind=\"upstream_5xx\"} 0",
            "keysync_invoice_closes_total{result=\"ok\"} 0",
            "keysync_invoice_closes_total{result=\"skipped\"} 0",
            "keysync_invoice_closes_total{result=\"failed\"} 0",
            "keysync_invoices_issued_total 0",
            "keysync_invoices_not_issued_total 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
    }

    #[test]
    fn updates_show_up() {
        let all = Metrics::new();
        all.sync
            .record_load(LoadKind::Incremental, false, Duration::from_millis(3));
        all.sync
            .record_load(LoadKind::Full, true, Duration::from_millis(3));
        all.sync.record_store(42, 17);
        all.grpc.record_lookup(LookupResult::Found);
        all.grpc
            .record_grpc(GrpcMethod::LookupKey, Duration::from_micros(40));
        all.sync.set_ready(true);
        all.sync.record_database_revision(18);
        all.sync.set_confirmed_age(1.5);
        all.sync.record_probe(ProbeResult::Behind);
        all.sync.record_history_reset();
        all.grpc.record_refusal(RefusalReason::Unauthenticated);
        all.sync.record_changelog(3, 7);
        all.sync.record_notification();
        all.sync.set_change_listener_up(true);
        all.sync.record_miss(MissAnswer::Store);
        all.rate_limit
            .record_call(RateLimitResult::OverLimit, Duration::from_micros(300));
        all.rate_limit.record_redis_error();
        all.rate_limit.set_redis_up(true);
        all.ext_authz
            .record_check(ExtAuthzResult::Missing, Duration::from_micros(30));
        all.usage
            .record_flush(UsageFlushResult::Ok, 42, Duration::from_millis(4));
        all.anomaly
            .record_evaluation(EvaluationResult::Ok, Duration::from_millis(120));
        all.anomaly
            .record_evaluation(EvaluationResult::Skipped, Duration::from_millis(1));
        all.anomaly.record_alert(AnomalyKind::Upstream5xx);
        let open = all.grpc.watch_stream();
        assert!(all.encode().contains("keysync_watch_streams 1"));
        drop(open);
        let text = all.encode();
        for line in [
            "keysync_db_loads_total{kind=\"incremental\",result=\"error\"} 1",
            "keysync_db_loads_total{kind=\"full\",result=\"ok\"} 1",
            "keysync_db_errors_total 1",
            "keysync_snapshot_keys 42",
            "keysync_store_revision 17",
            "keysync_lookups_total{result=\"found\"} 1",
            "keysync_grpc_requests_total{method=\"LookupKey\"} 1",
            "keysync_ready 1",
            "keysync_database_revision 18",
            "keysync_changelog_batches 3",
            "keysync_changelog_records 7",
            "keysync_notifications_total 1",
            "keysync_change_listener_up 1",
            "keysync_misses_total{answered_by=\"store\"} 1",
            "keysync_misses_total{answered_by=\"catch_up\"} 0",
            "keysync_watch_streams 0",
            "keysync_ratelimit_requests_total{result=\"over_limit\"} 1",
            "keysync_ratelimit_redis_errors_total 1",
            "keysync_ratelimit_redis_up 1",
            "keysync_ratelimit_duration_seconds_count 1",
            "keysync_ext_authz_checks_total{result=\"missing\"} 1",
            "keysync_ext_authz_duration_seconds_count 1",
            "keysync_confirmed_age_seconds 1.5",
            "keysync_revision_probes_total{result=\"behind\"} 1",
            "keysync_history_resets_total 1",
            "keysync_grpc_refused_total{reason=\"unauthenticated\"} 1",
            "keysync_usage_flushes_total{result=\"ok\"} 1",
            "keysync_usage_requests_total 42",
            "keysync_usage_flush_duration_seconds_count 1",
            "keysync_anomaly_evaluations_total{result=\"ok\"} 1",
            "keysync_anomaly_evaluations_total{result=\"skipped\"} 1",
            "keysync_anomaly_evaluation_duration_seconds_count 1",
            "keysync_anomaly_alerts_total{kind=\"upstream_5xx\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
