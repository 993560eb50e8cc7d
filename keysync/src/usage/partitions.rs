//! The monthly partitions of `usage_hourly` (`usage_hourly_pYYYYMM`, UTC months), kept
//! by `keysync serve` on start and then daily:
//!
//! - the current month's and the next [`MONTHS_AHEAD`] months' partitions exist, so a
//!   flush never lands in the default partition while keysync runs daily;
//! - partitions of months before the retention (the current month and the
//!   `KEYSYNC_USAGE_RETENTION` months before it are kept; default 13) are dropped, with
//!   `usage_gateway_hourly` rows, default-partition rows and anomaly alerts as old;
//! - instances not seen for [`INSTANCE_TTL`] lose their stored cumulative values (an
//!   Envoy process gone that long does not come back with the same id).
//!
//! PostgreSQL refuses to create a month's partition while the default partition holds
//! rows of that month. Should that ever happen (keysync stopped for months while rows
//! were written through some other path), creating the partition moves them: the new
//! table is created apart, the month's rows are moved into it from the default
//! partition (locked meanwhile) and it is attached, all in one transaction.

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use sqlx::{AssertSqlSafe, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::database::describe_sqlx;

/// Months of partitions created ahead of the current one.
pub const MONTHS_AHEAD: u32 = 3;
/// Default of `KEYSYNC_USAGE_RETENTION`: months kept before the current one.
pub const DEFAULT_RETENTION_MONTHS: u32 = 13;
/// How long an instance's cumulative values are kept after its last flush.
pub const INSTANCE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the maintenance runs after the first time.
pub const PERIOD: Duration = Duration::from_secs(24 * 3600);
/// How soon a failed maintenance is tried again.
pub const RETRY: Duration = Duration::from_secs(600);
/// Longest wait for a table lock (a partition is attached or dropped between flushes).
const LOCK_TIMEOUT: &str = "5s";

const PREFIX: &str = "usage_hourly_p";

/// A UTC month, counted from year 0 (`year * 12 + month - 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month(i32);

impl Month {
    pub fn of(at: DateTime<Utc>) -> Month {
        Month(at.year() * 12 + at.month0() as i32)
    }

    pub fn plus(self, months: i32) -> Month {
        Month(self.0 + months)
    }

    fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    fn month(self) -> u32 {
        // In 1..=12 by construction.
        self.0.rem_euclid(12) as u32 + 1
    }

    /// Its first instant.
    pub fn start(self) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(self.year(), self.month(), 1)
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .map_or(DateTime::<Utc>::MIN_UTC, |at| Utc.from_utc_datetime(&at))
    }

    /// Its partition's name.
    pub fn partition(self) -> String {
        format!("{PREFIX}{:04}{:02}", self.year(), self.month())
    }

    /// The month of a partition name keysync made; None for any other name.
    pub fn of_partition(name: &str) -> Option<Month> {
        let digits = name.strip_prefix(PREFIX)?;
        if digits.len() != 6 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let year: i32 = digits[..4].parse().ok()?;
        let month: i32 = digits[4..].parse().ok()?;
        (1..=12)
            .contains(&month)
            .then_some(Month(year * 12 + month - 1))
    }
}

/// What one maintenance did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintained {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
    /// Rows moved out of the default partition into a new month's partition.
    pub moved_rows: u64,
    /// Stored cumulative values deleted with their instances.
    pub counters_pruned: u64,
    /// Quota leases of instances not seen for as long.
    pub leases_pruned: u64,
}

/// The partitions of `usage_hourly` (with keysync's names), by month.
pub async fn partitions(pool: &PgPool) -> Result<Vec<(Month, String)>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'usage_hourly'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(names
        .into_iter()
        .filter_map(|name| Month::of_partition(&name).map(|month| (month, name)))
        .collect())
}

