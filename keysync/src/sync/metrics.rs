//! The metrics of syncing from PostgreSQL: the key set's size and revision, loads and
//! catch-ups, the change listener, the periodic confirmation and readiness, and how
//! lookups of keys not in memory were settled.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::metric_label::label_values;

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

label_values!(LoadKind { Full => "full", Incremental => "incremental" });
label_values!(LoadResult { Ok => "ok", Error => "error" });
label_values!(MissAnswer { Store => "store", CatchUp => "catch_up" });
label_values!(ProbeResult {
    Current => "current",
    Behind => "behind",
    HistoryChanged => "history_changed",
    Error => "error",
});

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
struct MissLabels {
    answered_by: MissAnswer,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    result: ProbeResult,
}

/// The sync metrics; cheap to update from any task.
#[derive(Debug)]
pub struct SyncMetrics {
    snapshot_keys: Gauge,
    store_revision: Gauge,
    db_loads: Family<LoadLabels, Counter>,
    db_errors: Counter,
    db_query_duration: Family<KindLabels, Histogram>,
    misses: Family<MissLabels, Counter>,
    ready: Gauge,
    database_revision: Gauge,
    notifications: Counter,
    change_listener_up: Gauge,
    changelog_batches: Gauge,
    changelog_records: Gauge,
    confirmed_age: Gauge<f64, AtomicU64>,
    probes: Family<ProbeLabels, Counter>,
    history_resets: Counter,
}

impl SyncMetrics {
    /// The metrics, registered in `registry`, every label combination at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = SyncMetrics {
            snapshot_keys: Gauge::default(),
            store_revision: Gauge::default(),
            db_loads: Family::default(),
            db_errors: Counter::default(),
            // Loads take milliseconds to seconds.
            db_query_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            misses: Family::default(),
            ready: Gauge::default(),
            database_revision: Gauge::default(),
            notifications: Counter::default(),
            change_listener_up: Gauge::default(),
            changelog_batches: Gauge::default(),
            changelog_records: Gauge::default(),
            confirmed_age: Gauge::default(),
            probes: Family::default(),
            history_resets: Counter::default(),
        };
        registry.register(
            "keysync_snapshot_keys",
            "Keys held in memory, expired ones included",
            metrics.snapshot_keys.clone(),
        );
        registry.register(
            "keysync_store_revision",
            "Database revision the in-memory key set reflects",
            metrics.store_revision.clone(),
        );
        registry.register(
            "keysync_db_loads",
            "Loads from PostgreSQL by kind and result",
            metrics.db_loads.clone(),
        );
        registry.register(
            "keysync_db_errors",
            "Failed PostgreSQL loads",
            metrics.db_errors.clone(),
        );
        registry.register(
            "keysync_db_query_duration_seconds",
            "Duration of PostgreSQL loads by kind (a full load includes filling or comparing \
             the in-memory key set, done as rows arrive)",
            metrics.db_query_duration.clone(),
        );
        registry.register(
            "keysync_misses",
            "Lookups (LookupKey, ext_authz Check) of keys not in memory, by how they were \
             answered: store (from memory kept current by change notifications, no query) \
             or catch_up (after asking for a catch-up)",
            metrics.misses.clone(),
        );
        registry.register(
            "keysync_ready",
            "1 while the key set was confirmed against PostgreSQL within \
             KEYSYNC_MAX_UNCONFIRMED (/readyz 200, gRPC health SERVING)",
            metrics.ready.clone(),
        );
        registry.register(
            "keysync_database_revision",
            "Revision counter read from PostgreSQL by the last successful load or catch-up",
            metrics.database_revision.clone(),
        );
        registry.register(
            "keysync_notifications",
            "Change notifications received from PostgreSQL",
            metrics.notifications.clone(),
        );
        registry.register(
            "keysync_change_listener_up",
            "1 while the change listener is connected and caught up (and the last catch-up \
             succeeded): lookups of keys not in memory are then answered without a query",
            metrics.change_listener_up.clone(),
        );
        registry.register(
            "keysync_changelog_batches",
            "Change batches held for WatchKeys replay",
            metrics.changelog_batches.clone(),
        );
        registry.register(
            "keysync_changelog_records",
            "Records (upserts plus removals) held for WatchKeys replay; grows to \
             KEYSYNC_CHANGELOG_RECORDS and stays there",
            metrics.changelog_records.clone(),
        );
        registry.register(
            "keysync_confirmed_age_seconds",
            "Seconds since the key set was last confirmed against PostgreSQL (a query that \
             succeeded and showed it current); before the first, since keysync started",
            metrics.confirmed_age.clone(),
        );
        registry.register(
            "keysync_revision_probes",
            "Periodic reads of the revision counter by result (current: confirmed; behind: \
             a catch-up was asked for; history_changed: a restore or failover was found; \
             error: failed or timed out)",
            metrics.probes.clone(),
        );
        registry.register(
            "keysync_history_resets",
            "Times the database's revision history changed under keysync (revision counter \
             gone back, another database or timeline): everything reloaded, watchers resynced",
            metrics.history_resets.clone(),
        );
        metrics.create_series();
        metrics
    }

    /// Every label combination, so dashboards see zeros instead of missing series. The
    /// guards are only needed to create the series, not to hold them.
    fn create_series(&self) {
        for kind in [LoadKind::Full, LoadKind::Incremental] {
            for result in [LoadResult::Ok, LoadResult::Error] {
                drop(self.db_loads.get_or_create(&LoadLabels { kind, result }));
            }
            drop(self.db_query_duration.get_or_create(&KindLabels { kind }));
        }
        for answered_by in [MissAnswer::Store, MissAnswer::CatchUp] {
            drop(self.misses.get_or_create(&MissLabels { answered_by }));
        }
        for result in [
            ProbeResult::Current,
            ProbeResult::Behind,
            ProbeResult::HistoryChanged,
            ProbeResult::Error,
        ] {
            drop(self.probes.get_or_create(&ProbeLabels { result }));
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

    pub fn record_miss(&self, answered_by: MissAnswer) {
        self.misses.get_or_create(&MissLabels { answered_by }).inc();
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

    /// `keysync_history_resets_total`, for tests that hold no registry.
    #[cfg(test)]
    pub fn history_resets(&self) -> u64 {
        self.history_resets.get()
    }
}
