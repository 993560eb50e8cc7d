//! The Prometheus metrics `serve` exports on `/metrics`.
//!
//! Names are fixed here, registered once, and every label combination is created up
//! front so dashboards and alerts see zeros instead of missing series.
//! prometheus-client adds the `_total` suffix to counters itself.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Which kind of database load.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum LoadKind {
    Full,
    Incremental,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum LoadResult {
    Ok,
    Error,
}

/// How a `LookupKey` call ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum LookupResult {
    Found,
    NotFound,
    Error,
}

/// How a lookup of a key the store did not hold (`LookupKey`, ext_authz `Check`) was
/// answered.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum MissAnswer {
    /// From memory, kept current by change notifications: no query.
    Store,
    /// After asking for a catch-up (the change listener was down or not caught up).
    CatchUp,
}

impl MissAnswer {
    /// How a log line says it.
    pub fn describe(self) -> &'static str {
        match self {
            MissAnswer::Store => "from memory",
            MissAnswer::CatchUp => "after a catch-up",
        }
    }
}

/// How a `ShouldRateLimit` call ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RateLimitResult {
    /// Counted, within every budget (or nothing to count).
    Ok,
    /// Counted, over a budget.
    OverLimit,
    /// Not counted: Redis failed (or failed moments ago); answered by the failure mode.
    Error,
}

/// How an ext_authz `Check` ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ExtAuthzResult {
    /// Forwarded with the key's identity.
    Allowed,
    /// Refused: no credential (401).
    Missing,
    /// Refused: unknown, revoked, expired or malformed key (403).
    Invalid,
    /// Refused: a valid key that lacks a scope the route requires (403).
    InsufficientScope,
    /// Refused: a valid key used from outside its allowlist (403).
    IpNotAllowed,
    /// Not decided: no key snapshot yet (`UNAVAILABLE`; Envoy answers 503).
    Unavailable,
    /// A readiness check (the gateway's `/health`, its probe port's `/ready`) answered:
    /// the key snapshot is loaded. One before is counted `Unavailable`.
    Ready,
}

/// How a `ReportUsage` flush ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum UsageFlushResult {
    /// Stored (or nothing new in it).
    Ok,
    /// Refused as malformed (`INVALID_ARGUMENT`).
    Invalid,
    /// Not stored: PostgreSQL failed or could not be reached (`UNAVAILABLE`).
    Unavailable,
}

/// How an `AcquireQuota` call ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum QuotaCallResult {
    Ok,
    /// Refused as malformed (`INVALID_ARGUMENT`).
    Invalid,
    /// PostgreSQL failed (`UNAVAILABLE`): nothing granted.
    Unavailable,
}

/// A quota alert's threshold, in percent.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum QuotaThreshold {
    Eighty,
    Hundred,
}

/// Label values in the lower-case spelling Prometheus users expect (the derive would
/// use the variant names as written).
macro_rules! label_values {
    ($type:ty { $($variant:ident => $value:literal),+ $(,)? }) => {
        impl EncodeLabelValue for $type {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                let value = match self {
                    $(Self::$variant => $value),+
                };
                EncodeLabelValue::encode(&value, encoder)
            }
        }
    };
}

label_values!(LoadKind { Full => "full", Incremental => "incremental" });
label_values!(LoadResult { Ok => "ok", Error => "error" });
label_values!(LookupResult { Found => "found", NotFound => "not_found", Error => "error" });
label_values!(MissAnswer { Store => "store", CatchUp => "catch_up" });
label_values!(RateLimitResult { Ok => "ok", OverLimit => "over_limit", Error => "error" });
label_values!(UsageFlushResult { Ok => "ok", Invalid => "invalid", Unavailable => "unavailable" });
label_values!(QuotaCallResult { Ok => "ok", Invalid => "invalid", Unavailable => "unavailable" });
label_values!(QuotaThreshold { Eighty => "80", Hundred => "100" });
label_values!(ProbeResult {
    Current => "current",
    Behind => "behind",
    HistoryChanged => "history_changed",
    Error => "error",
});
label_values!(RefusalReason {
    Unauthenticated => "unauthenticated",
    InFlight => "in_flight",
    WatchStreams => "watch_streams",
});
label_values!(ExtAuthzResult {
    Allowed => "allowed",
    Missing => "missing",
    Invalid => "invalid",
    InsufficientScope => "insufficient_scope",
    IpNotAllowed => "ip_not_allowed",
    Unavailable => "unavailable",
    Ready => "ready",
});

