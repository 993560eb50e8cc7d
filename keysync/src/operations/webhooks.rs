//! Webhook endpoints, as operators manage them: register one (its URL checked, its
//! signing secret drawn and shown once), list, delete, send it a test event, and list
//! the deliveries with their attempts. Registering and deleting are recorded in the
//! audit trail by URL and events, never the secret. Sending is `serve`'s
//! ([`crate::webhooks`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::actor::Actor;
use super::audit::{self, Absent, AuditAction, Change};
use super::page::{self, PageRequest};
use super::timestamp::Timestamp;
use crate::webhooks::destination::{Destination, DestinationError};
use crate::webhooks::event::{EventType, UnknownEvent};
use crate::webhooks::outbox;
use crate::webhooks::secret::SigningSecret;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook {0} not found")]
    NotFound(Uuid),
    #[error("invalid webhook: {0}")]
    Destination(#[from] DestinationError),
    #[error(transparent)]
    UnknownEvent(#[from] UnknownEvent),
    #[error("a webhook needs at least one event")]
    NoEvents,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A webhook to register, checked (but not yet resolved: [`create`] does that).
#[derive(Debug, Clone)]
pub struct NewWebhook {
    destination: Destination,
    events: BTreeSet<&'static str>,
    allow_http: bool,
    allow_private: bool,
}

impl NewWebhook {
    /// Checks the URL's form and the events (at least one, each known; repeats ignored).
    pub fn new(
        url: &str,
        events: &[String],
        allow_http: bool,
        allow_private: bool,
    ) -> Result<NewWebhook, WebhookError> {
        let destination = Destination::parse(url, allow_http)?;
        let events = events
            .iter()
            .map(|event| event.parse::<EventType>().map(EventType::as_str))
            .collect::<Result<BTreeSet<_>, _>>()?;
        if events.is_empty() {
            return Err(WebhookError::NoEvents);
        }
        Ok(NewWebhook {
            destination,
            events,
            allow_http,
            allow_private,
        })
    }
}

/// What is stored about a webhook, but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct WebhookFields {
    pub webhook_id: Uuid,
    pub url: String,
    /// The event types it receives, sorted.
    pub events: Vec<String>,
    pub allow_http: bool,
    pub allow_private: bool,
    #[schema(value_type = String, format = DateTime)]
    #[sqlx(try_from = "DateTime<Utc>")]
    pub created_at: Timestamp,
}

/// A new webhook: its signing secret, shown this once, and what is stored about it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    /// `whsec_` and base64: verify deliveries with it (any Standard Webhooks library).
    /// Shown only this once.
    #[schema(value_type = String)]
    pub secret: SigningSecret,
    #[serde(flatten)]
    pub webhook: WebhookFields,
}

/// A webhook as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct ListedWebhook {
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub webhook: WebhookFields,
    /// Deliveries waiting to be sent or retried.
    pub pending: i64,
    /// Deliveries given up after the retry window.
    pub failed: i64,
}

/// A webhook as the audit trail records it: never its secret.
#[derive(Debug, Serialize)]
struct AuditedWebhook<'a> {
    url: &'a str,
    events: &'a [String],
    allow_http: bool,
    allow_private: bool,
}

/// A deleted webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeletedWebhook {
    pub webhook_id: Uuid,
    /// Deliveries still queued for it, dropped with it.
    pub dropped_deliveries: i64,
}

/// A test event queued for one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueuedTest {
    pub webhook_id: Uuid,
    /// The `webhook-id` header it is sent with.
    pub message_id: String,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its first attempt, or for a retry.
    Pending,
    Delivered,
    /// Given up: still failing when the retry window closed.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    fn from_stored(text: &str) -> DeliveryState {
        match text {
            "delivered" => DeliveryState::Delivered,
            "failed" => DeliveryState::Failed,
            _ => DeliveryState::Pending,
        }
    }
}

/// One event's delivery to one webhook, with its last attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ListedDelivery {
    pub delivery_id: Uuid,
    pub webhook_id: Uuid,
    /// The `webhook-id` header (the same on every attempt).
    pub message_id: String,
    pub event_type: String,
    pub state: DeliveryState,
    /// Attempts started (one may be in progress).
    pub attempts: i32,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_attempt_at: Option<Timestamp>,
    /// The next attempt (pending only); `null` otherwise.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<Timestamp>,
    /// The last attempt's HTTP status; `null` when it got none (see `last_error`).
    pub last_status: Option<i32>,
    /// Why the last attempt got no status (a timeout, a refused address, a connection
    /// error); `null` otherwise.
    pub last_error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<Timestamp>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<ListedDelivery>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryFilter {
    /// Only this webhook's.
    pub webhook_id: Option<Uuid>,
    /// Only those whose last finished attempt failed: retrying, or given up.
    pub failed: bool,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: Uuid,
    webhook_id: Uuid,
    message_id: String,
    event_type: String,
    state: String,
    attempts: i32,
    created_at: DateTime<Utc>,
    last_attempt_at: Option<DateTime<Utc>>,
    next_attempt_at: DateTime<Utc>,
    last_status: Option<i32>,
    last_error: Option<String>,
    delivered_at: Option<DateTime<Utc>>,
}

