//! The audit trail: every change an operator makes, as one row of `audit_events`
//! (migration 0006) written by the operation itself inside the change's transaction, so
//! a change is recorded if and only if it commits. Operations record only what changed:
//! a no-op (the limit it already has, a key already revoked) or a failure records
//! nothing.
//!
//! A record names its [`AuditAction`] (`<object>.<verb>`), the [`Actor`], the object
//! and its organization, and the object's audited fields before and after, as JSON.
//! Each operation module defines the shape of its own object's fields (`AuditedKey`,
//! `AuditedLimit`, ...), built only from what operators may see: no key, key hash,
//! admin token or token hash can reach this table.
//!
//! Reading is tolerant: actions and actors come back as text, so a trail written by a
//! newer keysync (with actions this one does not know) still lists.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::actor::Actor;
use super::page::{self, PageRequest};
use super::timestamp::Timestamp;
use crate::webhooks::event::EventType;
use crate::webhooks::outbox;

/// What an operator did: one variant per kind of change, named `<object>.<verb>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    OrgCreated,
    /// An organization's limit set or cleared (cleared: the new value is null).
    OrgLimitSet,
    /// An organization's monthly quota set or cleared (cleared: the new value is null).
    OrgQuotaSet,
    KeyCreated,
    KeyRotated,
    KeyRevoked,
    /// A key's own limit set or cleared (cleared: the new value is null).
    KeyLimitSet,
    /// A key's own monthly quota set or cleared (cleared: the new value is null).
    KeyQuotaSet,
    /// A key's scopes replaced (cleared: the new value's list is empty).
    KeyScopesSet,
    /// A key's allowlist replaced (cleared: the new value's list is empty).
    KeyAllowlistSet,
    /// A secret scanner reported the key leaked: revoked or flagged (the new value says).
    KeyLeakReported,
    AdminTokenCreated,
    AdminTokenRevoked,
    PlanCreated,
    /// A plan archived: no organization may be put on it any more.
    PlanArchived,
    /// An organization's plan from an instant on (its next period's start, or the
    /// current hour's): the plan changes from then replaced.
    OrgPlanSet,
    /// An organization's external id or metadata changed (`orgs update`).
    OrgUpdated,
    /// A key's metadata set or cleared (cleared: the new value is null).
    KeyMetadataSet,
    /// Keys imported into an organization (`keys import`): one record an import, with
    /// how many.
    OrgKeysImported,
    /// A webhook endpoint registered (its URL and events; never its secret).
    WebhookCreated,
    /// A webhook endpoint deleted, with the deliveries still queued for it.
    WebhookDeleted,
}

impl AuditAction {
    /// Every action, in the order the README lists them.
    pub const ALL: [AuditAction; 21] = [
        AuditAction::OrgCreated,
        AuditAction::OrgLimitSet,
        AuditAction::OrgQuotaSet,
        AuditAction::KeyCreated,
        AuditAction::KeyRotated,
        AuditAction::KeyRevoked,
        AuditAction::KeyLimitSet,
        AuditAction::KeyQuotaSet,
        AuditAction::KeyScopesSet,
        AuditAction::KeyAllowlistSet,
        AuditAction::KeyLeakReported,
        AuditAction::AdminTokenCreated,
        AuditAction::AdminTokenRevoked,
        AuditAction::PlanCreated,
        AuditAction::PlanArchived,
        AuditAction::OrgPlanSet,
        AuditAction::OrgUpdated,
        AuditAction::KeyMetadataSet,
        AuditAction::OrgKeysImported,
        AuditAction::WebhookCreated,
        AuditAction::WebhookDeleted,
    ];

