//! The sender of `serve`: claims due deliveries from the outbox, attempts each in a task
//! of its own, and records what happened: delivered, or retried later with jittered
//! exponential backoff until the retry window closes, then given up.
//!
//! Claiming locks due rows with `FOR UPDATE SKIP LOCKED` and moves their
//! `next_attempt_at` past the attempt's timeout ([`DeliverySettings::lease`]) in the same
//! transaction: another replica skips them while they are locked and does not find them
//! due after, so no two replicas send a row at once; a replica killed mid-attempt leaves
//! the row due again when the lease ends. Each endpoint has at most
//! `endpoint_concurrency` attempts in progress and each attempt a timeout, so a slow or
//! dead receiver holds a few slots and delays nobody else.
//!
//! While idle it asks PostgreSQL nothing: it wakes when a delivery is queued (the
//! outbox's notification, on a connection of its own), when the next retry or lease is
//! due (read in each claim's transaction), when an attempt ends, and at the latest every
//! `poll_interval` (a notification lost with a dropped connection).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use http::header::HeaderValue;
use http::HeaderName;
use keysync_backoff::Backoff;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::destination::Destination;
use super::metrics::{AttemptResult, WebhookMetrics};
use super::outbox::CHANNEL;
use super::secret::SigningSecret;
use super::sender::{SendError, Sender};
use super::settings::DeliverySettings;
use super::signature;
use crate::log_throttle::{LogThrottle, LOG_PERIOD};

/// The longest error text kept on a delivery row.
const MAX_ERROR_CHARS: usize = 300;

/// A delivery claimed for one attempt, with its endpoint.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    id: Uuid,
    webhook_id: Uuid,
    message_id: String,
    payload: String,
    /// Attempts so far, this one included.
    attempts: i32,
    created_at: DateTime<Utc>,
    url: String,
    secret: String,
    allow_http: bool,
    allow_private: bool,
}

/// What one attempt came to.
#[derive(Debug)]
struct Outcome {
    result: AttemptResult,
    status: Option<u16>,
    error: Option<String>,
}