/// How a read of the revision counter (the periodic confirmation) ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum ProbeResult {
    /// The key set is at the database's revision: confirmed.
    Current,
    /// The database is ahead: a catch-up was asked for (its success confirms).
    Behind,
    /// The database's history changed (a restore, a failover, a counter gone back).
    HistoryChanged,
    /// The query failed or timed out.
    Error,
}

/// Why a gRPC call was refused before reaching a service.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RefusalReason {
    /// No token, or a wrong one (`UNAUTHENTICATED`).
    Unauthenticated,
    /// Too many calls in flight (`RESOURCE_EXHAUSTED`).
    InFlight,
    /// Too many WatchKeys streams open (`RESOURCE_EXHAUSTED`).
    WatchStreams,
}

/// gRPC method names as they appear on the wire.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum GrpcMethod {
    ListKeys,
    LookupKey,
    /// Counted when a stream opens; its duration is the time to open it.
    WatchKeys,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoadLabels {
    kind: LoadKind,
    result: LoadResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: LoadKind,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: LookupResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MissLabels {
    answered_by: MissAnswer,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: GrpcMethod,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    result: RateLimitResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExtAuthzLabels {
    result: ExtAuthzResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UsageFlushLabels {
    result: UsageFlushResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaCallLabels {
    result: QuotaCallResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaAlertLabels {
    threshold: QuotaThreshold,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    result: ProbeResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: RefusalReason,
}

/// All metrics of one `serve`; cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    snapshot_keys: Gauge,
    store_revision: Gauge,
    db_loads: Family<LoadLabels, Counter>,
    db_errors: Counter,
    db_query_duration: Family<KindLabels, Histogram>,
    lookups: Family<LookupLabels, Counter>,
    misses: Family<MissLabels, Counter>,
    grpc_requests: Family<MethodLabels, Counter>,
    grpc_request_duration: Family<MethodLabels, Histogram>,
    ready: Gauge,
    database_revision: Gauge,
    watch_streams: Gauge,
    notifications: Counter,
    change_listener_up: Gauge,
    changelog_batches: Gauge,
    changelog_records: Gauge,
    ratelimit_requests: Family<RateLimitLabels, Counter>,
    ratelimit_redis_errors: Counter,
    ratelimit_redis_up: Gauge,
    ratelimit_duration: Histogram,
    ext_authz_checks: Family<ExtAuthzLabels, Counter>,
    ext_authz_duration: Histogram,
    confirmed_age: Gauge<f64, AtomicU64>,
    probes: Family<ProbeLabels, Counter>,
    history_resets: Counter,
    grpc_refused: Family<RefusalLabels, Counter>,
    usage_flushes: Family<UsageFlushLabels, Counter>,
    usage_requests: Counter,
    usage_flush_duration: Histogram,
    quota_calls: Family<QuotaCallLabels, Counter>,
    quota_granted: Counter,
    quota_alerts: Family<QuotaAlertLabels, Counter>,
    usage_export_published: Counter,
    usage_export_dropped: Counter,
    usage_export_failed_batches: Counter,
    usage_export_backlog: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // gRPC answers come from memory (tens of microseconds) unless a lookup waits
        // for a catch-up; loads take milliseconds to seconds.
        let grpc_duration = Family::<MethodLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_025, 2.0, 18))
        });
        let db_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        let mut metrics = Metrics {
            registry: Registry::default(),
            snapshot_keys: Gauge::default(),
            store_revision: Gauge::default(),
            db_loads: Family::default(),
            db_errors: Counter::default(),
            db_query_duration: db_duration,
            lookups: Family::default(),
            misses: Family::default(),
            grpc_requests: Family::default(),
            grpc_request_duration: grpc_duration,
            ready: Gauge::default(),
            database_revision: Gauge::default(),
            watch_streams: Gauge::default(),
            notifications: Counter::default(),
            change_listener_up: Gauge::default(),
            changelog_batches: Gauge::default(),
            changelog_records: Gauge::default(),
            ratelimit_requests: Family::default(),
            ratelimit_redis_errors: Counter::default(),
            ratelimit_redis_up: Gauge::default(),
            // A Redis round trip on loopback is ~100 us; calls are cut at 250 ms.
            ratelimit_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            ext_authz_checks: Family::default(),
            // From memory in tens of microseconds; a new key waits for a catch-up (up
            // to 300 ms).
            ext_authz_duration: Histogram::new(exponential_buckets(0.000_025, 2.0, 16)),
            confirmed_age: Gauge::default(),
            probes: Family::default(),
            history_resets: Counter::default(),
            grpc_refused: Family::default(),
            usage_flushes: Family::default(),
            usage_requests: Counter::default(),
            // One transaction of a few statements: milliseconds, up to seconds for the
            // largest flushes.
            usage_flush_duration: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            quota_calls: Family::default(),
            quota_granted: Counter::default(),
            quota_alerts: Family::default(),
            usage_export_published: Counter::default(),
            usage_export_dropped: Counter::default(),
            usage_export_failed_batches: Counter::default(),
            usage_export_backlog: Gauge::default(),
        };
        metrics.register();
        metrics.create_series();
        metrics
    }

    fn register(&mut self) {
        let registry = &mut self.registry;
        registry.register(
            "keysync_snapshot_keys",
            "Keys held in memory, expired ones included",
            self.snapshot_keys.clone(),
        );
        registry.register(
            "keysync_store_revision",
            "Database revision the in-memory key set reflects",
            self.store_revision.clone(),
        );
        registry.register(
            "keysync_db_loads",
            "Loads from PostgreSQL by kind and result",
            self.db_loads.clone(),
        );
        registry.register(
            "keysync_db_errors",
            "Failed PostgreSQL loads",
            self.db_errors.clone(),
        );
        registry.register(
            "keysync_db_query_duration_seconds",
            "Duration of PostgreSQL loads by kind (a full load includes filling or comparing \
             the in-memory key set, done as rows arrive)",
            self.db_query_duration.clone(),
        );
        registry.register(
            "keysync_lookups",
            "LookupKey calls by result",
            self.lookups.clone(),
        );
        registry.register(
            "keysync_misses",
            "Lookups (LookupKey, ext_authz Check) of keys not in memory, by how they were \
             answered: store (from memory kept current by change notifications, no query) \
             or catch_up (after asking for a catch-up)",
            self.misses.clone(),
        );
        registry.register(
            "keysync_grpc_requests",
            "gRPC requests by method",
            self.grpc_requests.clone(),
        );
        registry.register(
            "keysync_grpc_request_duration_seconds",
            "gRPC request duration by method",
            self.grpc_request_duration.clone(),
        );
        registry.register(
            "keysync_ready",
            "1 while the key set was confirmed against PostgreSQL within \
             KEYSYNC_MAX_UNCONFIRMED (/readyz 200, gRPC health SERVING)",
            self.ready.clone(),
        );
        registry.register(
            "keysync_database_revision",
            "Revision counter read from PostgreSQL by the last successful load or catch-up",
            self.database_revision.clone(),
        );
        registry.register(
            "keysync_watch_streams",
            "Open WatchKeys streams",
            self.watch_streams.clone(),
        );
        registry.register(
            "keysync_notifications",
            "Change notifications received from PostgreSQL",
            self.notifications.clone(),
        );
        registry.register(
            "keysync_change_listener_up",
            "1 while the change listener is connected and caught up (and the last catch-up \
             succeeded): lookups of keys not in memory are then answered without a query",
            self.change_listener_up.clone(),
        );
        registry.register(
            "keysync_changelog_batches",
            "Change batches held for WatchKeys replay",
            self.changelog_batches.clone(),
        );
        registry.register(
            "keysync_changelog_records",
            "Records (upserts plus removals) held for WatchKeys replay; grows to \
             KEYSYNC_CHANGELOG_RECORDS and stays there",
            self.changelog_records.clone(),
        );
        registry.register(
            "keysync_ratelimit_requests",
            "ShouldRateLimit calls by result (error: Redis failed, answered by the failure mode)",
            self.ratelimit_requests.clone(),
        );
        registry.register(
            "keysync_ratelimit_redis_errors",
            "Failed Redis calls and PINGs of the rate-limit service",
            self.ratelimit_redis_errors.clone(),
        );
        registry.register(
            "keysync_ratelimit_redis_up",
            "1 when the last Redis call or PING of the rate-limit service succeeded",
            self.ratelimit_redis_up.clone(),
        );
        registry.register(
            "keysync_ratelimit_duration_seconds",
            "Duration of ShouldRateLimit calls",
            self.ratelimit_duration.clone(),
        );
        registry.register(
            "keysync_ext_authz_checks",
            "ext_authz Check calls by result (unavailable: no key snapshot yet; ready: a readiness check answered)",
            self.ext_authz_checks.clone(),
        );
        registry.register(
            "keysync_ext_authz_duration_seconds",
            "Duration of ext_authz Check calls",
            self.ext_authz_duration.clone(),
        );
        registry.register(
            "keysync_confirmed_age_seconds",
            "Seconds since the key set was last confirmed against PostgreSQL (a query that \
             succeeded and showed it current); before the first, since keysync started",
            self.confirmed_age.clone(),
        );
        registry.register(
            "keysync_revision_probes",
            "Periodic reads of the revision counter by result (current: confirmed; behind: \
             a catch-up was asked for; history_changed: a restore or failover was found; \
             error: failed or timed out)",
            self.probes.clone(),
        );
        registry.register(
            "keysync_history_resets",
            "Times the database's revision history changed under keysync (revision counter \
             gone back, another database or timeline): everything reloaded, watchers resynced",
            self.history_resets.clone(),
        );
        registry.register(
            "keysync_grpc_refused",
            "gRPC calls refused before reaching a service, by reason",
            self.grpc_refused.clone(),
        );
        registry.register(
            "keysync_usage_flushes",
            "ReportUsage flushes by result (ok: stored; invalid: refused as malformed; \
             unavailable: PostgreSQL failed, nothing stored, the gateway sends it again)",
            self.usage_flushes.clone(),
        );
        registry.register(
            "keysync_usage_requests",
            "Requests added to the usage rollup (the increments of stored flushes)",
            self.usage_requests.clone(),
        );
        registry.register(
            "keysync_usage_flush_duration_seconds",
            "Duration of ReportUsage flushes (checking and storing)",
            self.usage_flush_duration.clone(),
        );
        registry.register(
            "keysync_quota_calls",
            "AcquireQuota calls by result (ok; invalid: refused as malformed; unavailable: \
             PostgreSQL failed, nothing granted)",
            self.quota_calls.clone(),
        );
        registry.register(
            "keysync_quota_granted_requests",
            "Requests granted to gateways in quota leases",
            self.quota_granted.clone(),
        );
        registry.register(
            "keysync_quota_alerts",
            "Organizations and keys whose use crossed 80% or 100% of their quota (once a \
             period each)",
            self.quota_alerts.clone(),
        );
        registry.register(
            "keysync_usage_export_published",
            "Events published to Kafka by the usage export (a batch sent again after a \
             failure counts again)",
            self.usage_export_published.clone(),
        );
        registry.register(
            "keysync_usage_export_dropped",
            "Events the usage export dropped because its backlog was full (Kafka slow or \
             down); the rollups in PostgreSQL still have them",
            self.usage_export_dropped.clone(),
        );
        registry.register(
            "keysync_usage_export_failed_batches",
            "Batches the usage export failed to publish (each is sent again after a backoff)",
            self.usage_export_failed_batches.clone(),
        );
        registry.register(
            "keysync_usage_export_backlog",
            "Events held by the usage export, waiting or being sent (at most \
             KEYSYNC_USAGE_EXPORT_BACKLOG)",
            self.usage_export_backlog.clone(),
        );
    }

    fn create_series(&self) {
        for result in [
            ProbeResult::Current,
            ProbeResult::Behind,
            ProbeResult::HistoryChanged,
            ProbeResult::Error,
        ] {
            drop(self.probes.get_or_create(&ProbeLabels { result }));
        }
        for reason in [
            RefusalReason::Unauthenticated,
            RefusalReason::InFlight,
            RefusalReason::WatchStreams,
        ] {
            drop(self.grpc_refused.get_or_create(&RefusalLabels { reason }));
        }
        for result in [
            UsageFlushResult::Ok,
            UsageFlushResult::Invalid,
            UsageFlushResult::Unavailable,
        ] {
            drop(
                self.usage_flushes
                    .get_or_create(&UsageFlushLabels { result }),
            );
        }
        for result in [
            QuotaCallResult::Ok,
            QuotaCallResult::Invalid,
            QuotaCallResult::Unavailable,
        ] {
            drop(self.quota_calls.get_or_create(&QuotaCallLabels { result }));
        }
        for threshold in [QuotaThreshold::Eighty, QuotaThreshold::Hundred] {
            drop(
                self.quota_alerts
                    .get_or_create(&QuotaAlertLabels { threshold }),
            );
        }
        // The guards are only needed to create the series, not to hold them.
        for kind in [LoadKind::Full, LoadKind::Incremental] {
            for result in [LoadResult::Ok, LoadResult::Error] {
                drop(self.db_loads.get_or_create(&LoadLabels { kind, result }));
            }
            drop(self.db_query_duration.get_or_create(&KindLabels { kind }));
        }
        for result in [
            LookupResult::Found,
            LookupResult::NotFound,
            LookupResult::Error,
        ] {
            drop(self.lookups.get_or_create(&LookupLabels { result }));
        }
        for answered_by in [MissAnswer::Store, MissAnswer::CatchUp] {
            drop(self.misses.get_or_create(&MissLabels { answered_by }));
        }
        for method in [
            GrpcMethod::ListKeys,
            GrpcMethod::LookupKey,
            GrpcMethod::WatchKeys,
        ] {
            drop(self.grpc_requests.get_or_create(&MethodLabels { method }));
            drop(
                self.grpc_request_duration
                    .get_or_create(&MethodLabels { method }),
            );
        }
        for result in [
            RateLimitResult::Ok,
            RateLimitResult::OverLimit,
            RateLimitResult::Error,
        ] {
            drop(
                self.ratelimit_requests
                    .get_or_create(&RateLimitLabels { result }),
            );
        }
        for result in [
            ExtAuthzResult::Allowed,
            ExtAuthzResult::Missing,
            ExtAuthzResult::Invalid,
            ExtAuthzResult::InsufficientScope,
            ExtAuthzResult::IpNotAllowed,
            ExtAuthzResult::Unavailable,
            ExtAuthzResult::Ready,
        ] {
            drop(
                self.ext_authz_checks
                    .get_or_create(&ExtAuthzLabels { result }),
            );
        }
    }

    /// Records one database load.
    pub fn record_load(&self, kind: LoadKind, ok: bool, duration: Duration) {
        let result = if ok {
            LoadResult::Ok
        } else {
            self.db_errors.inc();
            LoadResult::Error
        };
        self.db_loads
            .get_or_create(&LoadLabels { kind, result })
            .inc();
        self.db_query_duration
            .get_or_create(&KindLabels { kind })
            .observe(duration.as_secs_f64());
    }

    /// Records the store's size and revision after a change.
    pub fn record_store(&self, keys: usize, revision: u64) {
        self.snapshot_keys
            .set(i64::try_from(keys).unwrap_or(i64::MAX));
        self.store_revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
    }

    pub fn record_lookup(&self, result: LookupResult) {
        self.lookups.get_or_create(&LookupLabels { result }).inc();
    }

    pub fn record_miss(&self, answered_by: MissAnswer) {
        self.misses.get_or_create(&MissLabels { answered_by }).inc();
    }

    pub fn record_grpc(&self, method: GrpcMethod, duration: Duration) {
        let labels = MethodLabels { method };
        self.grpc_requests.get_or_create(&labels).inc();
        self.grpc_request_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Seconds since the last confirmation (before the first: since keysync started).
    pub fn set_confirmed_age(&self, seconds: f64) {
        self.confirmed_age.set(seconds);
    }

    pub fn record_probe(&self, result: ProbeResult) {
        self.probes.get_or_create(&ProbeLabels { result }).inc();
    }

    pub fn record_history_reset(&self) {
        self.history_resets.inc();
    }

    pub fn record_refusal(&self, reason: RefusalReason) {
        self.grpc_refused
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }

    /// Records the revision a load or catch-up read from the database.
    pub fn record_database_revision(&self, revision: u64) {
        self.database_revision
            .set(i64::try_from(revision).unwrap_or(i64::MAX));
    }

    pub fn record_changelog(&self, batches: usize, records: usize) {
        self.changelog_batches
            .set(i64::try_from(batches).unwrap_or(i64::MAX));
        self.changelog_records
            .set(i64::try_from(records).unwrap_or(i64::MAX));
    }

    pub fn record_notification(&self) {
        self.notifications.inc();
    }

    pub fn set_change_listener_up(&self, up: bool) {
        self.change_listener_up.set(i64::from(up));
    }

    /// Records one `ShouldRateLimit` call.
    pub fn record_ratelimit(&self, result: RateLimitResult, duration: Duration) {
        self.ratelimit_requests
            .get_or_create(&RateLimitLabels { result })
            .inc();
        self.ratelimit_duration.observe(duration.as_secs_f64());
    }

    /// Records one ext_authz `Check` call.
    pub fn record_ext_authz(&self, result: ExtAuthzResult, duration: Duration) {
        self.ext_authz_checks
            .get_or_create(&ExtAuthzLabels { result })
            .inc();
        self.ext_authz_duration.observe(duration.as_secs_f64());
    }

    /// Records one `ReportUsage` flush that added `requests` to the rollup.
    pub fn record_usage_flush(&self, result: UsageFlushResult, requests: u64, duration: Duration) {
        self.usage_flushes
            .get_or_create(&UsageFlushLabels { result })
            .inc();
        self.usage_requests.inc_by(requests);
        self.usage_flush_duration.observe(duration.as_secs_f64());
    }

    /// Records one `AcquireQuota` call that granted `granted` requests.
    pub fn record_quota_call(&self, result: QuotaCallResult, granted: u64) {
        self.quota_calls
            .get_or_create(&QuotaCallLabels { result })
            .inc();
        self.quota_granted.inc_by(granted);
    }

    pub fn record_quota_alert(&self, threshold: QuotaThreshold) {
        self.quota_alerts
            .get_or_create(&QuotaAlertLabels { threshold })
            .inc();
    }

    pub fn record_usage_export_published(&self, events: usize) {
        self.usage_export_published
            .inc_by(u64::try_from(events).unwrap_or(u64::MAX));
    }

    pub fn record_usage_export_dropped(&self, events: usize) {
        self.usage_export_dropped
            .inc_by(u64::try_from(events).unwrap_or(u64::MAX));
    }

    pub fn record_usage_export_failed_batch(&self) {
        self.usage_export_failed_batches.inc();
    }

    pub fn set_usage_export_backlog(&self, events: usize) {
        self.usage_export_backlog
            .set(i64::try_from(events).unwrap_or(i64::MAX));
    }

    pub fn record_redis_error(&self) {
        self.ratelimit_redis_errors.inc();
    }

    pub fn set_redis_up(&self, up: bool) {
        self.ratelimit_redis_up.set(i64::from(up));
    }

    /// Counts an open WatchKeys stream until the returned guard is dropped.
    pub fn watch_stream(self: &Arc<Self>) -> WatchStreamGuard {
        self.watch_streams.inc();
        WatchStreamGuard(self.clone())
    }

    /// The metrics in the OpenMetrics text format that Prometheus scrapes.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Holds one count in `keysync_watch_streams` while a stream is open.
#[derive(Debug)]
pub struct WatchStreamGuard(Arc<Metrics>);

impl Drop for WatchStreamGuard {
    fn drop(&mut self) {
        self.0.watch_streams.dec();
    }
}

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

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
            "keysync_grpc_refused_total{reason=\"in_flight\"} 0",
            "keysync_grpc_refused_total{reason=\"watch_streams\"} 0",
            "keysync_usage_flushes_total{result=\"ok\"} 0",
            "keysync_usage_flushes_total{result=\"invalid\"} 0",
            "keysync_usage_flushes_total{result=\"unavailable\"} 0",
            "keysync_usage_requests_total 0",
            "keysync_usage_flush_duration_seconds_count 0",
            "keysync_usage_export_published_total 0",
            "keysync_usage_export_dropped_total 0",
            "keysync_usage_export_failed_batches_total 0",
            "keysync_usage_export_backlog 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
    }

    #[test]
    fn updates_show_up() {
        let metrics = Metrics::new();
        metrics.record_load(LoadKind::Incremental, false, Duration::from_millis(3));
        metrics.record_load(LoadKind::Full, true, Duration::from_millis(3));
        metrics.record_store(42, 17);
        metrics.record_lookup(LookupResult::Found);
        metrics.record_grpc(GrpcMethod::LookupKey, Duration::from_micros(40));
        metrics.set_ready(true);
        metrics.record_database_revision(18);
        metrics.set_confirmed_age(1.5);
        metrics.record_probe(ProbeResult::Behind);
        metrics.record_history_reset();
        metrics.record_refusal(RefusalReason::Unauthenticated);
        metrics.record_changelog(3, 7);
        metrics.record_notification();
        metrics.set_change_listener_up(true);
        metrics.record_miss(MissAnswer::Store);
        metrics.record_ratelimit(RateLimitResult::OverLimit, Duration::from_micros(300));
        metrics.record_redis_error();
        metrics.set_redis_up(true);
        metrics.record_ext_authz(ExtAuthzResult::Missing, Duration::from_micros(30));
        metrics.record_usage_flush(UsageFlushResult::Ok, 42, Duration::from_millis(4));
        let metrics = Arc::new(metrics);
        let open = metrics.watch_stream();
        assert!(metrics.encode().contains("keysync_watch_streams 1"));
        drop(open);
        let text = metrics.encode();
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
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
