//! The scan that notices keys whose expiry passed and announces each once
//! (`key.expired`): an expiry is no write, so nothing else would. The key is marked in
//! `webhook_key_expiries` and its deliveries queued in one transaction; of two replicas
//! scanning at once, the insert of only one takes, and only that one announces.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

use super::event::EventType;
use super::metrics::WebhookMetrics;
use super::outbox;
use crate::log_throttle::{LogThrottle, LOG_PERIOD};

/// Most keys announced by one scan (the next scan takes the rest).
const BATCH: i64 = 1000;

/// How far back a scan looks: a key that expired longer ago while no keysync ran is not
/// announced.
const LOOKBACK_DAYS: i32 = 7;

/// Scans every `interval` until `stop`.
pub async fn run(
    pool: PgPool,
    interval: Duration,
    metrics: Arc<WebhookMetrics>,
    stop: CancellationToken,
) {
    let complaints = LogThrottle::new(LOG_PERIOD);
    loop {
        // The first scan after one interval: a start costs PostgreSQL nothing more.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match announce(&pool).await {
            Ok(keys) => metrics.record_expiries(keys),
            Err(error) => {
                if let Some(held_back) = complaints.admit(Instant::now()) {
                    warn!(
                        "webhooks: cannot scan for expired keys: {error} ({held_back} more \
                         held back); retrying"
                    );
                }
            }
        }
    }
}

/// Marks and announces the active keys that expired since the last scan; returns how
/// many.
pub async fn announce(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    let expired: Vec<(Uuid, Uuid, String, String, DateTime<Utc>)> = sqlx::query_as(
        "WITH found AS ( \
             INSERT INTO webhook_key_expiries (key_id, expires_at) \
             SELECT k.id, k.expires_at FROM api_keys k \
             WHERE k.active AND k.expires_at <= now() \
               AND k.expires_at > now() - make_interval(days => $1) \
               AND NOT EXISTS (SELECT 1 FROM webhook_key_expiries e WHERE e.key_id = k.id) \
             ORDER BY k.expires_at LIMIT $2 \
             ON CONFLICT (key_id) DO NOTHING \
             RETURNING key_id) \
         SELECT k.id, k.org_id, k.name, k.key_prefix, k.expires_at \
         FROM found JOIN api_keys k ON k.id = found.key_id ORDER BY k.expires_at",
    )
    .bind(LOOKBACK_DAYS)
    .bind(BATCH)
    .fetch_all(&mut *transaction)
    .await?;
    for (key_id, org_id, name, prefix, expires_at) in &expired {
        outbox::enqueue(
            &mut transaction,
            EventType::KeyExpired,
            &json!({
                "key_id": key_id,
                "org_id": org_id,
                "name": name,
                "prefix": prefix,
                "expires_at": expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            }),
        )
        .await?;
    }
    transaction.commit().await?;
    Ok(u64::try_from(expired.len()).unwrap_or(u64::MAX))
}
