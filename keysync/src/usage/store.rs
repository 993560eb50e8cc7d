//! Storing a flush: one transaction, the same eight statements whatever the number of
//! counters (arrays passed with `UNNEST`), so PostgreSQL's work grows with the number of
//! active counters, never with the request rate.
//!
//! 1. Lock the instance's row in `usage_instance_totals` (created on its first flush)
//!    and read its per-instance totals and allowance: a second flush of the same
//!    instance (a retry racing the original) waits here and then sees what the first
//!    stored.
//! 2. Read the instance's stored cumulative values of the flushed counters.
//! 3. Compute each increment: `new - stored`, never below zero. A value lower than the
//!    stored one means a flush older than one already stored (delayed, or retried after
//!    a later one got through) or an instance id used twice; keysync cannot tell them
//!    apart, so it adds nothing for that value and keeps the higher one: nothing is
//!    counted twice, and the counter resumes adding once it passes the stored value.
//!    Such flushes are logged. Then read the organization of each grown counter's key
//!    (`api_keys`), and take of each increment what [`crate::usage::screening`] lets
//!    through: a key keysync issued, its own organization, within the instance's
//!    allowance ([`crate::usage::allowance`]). The cumulative values are stored whatever
//!    was refused, so a refused part never comes back.
//! 4. Add the non-zero increments to `usage_hourly` for the flush's hour (one upsert;
//!    sums saturate at 2^63-1 rather than fail).
//! 5. Store the changed cumulative values (one upsert).
//! 6. Store the per-instance totals, the allowance left and the flush's cut time (the
//!    end of its window), and add the totals' increments to `usage_gateway_hourly`.
//!
//! What it did comes back as [`Recorded`], with the increments and their window (from
//! the instance's previous cut time to this flush's) for the usage export, which
//! publishes them only after the commit.
//!
//! With the increments, one statement moves the last use of their keys
//! ([`crate::usage::last_used`]), one reads their organizations' external ids (for the
//! export's `subject`), and one more adds the forwarded requests to the use of the
//! organizations and keys with a quota and to this instance's leases
//! ([`crate::quota::flushed_use`]).
//!
//! Counters of keys that do not exist, or of another organization than their key's, are
//! refused, not failed: the rest of the flush is stored.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

use super::allowance::Ceiling;
use super::flush::{Counter, Flush, Values};
use super::last_used;
use super::screening::{self, Owners, Refused};
use crate::quota::alert::Crossing;
use crate::quota::flushed_use::{self, Increments};

/// A counter's stored cumulative values: org, key, endpoint, outcome, the eight values.
type StoredRow = (Uuid, Uuid, String, i16, Vec<i64>);

/// The value columns, in [`Values`] order.
pub const VALUE_COLUMNS: [&str; 8] = [
    "requests",
    "duration_us",
    "le_10ms",
    "le_100ms",
    "le_1s",
    "over_1s",
    "request_bytes",
    "response_bytes",
];

/// What storing a flush did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recorded {
    /// Counters in the flush (all taken, whether or not they had grown).
    pub counters: usize,
    /// Counters that had grown: rows upserted into `usage_hourly`.
    pub grown: usize,
    /// Requests added to `usage_hourly`.
    pub requests: i64,
    /// Counters with a value lower than the one stored (nothing added for it).
    pub went_back: usize,
    /// The requests of grown counters that were refused, by reason.
    pub refused: Refused,
    /// Quota thresholds this flush's use crossed (announced once a period).
    pub quota_crossings: Vec<Crossing>,
    /// The counters that had grown, each with its increments as `values`, in flush
    /// order.
    pub increments: Vec<Counter>,
    /// The window the increments were counted in: from the instance's previous stored
    /// cut time (`None` on its first flush: the gateway counted since it started) to
    /// this flush's cut time. A flush cut before the stored one (delayed) gets an
    /// empty window at its own cut time.
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: DateTime<Utc>,
    /// The external id of each organization of `increments` that has one: the usage
    /// events' `subject` ([`crate::usage::cloud_event`]), read in the flush's
    /// transaction.
    pub external_ids: HashMap<Uuid, String>,
}