    /// The action as stored and listed.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::OrgCreated => "org.created",
            AuditAction::OrgLimitSet => "org.limit_set",
            AuditAction::OrgQuotaSet => "org.quota_set",
            AuditAction::KeyCreated => "key.created",
            AuditAction::KeyRotated => "key.rotated",
            AuditAction::KeyRevoked => "key.revoked",
            AuditAction::KeyLimitSet => "key.limit_set",
            AuditAction::KeyQuotaSet => "key.quota_set",
            AuditAction::KeyScopesSet => "key.scopes_set",
            AuditAction::KeyAllowlistSet => "key.allowlist_set",
            AuditAction::KeyLeakReported => "key.leak_reported",
            AuditAction::AdminTokenCreated => "admin_token.created",
            AuditAction::AdminTokenRevoked => "admin_token.revoked",
            AuditAction::PlanCreated => "plan.created",
            AuditAction::PlanArchived => "plan.archived",
            AuditAction::OrgPlanSet => "org.plan_set",
            AuditAction::OrgUpdated => "org.updated",
            AuditAction::KeyMetadataSet => "key.metadata_set",
            AuditAction::OrgKeysImported => "org.keys_imported",
            AuditAction::WebhookCreated => "webhook.created",
            AuditAction::WebhookDeleted => "webhook.deleted",
        }
    }

    /// The webhook event that announces the action, if any ([`crate::webhooks`]).
    pub fn webhook_event(self) -> Option<EventType> {
        match self {
            AuditAction::KeyCreated => Some(EventType::KeyCreated),
            AuditAction::KeyRevoked => Some(EventType::KeyRevoked),
            AuditAction::KeyRotated => Some(EventType::KeyRotated),
            AuditAction::KeyLeakReported => Some(EventType::KeyLeaked),
            _ => None,
        }
    }

    /// The kind of object the action changes.
    pub fn object(self) -> AuditObject {
        match self {
            AuditAction::OrgCreated
            | AuditAction::OrgLimitSet
            | AuditAction::OrgQuotaSet
            | AuditAction::OrgPlanSet
            | AuditAction::OrgUpdated
            | AuditAction::OrgKeysImported => AuditObject::Org,
            AuditAction::KeyCreated
            | AuditAction::KeyRotated
            | AuditAction::KeyRevoked
            | AuditAction::KeyLimitSet
            | AuditAction::KeyQuotaSet
            | AuditAction::KeyScopesSet
            | AuditAction::KeyAllowlistSet
            | AuditAction::KeyLeakReported
            | AuditAction::KeyMetadataSet => AuditObject::Key,
            AuditAction::AdminTokenCreated | AuditAction::AdminTokenRevoked => {
                AuditObject::AdminToken
            }
            AuditAction::PlanCreated | AuditAction::PlanArchived => AuditObject::Plan,
            AuditAction::WebhookCreated | AuditAction::WebhookDeleted => AuditObject::Webhook,
        }
    }
}

/// The kinds of object a record names (`audit_events.object_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditObject {
    Org,
    Key,
    AdminToken,
    Plan,
    Webhook,
}

impl AuditObject {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditObject::Org => "org",
            AuditObject::Key => "key",
            AuditObject::AdminToken => "admin_token",
            AuditObject::Plan => "plan",
            AuditObject::Webhook => "webhook",
        }
    }
}

/// The value of an object that did not exist before its change: stored as NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Absent;

/// One change to record. `old_value` and `new_value` are the object's audited fields
/// before and after; a value that serializes to `null` (`Absent`, `None`) is stored as
/// NULL.
#[derive(Debug, Clone)]
pub struct Change<Old, New> {
    pub action: AuditAction,
    pub object_id: Uuid,
    /// The organization the object belongs to, if any.
    pub org_id: Option<Uuid>,
    pub old_value: Old,
    pub new_value: New,
}

/// Records `change` by `actor`. `connection` must be the transaction that makes the
/// change, and the caller must call this only when something changed. A value that does
/// not serialize fails like any other statement of the transaction (`Encode`).
pub async fn record<Old: Serialize, New: Serialize>(
    connection: &mut PgConnection,
    actor: Actor,
    change: Change<Old, New>,
) -> Result<(), sqlx::Error> {
    let old_value = json_column(&change.old_value)?;
    let new_value = json_column(&change.new_value)?;
    sqlx::query(
        "INSERT INTO audit_events \
             (id, action, actor, actor_token_id, object_type, object_id, org_id, \
              old_value, new_value) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb)",
    )
    .bind(Uuid::new_v4())
    .bind(change.action.as_str())
    .bind(actor.kind())
    .bind(actor.token_id())
    .bind(change.action.object().as_str())
    .bind(change.object_id)
    .bind(change.org_id)
    .bind(old_value)
    .bind(new_value.as_deref())
    .execute(&mut *connection)
    .await?;
    if let Some(event) = change.action.webhook_event() {
        outbox::enqueue(
            connection,
            event,
            &webhook_data(actor, change.object_id, change.org_id, new_value.as_deref()),
        )
        .await?;
    }
    Ok(())
}