impl DeliveryRow {
    fn into_listed(self) -> ListedDelivery {
        let state = DeliveryState::from_stored(&self.state);
        ListedDelivery {
            delivery_id: self.id,
            webhook_id: self.webhook_id,
            message_id: self.message_id,
            event_type: self.event_type,
            state,
            attempts: self.attempts,
            created_at: Timestamp(self.created_at),
            last_attempt_at: self.last_attempt_at.map(Timestamp),
            next_attempt_at: (state == DeliveryState::Pending)
                .then_some(Timestamp(self.next_attempt_at)),
            last_status: self.last_status,
            last_error: self.last_error,
            delivered_at: self.delivered_at.map(Timestamp),
        }
    }
}

impl NewWebhook {
    /// Checks the addresses the host resolves to now (they are checked again at each
    /// delivery): none may be private unless allowed.
    pub async fn check_addresses(&self) -> Result<(), WebhookError> {
        self.destination.resolve(self.allow_private).await?;
        Ok(())
    }
}

/// Registers `webhook`: its host's addresses are checked now (and again at each
/// delivery), a secret is drawn, and the registration is recorded in the audit trail.
pub async fn create(
    pool: &PgPool,
    actor: Actor,
    webhook: NewWebhook,
) -> Result<CreatedWebhook, WebhookError> {
    webhook.check_addresses().await?;
    let mut transaction = pool.begin().await?;
    let created = create_on(&mut transaction, actor, webhook).await?;
    transaction.commit().await?;
    Ok(created)
}

/// As [`create`] after [`NewWebhook::check_addresses`], inside a transaction the caller
/// holds and commits.
pub async fn create_on(
    transaction: &mut PgConnection,
    actor: Actor,
    webhook: NewWebhook,
) -> Result<CreatedWebhook, WebhookError> {
    let secret = SigningSecret::generate();
    let events: Vec<String> = webhook.events.iter().map(|e| (*e).to_owned()).collect();
    let url = webhook.destination.url().to_string();
    let (webhook_id, created_at): (Uuid, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO webhooks (id, url, events, secret, allow_http, allow_private, \
             created_by_token) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id, created_at",
    )
    .bind(Uuid::new_v4())
    .bind(&url)
    .bind(&events)
    .bind(secret.text())
    .bind(webhook.allow_http)
    .bind(webhook.allow_private)
    .bind(actor.token_id())
    .fetch_one(&mut *transaction)
    .await?;
    audit::record(
        transaction,
        actor,
        Change {
            action: AuditAction::WebhookCreated,
            object_id: webhook_id,
            org_id: None,
            old_value: Absent,
            new_value: AuditedWebhook {
                url: &url,
                events: &events,
                allow_http: webhook.allow_http,
                allow_private: webhook.allow_private,
            },
        },
    )
    .await?;
    Ok(CreatedWebhook {
        secret,
        webhook: WebhookFields {
            webhook_id,
            url,
            events,
            allow_http: webhook.allow_http,
            allow_private: webhook.allow_private,
            created_at: Timestamp(created_at),
        },
    })
}

/// Every webhook, oldest first, with its pending and failed deliveries.
pub async fn list(pool: &PgPool) -> Result<Vec<ListedWebhook>, WebhookError> {
    Ok(sqlx::query_as(
        "SELECT w.id AS webhook_id, w.url, w.events, w.allow_http, w.allow_private, \
                w.created_at, \
                count(*) FILTER (WHERE d.state = 'pending') AS pending, \
                count(*) FILTER (WHERE d.state = 'failed') AS failed \
         FROM webhooks w LEFT JOIN webhook_deliveries d ON d.webhook_id = w.id \
         GROUP BY w.id ORDER BY w.created_at, w.id",
    )
    .fetch_all(pool)
    .await?)
}

/// Deletes a webhook and the deliveries queued for it, and records it in the audit
/// trail.
pub async fn delete(
    pool: &PgPool,
    actor: Actor,
    webhook_id: Uuid,
) -> Result<DeletedWebhook, WebhookError> {
    let mut transaction = pool.begin().await?;
    let dropped_deliveries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1 AND state = 'pending'",
    )
    .bind(webhook_id)
    .fetch_one(&mut *transaction)
    .await?;
    let deleted: Option<(String, Vec<String>, bool, bool)> = sqlx::query_as(
        "DELETE FROM webhooks WHERE id = $1 \
         RETURNING url, events, allow_http, allow_private",
    )
    .bind(webhook_id)
    .fetch_optional(&mut *transaction)
    .await?;
    let Some((url, events, allow_http, allow_private)) = deleted else {
        return Err(WebhookError::NotFound(webhook_id));
    };
    audit::record(
        &mut transaction,
        actor,
        Change {
            action: AuditAction::WebhookDeleted,
            object_id: webhook_id,
            org_id: None,
            old_value: AuditedWebhook {
                url: &url,
                events: &events,
                allow_http,
                allow_private,
            },
            new_value: Absent,
        },
    )
    .await?;
    transaction.commit().await?;
    Ok(DeletedWebhook {
        webhook_id,
        dropped_deliveries,
    })
}

