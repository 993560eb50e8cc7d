//! The outbox: a delivery row per subscribed endpoint, written inside the transaction of
//! the change it announces (so it commits, or rolls back, with the change). The body is
//! fixed here, once, as Standard Webhooks defines it: `{"type", "timestamp", "data"}`;
//! every attempt sends exactly these bytes under the same `webhook-id`. A queued delivery
//! also notifies [`CHANNEL`] (PostgreSQL delivers it at commit, and never for a rollback),
//! which wakes `serve`'s sender at once.

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::event::EventType;

/// The PostgreSQL notification channel that tells the sender deliveries were queued.
pub const CHANNEL: &str = "keysync_webhooks";

/// Wakes the sender when the transaction commits.
async fn notify(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(connection)
        .await?;
    Ok(())
}

/// A new `webhook-id`: `msg_` and 32 hex digits.
fn message_id() -> String {
    format!("msg_{}", Uuid::new_v4().simple())
}

/// The body of an event's deliveries.
fn body(event: EventType, data: &impl Serialize) -> Result<String, sqlx::Error> {
    let data = serde_json::to_value(data).map_err(|error| sqlx::Error::Encode(Box::new(error)))?;
    Ok(json!({
        "type": event.as_str(),
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string())
}

/// Queues `event` for every endpoint subscribed to it, in `connection`'s transaction;
/// returns how many deliveries were queued (0 when none subscribes). `data` must hold
/// nothing secret: it is sent as is.
pub async fn enqueue(
    connection: &mut PgConnection,
    event: EventType,
    data: &impl Serialize,
) -> Result<u64, sqlx::Error> {
    let queued = sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, message_id, event_type, payload) \
         SELECT gen_random_uuid(), w.id, $1, $2, $3 FROM webhooks w WHERE $2 = ANY (w.events)",
    )
    .bind(message_id())
    .bind(event.as_str())
    .bind(body(event, data)?)
    .execute(&mut *connection)
    .await?;
    if queued.rows_affected() > 0 {
        notify(connection).await?;
    }
    Ok(queued.rows_affected())
}

/// Queues `event` for the one endpoint `webhook_id`, whatever it subscribes to (`webhooks
/// test`); returns the `webhook-id`, or `None` when there is no such endpoint.
pub async fn enqueue_to(
    connection: &mut PgConnection,
    webhook_id: Uuid,
    event: EventType,
    data: &impl Serialize,
) -> Result<Option<String>, sqlx::Error> {
    let message_id = message_id();
    let queued = sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, message_id, event_type, payload) \
         SELECT gen_random_uuid(), w.id, $2, $3, $4 FROM webhooks w WHERE w.id = $1",
    )
    .bind(webhook_id)
    .bind(&message_id)
    .bind(event.as_str())
    .bind(body(event, data)?)
    .execute(&mut *connection)
    .await?;
    if queued.rows_affected() == 0 {
        return Ok(None);
    }
    notify(connection).await?;
    Ok(Some(message_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_type_timestamp_and_data() {
        let text = body(EventType::KeyRevoked, &json!({"key_id": "k"})).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["type"], "key.revoked");
        assert_eq!(value["data"], json!({"key_id": "k"}));
        let timestamp = value["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
            "{timestamp}"
        );
        assert_eq!(value.as_object().unwrap().len(), 3);
        let id = message_id();
        assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
    }
}