/// Delivers until `stop`; attempts in progress then are abandoned (their rows are sent
/// again once their lease ends: at least once, under the same `webhook-id`).
pub async fn run(
    pool: PgPool,
    settings: DeliverySettings,
    metrics: Arc<WebhookMetrics>,
    stop: CancellationToken,
) {
    let sender = Sender::new(settings.timeout);
    let mut tasks: JoinSet<()> = JoinSet::new();
    // The endpoint of each task, and the attempts in progress to each endpoint.
    let mut endpoints: HashMap<tokio::task::Id, Uuid> = HashMap::new();
    let mut busy: HashMap<Uuid, usize> = HashMap::new();
    let complaints = LogThrottle::new(LOG_PERIOD);
    let mut listener: Option<PgListener> = None;
    loop {
        if listener.is_none() {
            listener = match listen(&pool).await {
                Ok(listening) => Some(listening),
                Err(error) => {
                    if let Some(held_back) = complaints.admit(Instant::now()) {
                        warn!(
                            "webhooks: cannot listen for queued deliveries: {error} \
                             ({held_back} more held back); polling every {:?}",
                            settings.poll_interval
                        );
                    }
                    None
                }
            };
        }
        let mut wait = settings.poll_interval;
        let room = settings.max_in_flight.saturating_sub(tasks.len());
        if room > 0 {
            match claim(&pool, &settings, &busy, room).await {
                Ok((claimed, next_due)) => {
                    if let Some(next_due) = next_due {
                        let until = (next_due - Utc::now()).to_std().unwrap_or_default();
                        wait = wait.min(until);
                    }
                    for delivery in claimed {
                        *busy.entry(delivery.webhook_id).or_default() += 1;
                        let webhook_id = delivery.webhook_id;
                        let handle = tasks.spawn(attempt(
                            pool.clone(),
                            sender.clone(),
                            settings,
                            metrics.clone(),
                            delivery,
                        ));
                        endpoints.insert(handle.id(), webhook_id);
                    }
                }
                Err(error) => {
                    if let Some(held_back) = complaints.admit(Instant::now()) {
                        warn!(
                            "webhooks: cannot read the outbox: {error} ({held_back} more \
                             held back); retrying"
                        );
                    }
                }
            }
        }
        metrics.set_in_flight(tasks.len());
        let notified = async {
            match listener.as_mut() {
                Some(listening) => listening.recv().await.map(drop),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            woken = notified => {
                if let Err(error) = woken {
                    warn!("webhooks: stopped listening for queued deliveries: {error}");
                    listener = None;
                }
            }
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(error) => error.id(),
                };
                if let Some(webhook_id) = endpoints.remove(&id) {
                    if let Some(count) = busy.get_mut(&webhook_id) {
                        *count = count.saturating_sub(1);
                        if *count == 0 {
                            busy.remove(&webhook_id);
                        }
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tasks.abort_all();
    metrics.set_in_flight(0);
}

/// A connection listening on the outbox's channel.
async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Claims up to `room` due deliveries, at most `endpoint_concurrency` in progress per
/// endpoint counting `busy`, oldest due first; and when the next pending one is due (a
/// retry, or the end of a lease).
async fn claim(
    pool: &PgPool,
    settings: &DeliverySettings,
    busy: &HashMap<Uuid, usize>,
    room: usize,
) -> Result<(Vec<Claimed>, Option<DateTime<Utc>>), sqlx::Error> {
    let full: Vec<Uuid> = busy
        .iter()
        .filter(|(_, count)| **count >= settings.endpoint_concurrency)
        .map(|(id, _)| *id)
        .collect();
    let mut transaction = pool.begin().await?;
    let due: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT id, webhook_id FROM webhook_deliveries \
         WHERE state = 'pending' AND next_attempt_at <= now() AND webhook_id <> ALL ($1) \
         ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(&full)
    .bind(i64::try_from(room).unwrap_or(i64::MAX))
    .fetch_all(&mut *transaction)
    .await?;
    let mut taken: HashMap<Uuid, usize> = HashMap::new();
    let mut ids = Vec::new();
    for (id, webhook_id) in due {
        let in_progress = busy.get(&webhook_id).copied().unwrap_or(0);
        let count = taken.entry(webhook_id).or_default();
        if in_progress + *count < settings.endpoint_concurrency {
            *count += 1;
            ids.push(id);
        }
    }
    let claimed = sqlx::query_as::<_, Claimed>(
        "UPDATE webhook_deliveries d SET attempts = d.attempts + 1, last_attempt_at = now(), \
             next_attempt_at = now() + $2 * interval '1 millisecond' \
         FROM webhooks w WHERE d.id = ANY ($1) AND w.id = d.webhook_id \
         RETURNING d.id, d.webhook_id, d.message_id, d.payload, d.attempts, d.created_at, \
                   w.url, w.secret, w.allow_http, w.allow_private",
    )
    .bind(&ids)
    .bind(millis(settings.lease()))
    .fetch_all(&mut *transaction)
    .await?;
    let next_due: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT min(next_attempt_at) FROM webhook_deliveries \
         WHERE state = 'pending' AND webhook_id <> ALL ($1)",
    )
    .bind(&full)
    .fetch_one(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok((claimed, next_due))
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// One attempt of `delivery`, and its record.
async fn attempt(
    pool: PgPool,
    sender: Sender,
    settings: DeliverySettings,
    metrics: Arc<WebhookMetrics>,
    delivery: Claimed,
) {
    let outcome = send(&sender, &delivery).await;
    metrics.record_attempt(outcome.result);
    let given_up = outcome.result != AttemptResult::Delivered
        && Utc::now() - delivery.created_at >= delta(settings.retry_for);
    if let Err(error) = record(&pool, &settings, &delivery, &outcome, given_up).await {
        warn!(
            "webhooks: cannot record the attempt of delivery {} (webhook {}): {error}; it \
             will be attempted again",
            delivery.id, delivery.webhook_id
        );
        return;
    }
    if given_up {
        metrics.record_given_up();
        info!(
            "webhooks: gave up delivery {} of {} to webhook {} after {} attempts: {}",
            delivery.id,
            delivery.message_id,
            delivery.webhook_id,
            delivery.attempts,
            outcome.error.as_deref().unwrap_or("not a 2xx answer")
        );
    }
}

/// Signs and sends the delivery's body to its endpoint, checking the endpoint's rules
/// again first.
async fn send(sender: &Sender, delivery: &Claimed) -> Outcome {
    let failed = |result, error: String| Outcome {
        result,
        status: None,
        error: Some(error.chars().take(MAX_ERROR_CHARS).collect()),
    };
    let destination = match Destination::parse(&delivery.url, delivery.allow_http) {
        Ok(destination) => destination,
        Err(error) => return failed(AttemptResult::Address, error.to_string()),
    };
    let Some(key) = SigningSecret::from_stored(delivery.secret.clone())
        .ok()
        .and_then(|secret| secret.key())
    else {
        return failed(
            AttemptResult::Error,
            "the stored secret is invalid".to_owned(),
        );
    };
    let timestamp = Utc::now().timestamp();
    let signature = signature::sign(&key, &delivery.message_id, timestamp, &delivery.payload);
    let headers = [
        ("webhook-id", delivery.message_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        Some((
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).ok()?,
        ))
    })
    .collect();
    match sender
        .post(
            &destination,
            delivery.allow_private,
            headers,
            delivery.payload.clone(),
        )
        .await
    {
        Ok(status) if (200..300).contains(&status) => Outcome {
            result: AttemptResult::Delivered,
            status: Some(status),
            error: None,
        },
        Ok(status) => Outcome {
            result: AttemptResult::Rejected,
            status: Some(status),
            error: None,
        },
        Err(error) => {
            let result = match error {
                SendError::Address(_) => AttemptResult::Address,
                SendError::Timeout(_) => AttemptResult::Timeout,
                _ => AttemptResult::Error,
            };
            failed(result, error.to_string())
        }
    }
}

fn delta(duration: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// The wait before the next attempt after `attempts` failed ones: `retry_first` doubled
/// per earlier failure up to `retry_max`, with jitter.
fn retry_delay(settings: &DeliverySettings, attempts: i32) -> std::time::Duration {
    let mut backoff = Backoff::new(settings.retry_first, settings.retry_max, rand::random());
    let mut delay = settings.retry_first;
    for _ in 0..attempts.max(1) {
        delay = backoff.failed();
    }
    delay
}

/// Writes the attempt's outcome, unless the row was claimed again meanwhile.
async fn record(
    pool: &PgPool,
    settings: &DeliverySettings,
    delivery: &Claimed,
    outcome: &Outcome,
    given_up: bool,
) -> Result<(), sqlx::Error> {
    let state = match outcome.result {
        AttemptResult::Delivered => "delivered",
        _ if given_up => "failed",
        _ => "pending",
    };
    let next_in = match state {
        "pending" => millis(retry_delay(settings, delivery.attempts)),
        _ => 0,
    };
    sqlx::query(
        "UPDATE webhook_deliveries SET state = $3, last_status = $4, last_error = $5, \
             next_attempt_at = now() + $6 * interval '1 millisecond', \
             delivered_at = CASE WHEN $3 = 'delivered' THEN now() END \
         WHERE id = $1 AND attempts = $2",
    )
    .bind(delivery.id)
    .bind(delivery.attempts)
    .bind(state)
    .bind(outcome.status.map(i32::from))
    .bind(outcome.error.as_deref())
    .bind(next_in)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn retries_double_with_jitter_up_to_the_ceiling() {
        let settings = DeliverySettings {
            retry_first: Duration::from_secs(4),
            retry_max: Duration::from_secs(60),
            ..DeliverySettings::default()
        };
        for _ in 0..20 {
            let first = retry_delay(&settings, 1);
            assert!((Duration::from_secs(2)..=Duration::from_secs(4)).contains(&first));
            let third = retry_delay(&settings, 3);
            assert!((Duration::from_secs(8)..=Duration::from_secs(16)).contains(&third));
            let late = retry_delay(&settings, 30);
            assert!((Duration::from_secs(30)..=Duration::from_secs(60)).contains(&late));
        }
    }
}