/// An instance's totals row as a flush finds it: unattributed and dropped requests, the
/// last cut time, the allowance and when it was worked out, and PostgreSQL's clock.
type InstanceRow = (
    i64,
    i64,
    Option<DateTime<Utc>>,
    Option<i64>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

/// Where flushes are stored; cheap to clone.
#[derive(Debug, Clone)]
pub struct UsageStore {
    pool: PgPool,
    ceiling: Ceiling,
}

/// Column arrays for an UNNEST: ids, endpoints, outcomes and the eight values.
#[derive(Debug, Default)]
struct Columns {
    org_ids: Vec<Uuid>,
    key_ids: Vec<Uuid>,
    endpoints: Vec<String>,
    outcomes: Vec<i16>,
    values: [Vec<i64>; 8],
}

impl Columns {
    fn push(&mut self, counter: &Counter, values: &Values) {
        self.org_ids.push(counter.org_id);
        self.key_ids.push(counter.key_id);
        self.endpoints.push(counter.endpoint.clone());
        self.outcomes.push(i16::from(counter.outcome.code()));
        for (column, value) in self.values.iter_mut().zip(values) {
            column.push(*value);
        }
    }

    fn is_empty(&self) -> bool {
        self.org_ids.is_empty()
    }
}

/// `INSERT INTO table (<lead>, org_id, key_id, endpoint, outcome, values...)
/// SELECT $1, * FROM UNNEST($2.., ) ON CONFLICT (conflict) DO UPDATE SET each value =
/// update(value)`.
fn upsert(table: &str, lead: &str, conflict: &str, update: fn(&str, &str) -> String) -> String {
    let columns = VALUE_COLUMNS.join(", ");
    let arrays: Vec<String> = (0..VALUE_COLUMNS.len())
        .map(|index| format!("${}::bigint[]", index + 6))
        .collect();
    let sets: Vec<String> = VALUE_COLUMNS
        .iter()
        .map(|column| format!("{column} = {}", update(table, column)))
        .collect();
    format!(
        "INSERT INTO {table} ({lead}, org_id, key_id, endpoint, outcome, {columns}) \
         SELECT $1, * FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::smallint[], {}) \
         ON CONFLICT ({conflict}) DO UPDATE SET {}",
        arrays.join(", "),
        sets.join(", ")
    )
}

fn saturating_sum(table: &str, column: &str) -> String {
    format!("LEAST({table}.{column}::numeric + EXCLUDED.{column}, 9223372036854775807)::bigint")
}

fn replaced(_table: &str, column: &str) -> String {
    format!("EXCLUDED.{column}")
}

impl UsageStore {
    /// Flushes stored in `pool`, each instance's bounded by `ceiling`.
    pub fn new(pool: PgPool, ceiling: Ceiling) -> UsageStore {
        UsageStore { pool, ceiling }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Stores `flush` (see the module's documentation); an error means nothing of it was
    /// stored.
    pub async fn record(&self, flush: &Flush) -> Result<Recorded, sqlx::Error> {
        let mut transaction = self.pool.begin().await?;
        let instance = flush.instance_id;

        // `last_cut_at` and the allowance are not set here, so RETURNING gives what the
        // previous flush left.
        let row: InstanceRow = sqlx::query_as(
            "INSERT INTO usage_instance_totals (instance_id) VALUES ($1) \
             ON CONFLICT (instance_id) DO UPDATE SET last_seen = now() \
             RETURNING unattributed_requests, dropped_requests, last_cut_at, allowance, \
                       allowance_at, now()",
        )
        .bind(instance)
        .fetch_one(&mut *transaction)
        .await?;
        let (unattributed_before, dropped_before, last_cut_at, stored_allowance, allowance_at, now) =
            row;
        let elapsed_ms = allowance_at.map_or(0, |at| (now - at).num_milliseconds());
        let mut allowance = self.ceiling.refill(stored_allowance, elapsed_ms);

        let mut flushed = Columns::default();
        for counter in &flush.counters {
            flushed.push(counter, &counter.values);
        }
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT u.org_id, u.key_id, u.endpoint, u.outcome, ARRAY[u.requests, \
                    u.duration_us, u.le_10ms, u.le_100ms, u.le_1s, u.over_1s, \
                    u.request_bytes, u.response_bytes] \
             FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::smallint[]) \
                  AS f (org_id, key_id, endpoint, outcome) \
             JOIN usage_instances u ON u.instance_id = $1 AND u.org_id = f.org_id \
                  AND u.key_id = f.key_id AND u.endpoint = f.endpoint \
                  AND u.outcome = f.outcome",
        )
        .bind(instance)
        .bind(&flushed.org_ids)
        .bind(&flushed.key_ids)
        .bind(&flushed.endpoints)
        .bind(&flushed.outcomes)
        .fetch_all(&mut *transaction)
        .await?;
        let stored: HashMap<(Uuid, Uuid, String, i16), Vec<i64>> = rows
            .into_iter()
            .map(|(org_id, key_id, endpoint, outcome, values)| {
                ((org_id, key_id, endpoint, outcome), values)
            })
            .collect();

        let (window_start, window_end) = window(last_cut_at, flush.cut_at);
        let mut recorded = Recorded {
            counters: flush.counters.len(),
            window_start,
            window_end,
            ..Recorded::default()
        };
        let mut increments = Columns::default();
        let mut changed = Columns::default();
        let mut grown: Vec<(&Counter, Values)> = Vec::new();
        for counter in &flush.counters {
            let outcome = i16::from(counter.outcome.code());
            let at = (
                counter.org_id,
                counter.key_id,
                counter.endpoint.clone(),
                outcome,
            );
            let before = stored.get(&at).map(Vec::as_slice).unwrap_or(&[0; 8]);
            let mut increment = [0; 8];
            let mut kept = [0; 8];
            let mut went_back = false;
            for index in 0..8 {
                let old = before.get(index).copied().unwrap_or(0);
                let new = counter.values[index];
                increment[index] = new.saturating_sub(old).max(0);
                kept[index] = new.max(old);
                went_back |= new < old;
            }
            if went_back {
                recorded.went_back += 1;
            }
            if increment != [0; 8] {
                grown.push((counter, increment));
            }
            // Stored whatever screening refuses below: a refused part never comes back.
            if kept.as_slice() != before {
                changed.push(counter, &kept);
            }
        }
        let owners = key_owners(&mut transaction, &grown).await?;
        for (counter, increment) in grown {
            let taken = screening::screen(
                counter,
                increment,
                &owners,
                &mut allowance,
                &mut recorded.refused,
            );
            if taken != [0; 8] {
                recorded.grown += 1;
                recorded.requests = recorded.requests.saturating_add(taken[0]);
                increments.push(counter, &taken);
                recorded.increments.push(Counter {
                    values: taken,
                    ..counter.clone()
                });
            }
        }

        if !increments.is_empty() {
            let statement = upsert(
                "usage_hourly",
                "hour",
                "org_id, hour, key_id, endpoint, outcome",
                saturating_sum,
            );
            bind_columns(
                sqlx::query(AssertSqlSafe(statement)).bind(flush.hour),
                &increments,
            )
            .execute(&mut *transaction)
            .await?;
            last_used::record(&mut transaction, &increments.key_ids, flush.cut_at).await?;
            recorded.external_ids = external_ids(&mut transaction, &increments.org_ids).await?;
            recorded.quota_crossings = flushed_use::record(
                &mut transaction,
                instance,
                flush.hour,
                Increments {
                    org_ids: &increments.org_ids,
                    key_ids: &increments.key_ids,
                    outcomes: &increments.outcomes,
                    requests: &increments.values[0],
                },
            )
            .await?;
        }
        if !changed.is_empty() {
            let statement = upsert(
                "usage_instances",
                "instance_id",
                "instance_id, org_id, key_id, endpoint, outcome",
                replaced,
            );
            bind_columns(
                sqlx::query(AssertSqlSafe(statement)).bind(instance),
                &changed,
            )
            .execute(&mut *transaction)
            .await?;
        }

        let unattributed = flush.unattributed_requests.max(unattributed_before);
        let dropped = flush.dropped_requests.max(dropped_before);
        let totals_grew = (unattributed, dropped) != (unattributed_before, dropped_before);
        let cut_advanced = last_cut_at.is_none_or(|last| flush.cut_at > last);
        let spent = stored_allowance != Some(allowance);
        if totals_grew || cut_advanced || spent {
            sqlx::query(
                "UPDATE usage_instance_totals SET unattributed_requests = $2, \
                 dropped_requests = $3, \
                 last_cut_at = GREATEST(last_cut_at, $4), allowance = $5, allowance_at = $6 \
                 WHERE instance_id = $1",
            )
            .bind(instance)
            .bind(unattributed)
            .bind(dropped)
            .bind(flush.cut_at)
            .bind(allowance)
            .bind(now)
            .execute(&mut *transaction)
            .await?;
        }
        if totals_grew {
            add_gateway_hour(
                &mut transaction,
                flush.hour,
                unattributed - unattributed_before,
                dropped - dropped_before,
            )
            .await?;
        }
        if flush.unattributed_requests < unattributed_before
            || flush.dropped_requests < dropped_before
        {
            recorded.went_back += 1;
        }
        transaction.commit().await?;
        Ok(recorded)
    }
}

/// The window of a flush cut at `cut_at` after a stored flush cut at `last_cut_at`:
/// `(last, cut]`, or an empty one at `cut_at` when this flush was cut before the stored
/// one (a delayed flush).
fn window(
    last_cut_at: Option<DateTime<Utc>>,
    cut_at: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, DateTime<Utc>) {
    match last_cut_at {
        Some(last) if last > cut_at => (Some(cut_at), cut_at),
        last => (last, cut_at),
    }
}

/// The organization of each key of the `grown` counters that exists (in any state).
async fn key_owners(
    transaction: &mut sqlx::PgConnection,
    grown: &[(&Counter, Values)],
) -> Result<Owners, sqlx::Error> {
    if grown.is_empty() {
        return Ok(Owners::new());
    }
    let mut keys: Vec<Uuid> = grown.iter().map(|(counter, _)| counter.key_id).collect();
    keys.sort_unstable();
    keys.dedup();
    let rows: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT id, org_id FROM api_keys WHERE id = ANY($1::uuid[])")
            .bind(&keys)
            .fetch_all(transaction)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The external id of each of `org_ids` (repeats allowed) that has one.
async fn external_ids(
    transaction: &mut sqlx::PgConnection,
    org_ids: &[Uuid],
) -> Result<HashMap<Uuid, String>, sqlx::Error> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, external_id FROM organizations \
         WHERE id = ANY($1::uuid[]) AND external_id IS NOT NULL",
    )
    .bind(org_ids)
    .fetch_all(transaction)
    .await?;
    Ok(rows.into_iter().collect())
}

