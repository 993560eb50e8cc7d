//! `orgs update`: an organization's external id and metadata changed after its
//! creation, each left as it is, cleared or set. One transaction locks the
//! organization, reads both, and only when something differs writes them and records
//! `org.updated` with both before and after. An external id another organization has is
//! refused ([`OrgError::ExternalIdTaken`]) and nothing is written.

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::actor::Actor;
use super::audit::{self, AuditAction, Change};
use super::external_id::ExternalId;
use super::field_change::FieldChange;
use super::metadata::Metadata;
use super::orgs::{unique_error, OrgError};

/// What to change; both unchanged changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgUpdate {
    pub external_id: FieldChange<ExternalId>,
    pub metadata: FieldChange<Metadata>,
}

/// An organization's external id and metadata after an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrgUpdateOutcome {
    pub org_id: Uuid,
    #[schema(value_type = Option<String>)]
    pub external_id: Option<ExternalId>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
    /// False when both already were so; nothing was written.
    pub changed: bool,
}

/// The two fields as the audit trail records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct AuditedOrgData {
    external_id: Option<ExternalId>,
    metadata: Option<Metadata>,
}

fn changed<T: Clone>(change: &FieldChange<T>, current: &Option<T>) -> Option<T> {
    match change {
        FieldChange::Unchanged => current.clone(),
        FieldChange::Clear => None,
        FieldChange::Set(value) => Some(value.clone()),
    }
}

/// Applies `update` to organization `org_id`.
pub async fn update(
    pool: &PgPool,
    actor: Actor,
    org_id: Uuid,
    update: &OrgUpdate,
) -> Result<OrgUpdateOutcome, OrgError> {
    let mut transaction = pool.begin().await?;
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT external_id, metadata::text FROM organizations WHERE id = $1 FOR UPDATE",
    )
    .bind(org_id)
    .fetch_optional(&mut *transaction)
    .await?;
    let (external_id, metadata) = row.ok_or(OrgError::NotFound(org_id))?;
    let old = AuditedOrgData {
        external_id: external_id.map(ExternalId::stored),
        metadata: metadata.map(Metadata::stored),
    };
    let new = AuditedOrgData {
        external_id: changed(&update.external_id, &old.external_id),
        metadata: changed(&update.metadata, &old.metadata),
    };
    let is_change = old != new;
    if is_change {
        sqlx::query(
            "UPDATE organizations SET external_id = $2, metadata = $3::json, \
             changed_by_token = $4 WHERE id = $1",
        )
        .bind(org_id)
        .bind(new.external_id.as_ref().map(ExternalId::as_str))
        .bind(new.metadata.as_ref().map(Metadata::as_str))
        .bind(actor.token_id())
        .execute(&mut *transaction)
        .await
        .map_err(|error| unique_error(error, org_id, new.external_id.as_ref()))?;
        audit::record(
            &mut transaction,
            actor,
            Change {
                action: AuditAction::OrgUpdated,
                object_id: org_id,
                org_id: Some(org_id),
                old_value: old,
                new_value: new.clone(),
            },
        )
        .await?;
    }
    transaction.commit().await?;
    Ok(OrgUpdateOutcome {
        org_id,
        external_id: new.external_id,
        metadata: new.metadata,
        changed: is_change,
    })
}