/// What a webhook's `data` says of an audited change: the object and its organization,
/// who made the change, and the object's audited fields after it (already free of
/// secrets: see the module's documentation).
fn webhook_data(
    actor: Actor,
    object_id: Uuid,
    org_id: Option<Uuid>,
    new_value: Option<&str>,
) -> Value {
    let mut data = match new_value.and_then(|text| serde_json::from_str::<Value>(text).ok()) {
        Some(Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    data.insert("key_id".to_owned(), Value::String(object_id.to_string()));
    data.insert(
        "org_id".to_owned(),
        org_id.map_or(Value::Null, |id| Value::String(id.to_string())),
    );
    data.insert("actor".to_owned(), Value::String(actor.kind().to_owned()));
    Value::Object(data)
}

/// A value as its `jsonb` column takes it: JSON text, or NULL for `null`. Bound as text
/// and cast in SQL, which spares sqlx's `json` feature (and a change to Cargo.lock).
fn json_column(value: &impl Serialize) -> Result<Option<String>, sqlx::Error> {
    match serde_json::to_value(value).map_err(|error| sqlx::Error::Encode(Box::new(error)))? {
        Value::Null => Ok(None),
        value => Ok(Some(value.to_string())),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("organization {0} not found")]
    OrgNotFound(Uuid),
    #[error("unexpected row: {0}")]
    InvalidRow(#[from] serde_json::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Which records to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditFilter {
    /// Only this organization's.
    pub org_id: Option<Uuid>,
    /// Only those recorded at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only this object's (a key, an organization, a token, a plan).
    pub object_id: Option<Uuid>,
    /// Only this kind of change.
    pub action: Option<AuditAction>,
    /// Only those made by this kind of actor ([`ACTOR_KINDS`]).
    pub actor: Option<&'static str>,
    /// Only those made with this admin token.
    pub actor_token_id: Option<Uuid>,
}

/// The kinds of actor the trail names (`audit_events.actor`).
pub const ACTOR_KINDS: [&str; 3] = ["cli", "admin_token", "leak_report"];

impl AuditAction {
    /// The action named `text` (`key.revoked`), if there is one.
    pub fn named(text: &str) -> Option<AuditAction> {
        AuditAction::ALL
            .into_iter()
            .find(|action| action.as_str() == text.trim())
    }
}

/// One change as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub event_id: Uuid,
    /// When the change was committed (its transaction's time).
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// `org.created`, `org.limit_set`, `org.quota_set`, `key.created`, `key.rotated`,
    /// `key.revoked`, `key.limit_set`, `key.quota_set`, `key.scopes_set`,
    /// `key.allowlist_set`, `key.leak_reported`, `admin_token.created`,
    /// `admin_token.revoked`, `plan.created`, `plan.archived`, `org.plan_set`,
    /// `org.updated`, `key.metadata_set`, `org.keys_imported`, `webhook.created` or
    /// `webhook.deleted`.
    pub action: String,
    /// `cli`, `admin_token` or `leak_report`.
    pub actor: String,
    /// The admin token that made the change (`actor`: `admin_token`), else `null`.
    pub actor_token_id: Option<Uuid>,
    /// `org`, `key`, `admin_token`, `plan` or `webhook`.
    pub object_type: String,
    pub object_id: Uuid,
    /// The organization the object belongs to; `null` for admin tokens, plans and
    /// webhooks.
    pub org_id: Option<Uuid>,
    /// The object's audited fields before the change; `null` when it did not exist or
    /// had none (no limit).
    #[schema(value_type = Option<Object>)]
    pub old_value: Option<Value>,
    /// The object's audited fields after the change; `null` when cleared.
    #[schema(value_type = Option<Object>)]
    pub new_value: Option<Value>,
}

/// A page of the audit trail, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: Uuid,
    at: DateTime<Utc>,
    action: String,
    actor: String,
    actor_token_id: Option<Uuid>,
    object_type: String,
    object_id: Uuid,
    org_id: Option<Uuid>,
    old_value: Option<String>,
    new_value: Option<String>,
}

impl AuditRow {
    fn into_record(self) -> Result<AuditRecord, AuditError> {
        let parse = |text: Option<String>| {
            text.map(|text| serde_json::from_str::<Value>(&text))
                .transpose()
        };
        Ok(AuditRecord {
            event_id: self.id,
            at: Timestamp(self.at),
            action: self.action,
            actor: self.actor,
            actor_token_id: self.actor_token_id,
            object_type: self.object_type,
            object_id: self.object_id,
            org_id: self.org_id,
            old_value: parse(self.old_value)?,
            new_value: parse(self.new_value)?,
        })
    }
}

/// A page of the records `filter` selects, newest first, and where the next (older)
/// page starts. Newest first, so records made while a caller pages come before its
/// cursor: none is shown twice or skipped. An unknown organization is an error rather
/// than an empty page, so a typo in its id does not look like "nothing happened".
pub async fn list_page(
    pool: &PgPool,
    filter: AuditFilter,
    page: PageRequest,
) -> Result<AuditPage, AuditError> {
    if let (Some(org_id), None) = (filter.org_id, page.after) {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)")
                .bind(org_id)
                .fetch_one(pool)
                .await?;
        if !exists {
            return Err(AuditError::OrgNotFound(org_id));
        }
    }
    // Only the conditions asked for, so each query can use its index.
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT id, at, action, actor, actor_token_id, object_type, object_id, org_id, \
                old_value::text AS old_value, new_value::text AS new_value \
         FROM audit_events WHERE true",
    );
    if let Some(org_id) = filter.org_id {
        query.push(" AND org_id = ").push_bind(org_id);
    }
    if let Some(since) = filter.since {
        query.push(" AND at >= ").push_bind(since);
    }
    if let Some(object_id) = filter.object_id {
        query.push(" AND object_id = ").push_bind(object_id);
    }
    if let Some(action) = filter.action {
        query.push(" AND action = ").push_bind(action.as_str());
    }
    if let Some(actor) = filter.actor {
        query.push(" AND actor = ").push_bind(actor);
    }
    if let Some(token_id) = filter.actor_token_id {
        query.push(" AND actor_token_id = ").push_bind(token_id);
    }
    page.push_newest_first(&mut query, "at", "id");
    let rows: Vec<AuditRow> = query.build_query_as().fetch_all(pool).await?;
    let (rows, next_cursor) = page.cut(rows, |row| (row.at, row.id));
    Ok(AuditPage {
        items: rows
            .into_iter()
            .map(AuditRow::into_record)
            .collect::<Result<_, _>>()?,
        next_cursor,
    })
}

