//! When each key was last used, to the minute, kept from the flushes: the keys whose
//! counters a flush grew were used in its window, so they get the minute of its cut
//! time. Two statements a flush (the keys as an array), in the flush's transaction; no
//! work on the request path and no write per request. An `UPDATE ... FROM unnest`
//! that touches a key's row only when its minute moves (the condition is checked
//! before any row is locked, so a row left as it is costs no write), then an insert of
//! the keys never used before (`DO NOTHING` on the others, which locks nothing either).
//! A key used all the time costs one row update a minute, not one a flush, and a
//! delayed flush never moves it back.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// Records that `key_ids` (repeats allowed) were used by `cut_at`. Keys that no longer
/// exist are skipped.
pub async fn record(
    connection: &mut PgConnection,
    key_ids: &[Uuid],
    cut_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if key_ids.is_empty() {
        return Ok(());
    }
    // Only fails near the ends of chrono's range, which the flush's clamp rules out.
    let minute = cut_at
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap_or(cut_at);
    sqlx::query(
        "UPDATE api_key_last_used l SET last_used_at = $2 \
         FROM (SELECT DISTINCT key_id FROM unnest($1::uuid[]) AS used (key_id)) u \
         WHERE l.key_id = u.key_id AND l.last_used_at < $2",
    )
    .bind(key_ids)
    .bind(minute)
    .execute(&mut *connection)
    .await?;
    sqlx::query(
        "INSERT INTO api_key_last_used (key_id, last_used_at) \
         SELECT DISTINCT k.id, $2::timestamptz \
         FROM unnest($1::uuid[]) AS used (key_id) JOIN api_keys k ON k.id = used.key_id \
         ON CONFLICT (key_id) DO NOTHING",
    )
    .bind(key_ids)
    .bind(minute)
    .execute(connection)
    .await?;
    Ok(())
}
