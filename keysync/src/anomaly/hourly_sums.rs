//! What an evaluation reads of the rollup: every organization's sums for a handful of
//! hours (the hours judged and the same hours of the weeks before), and whether its
//! traffic reaches back far enough to be judged, in one statement.
//!
//! The statement walks the organizations and, for each, probes `usage_hourly`'s primary
//! key `(org_id, hour, ...)` for the listed hours (`hour = ANY(...)`): only the monthly
//! partitions holding those hours are read, and only their rows of those hours. The
//! history check is one more probe per organization that has rows in those hours: the
//! first row at or before the oldest baseline hour. Measured at 1,000 organizations and
//! 13 months of hourly rows (29 million): see `bench/RESULTS.md`, "Anomaly detection". So the cost grows with the number of
//! organizations and the rows per organization and hour (keys, endpoints, outcomes),
//! never with the months of history kept. Sums run over keys, endpoints and outcomes:
//! whatever further columns the rollup's key gains, the statement reads the same.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::judgement::HourSums;
use crate::usage::Outcome;

/// The outcomes counted as refused by the gateway.
pub const REFUSED: [Outcome; 3] = [
    Outcome::RateLimited,
    Outcome::QuotaExceeded,
    Outcome::PolicyDenied,
];

/// The statement; `$1` the hours, `$2` the refused outcomes, `$3` the 5xx outcome, `$4`
/// the oldest hour an organization's traffic must reach back to. One row per
/// organization with traffic in the hours: the hours and their sums as arrays.
///
/// The lateral subquery is what makes PostgreSQL probe the primary key per
/// organization (`org_id = o.id AND hour = ANY($1)`) instead of scanning whole monthly
/// partitions for the hours; the history check runs once per row, so once per
/// organization with traffic.
const STATEMENT: &str = "\
SELECT o.id, s.hours, s.requests, s.refused, s.upstream_5xx,
       EXISTS (SELECT 1 FROM usage_hourly e WHERE e.org_id = o.id AND e.hour <= $4)
           AS old_enough
FROM organizations o
CROSS JOIN LATERAL (
    SELECT array_agg(h.hour) AS hours, array_agg(h.requests) AS requests,
           array_agg(h.refused) AS refused, array_agg(h.upstream_5xx) AS upstream_5xx
    FROM (
        SELECT u.hour,
               LEAST(sum(u.requests), 9223372036854775807)::bigint AS requests,
               LEAST(coalesce(sum(u.requests) FILTER (WHERE u.outcome = ANY($2)), 0),
                     9223372036854775807)::bigint AS refused,
               LEAST(coalesce(sum(u.requests) FILTER (WHERE u.outcome = $3), 0),
                     9223372036854775807)::bigint AS upstream_5xx
        FROM usage_hourly u
        WHERE u.org_id = o.id AND u.hour = ANY($1)
        GROUP BY u.hour
    ) h
) s
WHERE s.hours IS NOT NULL";

/// One organization's sums in the hours read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgHours {
    /// Whether it has traffic at or before the oldest baseline hour; else it is too new
    /// to judge.
    pub old_enough: bool,
    /// The hours it had traffic in; an hour missing had none.
    pub hours: HashMap<DateTime<Utc>, HourSums>,
}

impl OrgHours {
    /// Its sums in `hour` (zeros without traffic).
    pub fn at(&self, hour: DateTime<Utc>) -> HourSums {
        self.hours.get(&hour).copied().unwrap_or_default()
    }
}

type Row = (Uuid, Vec<DateTime<Utc>>, Vec<i64>, Vec<i64>, Vec<i64>, bool);

/// The sums of every organization with traffic in any of `hours`, each with whether its
/// traffic reaches back to `history_from`.
pub async fn read(
    connection: &mut PgConnection,
    hours: &[DateTime<Utc>],
    history_from: DateTime<Utc>,
) -> Result<HashMap<Uuid, OrgHours>, sqlx::Error> {
    let refused: Vec<i16> = REFUSED
        .iter()
        .map(|outcome| i16::from(outcome.code()))
        .collect();
    let rows: Vec<Row> = sqlx::query_as(STATEMENT)
        .bind(hours)
        .bind(&refused)
        .bind(i16::from(Outcome::Status5xx.code()))
        .bind(history_from)
        // Planned with these very hours each time: a prepared statement's generic plan
        // cannot leave out the partitions of other months and reads them all.
        .persistent(false)
        .fetch_all(connection)
        .await?;
    let mut orgs = HashMap::with_capacity(rows.len());
    for (org_id, hours, requests, refused, upstream_5xx, old_enough) in rows {
        let sums = hours
            .into_iter()
            .zip(requests)
            .zip(refused)
            .zip(upstream_5xx)
            .map(|(((hour, requests), refused), upstream_5xx)| {
                (
                    hour,
                    HourSums {
                        requests,
                        refused,
                        upstream_5xx,
                    },
                )
            });
        orgs.insert(
            org_id,
            OrgHours {
                old_enough,
                hours: sums.collect(),
            },
        );
    }
    Ok(orgs)
}

/// The statement as it runs, for `EXPLAIN` in the tests and the cost measurement.
pub fn statement() -> &'static str {
    STATEMENT
}