/// Creates the partitions due, drops the expired ones, prunes instances, as of `now`.
pub async fn maintain(
    pool: &PgPool,
    now: DateTime<Utc>,
    retention_months: u32,
) -> Result<Maintained, sqlx::Error> {
    let mut done = Maintained::default();
    let existing = partitions(pool).await?;
    let current = Month::of(now);
    for ahead in 0..=MONTHS_AHEAD as i32 {
        let month = current.plus(ahead);
        if !existing.iter().any(|(have, _)| *have == month) {
            done.moved_rows += create(pool, month).await?;
            done.created.push(month.partition());
        }
    }
    let oldest_kept = current.plus(-(retention_months.min(12_000) as i32));
    for (month, name) in &existing {
        if *month < oldest_kept {
            let mut transaction = pool.begin().await?;
            sqlx::query(AssertSqlSafe(format!(
                "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
            )))
            .execute(&mut *transaction)
            .await?;
            // The name is one of keysync's (checked by `of_partition`): safe to splice.
            sqlx::query(AssertSqlSafe(format!("DROP TABLE {name}")))
                .execute(&mut *transaction)
                .await?;
            transaction.commit().await?;
            done.dropped.push(name.clone());
        }
    }
    let cutoff = oldest_kept.start();
    sqlx::query("DELETE FROM usage_hourly_default WHERE hour < $1")
        .bind(cutoff)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM usage_gateway_hourly WHERE hour < $1")
        .bind(cutoff)
        .execute(pool)
        .await?;
    // The fleet overview's rollup covers the months kept, no more.
    sqlx::query("DELETE FROM usage_fleet_hourly WHERE hour < $1")
        .bind(cutoff)
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM usage_org_daily WHERE day < $1")
        .bind(cutoff)
        .execute(pool)
        .await?;
    let stale = now - chrono::TimeDelta::from_std(INSTANCE_TTL).unwrap_or_default();
    done.counters_pruned = sqlx::query(
        "WITH gone AS (DELETE FROM usage_instance_totals WHERE last_seen < $1 \
                       RETURNING instance_id) \
         DELETE FROM usage_instances WHERE instance_id IN (SELECT instance_id FROM gone)",
    )
    .bind(stale)
    .execute(pool)
    .await?
    .rows_affected();
    // Quota leases live as long as the instances that hold them (a restarted Envoy is a
    // new instance), and a quota's use as long as the rollup it was counted from.
    done.leases_pruned = sqlx::query("DELETE FROM quota_leases WHERE updated_at < $1")
        .bind(stale)
        .execute(pool)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM quota_usage WHERE period_start < $1")
        .bind(cutoff)
        .execute(pool)
        .await?;
    // Anomaly alerts are kept as long as the hours they judged.
    sqlx::query("DELETE FROM anomaly_alerts WHERE hour < $1")
        .bind(cutoff)
        .execute(pool)
        .await?;
    Ok(done)
}

/// Creates `month`'s partition, moving any of its rows out of the default partition;
/// returns how many rows moved.
async fn create(pool: &PgPool, month: Month) -> Result<u64, sqlx::Error> {
    let name = month.partition();
    let (from, to) = (month.start(), month.plus(1).start());
    let mut transaction = pool.begin().await?;
    sqlx::query(AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"
    )))
    .execute(&mut *transaction)
    .await?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {name} (LIKE usage_hourly INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )))
    .execute(&mut *transaction)
    .await?;
    // No flush may add rows of this month to the default partition until it is attached.
    sqlx::query("LOCK TABLE usage_hourly_default IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *transaction)
        .await?;
    let moved = sqlx::query(AssertSqlSafe(format!(
        "WITH moved AS (DELETE FROM usage_hourly_default WHERE hour >= $1 AND hour < $2 \
                        RETURNING *) \
         INSERT INTO {name} SELECT * FROM moved"
    )))
    .bind(from)
    .bind(to)
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE usage_hourly ATTACH PARTITION {name} FOR VALUES FROM ('{}') TO ('{}')",
        from.to_rfc3339(),
        to.to_rfc3339()
    )))
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    if moved > 0 {
        warn!("usage partition {name}: moved {moved} rows out of the default partition");
    }
    Ok(moved)
}

/// Runs [`maintain`] now and every [`PERIOD`] (every [`RETRY`] after a failure) until
/// `stop`.
pub async fn run(pool: PgPool, retention_months: u32, stop: CancellationToken) {
    loop {
        let wait = match maintain(&pool, Utc::now(), retention_months).await {
            Ok(done) => {
                if !done.created.is_empty() || !done.dropped.is_empty() {
                    info!(
                        "usage partitions: created [{}], dropped [{}]",
                        done.created.join(", "),
                        done.dropped.join(", ")
                    );
                }
                PERIOD
            }
            Err(error) => {
                warn!(
                    "usage partition maintenance failed (retried in {}s): {}",
                    RETRY.as_secs(),
                    describe_sqlx(&error)
                );
                RETRY
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn months_name_their_partitions_and_bounds() {
        let month = Month::of(at("2026-12-31T23:59:59Z"));
        assert_eq!(month.partition(), "usage_hourly_p202612");
        assert_eq!(month.plus(1).partition(), "usage_hourly_p202701");
        assert_eq!(month.plus(-13).partition(), "usage_hourly_p202511");
        assert_eq!(month.start(), at("2026-12-01T00:00:00Z"));
        assert_eq!(month.plus(1).start(), at("2027-01-01T00:00:00Z"));
        assert_eq!(Month::of_partition("usage_hourly_p202612"), Some(month));
        for other in [
            "usage_hourly_default",
            "usage_hourly_p2026121",
            "usage_hourly_p202613",
            "usage_hourly_p202600",
            "usage_hourly_p20261x",
        ] {
            assert_eq!(Month::of_partition(other), None, "{other}");
        }
    }
}