async fn add_gateway_hour(
    transaction: &mut sqlx::PgConnection,
    hour: DateTime<Utc>,
    unattributed: i64,
    dropped: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO usage_gateway_hourly (hour, unattributed_requests, dropped_requests) \
         VALUES ($1, $2, $3) ON CONFLICT (hour) DO UPDATE SET \
         unattributed_requests = LEAST(usage_gateway_hourly.unattributed_requests::numeric \
             + EXCLUDED.unattributed_requests, 9223372036854775807)::bigint, \
         dropped_requests = LEAST(usage_gateway_hourly.dropped_requests::numeric \
             + EXCLUDED.dropped_requests, 9223372036854775807)::bigint",
    )
    .bind(hour)
    .bind(unattributed)
    .bind(dropped)
    .execute(transaction)
    .await?;
    Ok(())
}

fn bind_columns<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    columns: &'q Columns,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut query = query
        .bind(&columns.org_ids)
        .bind(&columns.key_ids)
        .bind(&columns.endpoints)
        .bind(&columns.outcomes);
    for values in &columns.values {
        query = query.bind(values);
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_runs_from_the_previous_cut_to_this_one() {
        let at = |seconds| DateTime::from_timestamp(seconds, 0).unwrap();
        assert_eq!(window(None, at(100)), (None, at(100)));
        assert_eq!(window(Some(at(90)), at(100)), (Some(at(90)), at(100)));
        assert_eq!(window(Some(at(100)), at(100)), (Some(at(100)), at(100)));
        // A delayed flush: an empty window at its own cut.
        assert_eq!(window(Some(at(110)), at(100)), (Some(at(100)), at(100)));
    }

    #[test]
    fn upserts_are_one_statement_over_arrays() {
        let statement = upsert(
            "usage_hourly",
            "hour",
            "org_id, hour, key_id, endpoint, outcome",
            saturating_sum,
        );
        assert!(
            statement.contains("$4::text[], $5::smallint[]"),
            "{statement}"
        );
        assert!(statement.contains("$13::bigint[]"), "{statement}");
        assert!(!statement.contains("$14"), "{statement}");
        assert!(statement.contains(
            "response_bytes = LEAST(usage_hourly.response_bytes::numeric + EXCLUDED.response_bytes, 9223372036854775807)::bigint"
        ));
        let statement = upsert(
            "usage_instances",
            "instance_id",
            "instance_id, org_id, key_id, endpoint, outcome",
            replaced,
        );
        assert!(
            statement.contains("requests = EXCLUDED.requests"),
            "{statement}"
        );
    }
}