/// Up to `limit` of the records `filter` selects, newest first, walking as many pages
/// as that takes.
pub async fn list(
    pool: &PgPool,
    filter: AuditFilter,
    limit: u32,
) -> Result<Vec<AuditRecord>, AuditError> {
    page::collect(limit, |page| async move {
        let listed = list_page(pool, filter, page).await?;
        Ok((listed.items, listed.next_cursor))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_object_dot_verb_and_name_their_object() {
        let mut names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        for action in AuditAction::ALL {
            let (object, verb) = action.as_str().split_once('.').unwrap();
            assert_eq!(object, action.object().as_str(), "{action:?}");
            // The shape migration 0006 checks.
            for part in [object, verb] {
                assert!(!part.is_empty());
                assert!(part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            }
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), AuditAction::ALL.len(), "names are distinct");
    }

    #[test]
    fn the_vocabulary_is_the_documented_one() {
        let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            names,
            [
                "org.created",
                "org.limit_set",
                "org.quota_set",
                "key.created",
                "key.rotated",
                "key.revoked",
                "key.limit_set",
                "key.quota_set",
                "key.scopes_set",
                "key.allowlist_set",
                "key.leak_reported",
                "admin_token.created",
                "admin_token.revoked",
                "plan.created",
                "plan.archived",
                "org.plan_set",
                "org.updated",
                "key.metadata_set",
                "org.keys_imported",
                "webhook.created",
                "webhook.deleted",
            ]
        );
    }

    #[derive(Serialize)]
    struct Limit {
        requests_per_minute: i32,
        burst: i32,
    }

    #[test]
    fn null_values_are_stored_as_null_and_others_as_json_text() {
        assert_eq!(json_column(&Absent).unwrap(), None);
        assert_eq!(json_column(&None::<Limit>).unwrap(), None);
        let limit = Some(Limit {
            requests_per_minute: 100,
            burst: 20,
        });
        assert_eq!(
            json_column(&limit).unwrap().as_deref(),
            Some(r#"{"burst":20,"requests_per_minute":100}"#)
        );
    }

    #[test]
    fn rows_read_back_as_records_with_json_values() {
        let row = AuditRow {
            id: Uuid::from_u128(1),
            at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            action: "scopes.set_by_a_newer_keysync".to_owned(),
            actor: "cli".to_owned(),
            actor_token_id: None,
            object_type: "key".to_owned(),
            object_id: Uuid::from_u128(2),
            org_id: Some(Uuid::from_u128(3)),
            old_value: None,
            new_value: Some(r#"{"requests_per_minute": 5, "burst": 0}"#.to_owned()),
        };
        let record = row.into_record().unwrap();
        assert_eq!(record.action, "scopes.set_by_a_newer_keysync");
        assert_eq!(record.old_value, None);
        assert_eq!(
            record.new_value,
            Some(serde_json::json!({"requests_per_minute": 5, "burst": 0}))
        );
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["at"], "2023-11-14T22:13:20Z");
        assert_eq!(json["old_value"], Value::Null);
        assert_eq!(json["actor_token_id"], Value::Null);
    }
}