/// Queues a `webhook.test` event for one webhook, whatever events it receives.
pub async fn test(pool: &PgPool, webhook_id: Uuid) -> Result<QueuedTest, WebhookError> {
    let mut connection = pool.acquire().await?;
    let message_id = outbox::enqueue_to(
        &mut connection,
        webhook_id,
        EventType::WebhookTest,
        &json!({"webhook_id": webhook_id, "message": "a test event from keysync"}),
    )
    .await?
    .ok_or(WebhookError::NotFound(webhook_id))?;
    Ok(QueuedTest {
        webhook_id,
        message_id,
    })
}

/// A page of the deliveries `filter` selects, newest first, and where the next (older)
/// page starts. An unknown webhook is an error rather than an empty page.
pub async fn list_deliveries_page(
    pool: &PgPool,
    filter: DeliveryFilter,
    page: PageRequest,
) -> Result<DeliveryPage, WebhookError> {
    if let (Some(webhook_id), None) = (filter.webhook_id, page.after) {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhooks WHERE id = $1)")
                .bind(webhook_id)
                .fetch_one(pool)
                .await?;
        if !exists {
            return Err(WebhookError::NotFound(webhook_id));
        }
    }
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT id, webhook_id, message_id, event_type, state, attempts, created_at, \
                last_attempt_at, next_attempt_at, last_status, last_error, delivered_at \
         FROM webhook_deliveries WHERE true",
    );
    if let Some(webhook_id) = filter.webhook_id {
        query.push(" AND webhook_id = ").push_bind(webhook_id);
    }
    if filter.failed {
        // A first attempt in progress has failed nothing yet.
        query.push(
            " AND (state = 'failed' OR (state = 'pending' \
             AND (last_status IS NOT NULL OR last_error IS NOT NULL)))",
        );
    }
    page.push_newest_first(&mut query, "created_at", "id");
    let rows: Vec<DeliveryRow> = query.build_query_as().fetch_all(pool).await?;
    let (rows, next_cursor) = page.cut(rows, |row| (row.created_at, row.id));
    Ok(DeliveryPage {
        items: rows.into_iter().map(DeliveryRow::into_listed).collect(),
        next_cursor,
    })
}

/// Up to `limit` of the deliveries `filter` selects, newest first.
pub async fn list_deliveries(
    pool: &PgPool,
    filter: DeliveryFilter,
    limit: u32,
) -> Result<Vec<ListedDelivery>, WebhookError> {
    page::collect(limit, |page| async move {
        let listed = list_deliveries_page(pool, filter, page).await?;
        Ok((listed.items, listed.next_cursor))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked_and_deduplicated() {
        let events = vec![
            "key.revoked".to_owned(),
            "key.created".to_owned(),
            "key.revoked".to_owned(),
        ];
        let webhook =
            NewWebhook::new("https://hooks.example.com/k", &events, false, false).unwrap();
        assert_eq!(
            webhook.events.into_iter().collect::<Vec<_>>(),
            ["key.created", "key.revoked"]
        );
        assert!(matches!(
            NewWebhook::new("https://hooks.example.com/k", &[], false, false),
            Err(WebhookError::NoEvents)
        ));
        assert!(matches!(
            NewWebhook::new(
                "https://hooks.example.com/k",
                &["key.deleted".to_owned()],
                false,
                false
            ),
            Err(WebhookError::UnknownEvent(_))
        ));
        assert!(matches!(
            NewWebhook::new("http://hooks.example.com/k", &events, false, false),
            Err(WebhookError::Destination(DestinationError::NotHttps))
        ));
    }

    #[test]
    fn a_created_webhook_shows_its_secret_once_and_a_listed_one_never() {
        let secret = SigningSecret::generate();
        let text = secret.text().to_owned();
        let created = CreatedWebhook {
            secret,
            webhook: WebhookFields {
                webhook_id: Uuid::nil(),
                url: "https://hooks.example.com/k".to_owned(),
                events: vec!["key.revoked".to_owned()],
                allow_http: false,
                allow_private: false,
                created_at: Timestamp(DateTime::from_timestamp(0, 0).unwrap()),
            },
        };
        let json = serde_json::to_value(&created).unwrap();
        assert_eq!(json["secret"], text.as_str());
        assert_eq!(json["events"], serde_json::json!(["key.revoked"]));
        assert!(!format!("{created:?}").contains(&text));
    }
}
