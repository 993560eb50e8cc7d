//! Organizations: the owners of API keys, with the rate limit their keys share.

use keysync_contract::limit::Limit;
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::limit_json;
use super::name::Name;
use super::sql_state::{violation, Violation};
use super::timestamp::Timestamp;
use crate::limit_columns::{InvalidLimit, LimitColumns};

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("organization {0} already exists")]
    AlreadyExists(Uuid),
    #[error("unexpected row: {0}")]
    InvalidRow(#[from] InvalidLimit),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A new organization (it starts without a rate limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedOrg {
    pub org_id: Uuid,
    pub name: String,
}

/// An organization as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Organization {
    pub org_id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
    /// Its row in `rate_limit_configs`, shared by all its keys.
    #[serde(serialize_with = "limit_json::org_limit")]
    pub rate_limit: Option<Limit>,
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: Uuid,
    name: String,
    created_at: chrono::DateTime<chrono::Utc>,
    #[sqlx(flatten)]
    limits: LimitColumns,
}

impl OrgRow {
    fn into_organization(self) -> Result<Organization, OrgError> {
        Ok(Organization {
            org_id: self.id,
            name: self.name,
            created_at: Timestamp(self.created_at),
            rate_limit: self.limits.resolve()?.map(|key_limit| key_limit.limit),
        })
    }
}

/// Inserts an organization, with the given id or a random one.
pub async fn create(pool: &PgPool, id: Option<Uuid>, name: &Name) -> Result<CreatedOrg, OrgError> {
    let id = id.unwrap_or_else(Uuid::new_v4);
    let name: String =
        sqlx::query_scalar("INSERT INTO organizations (id, name) VALUES ($1, $2) RETURNING name")
            .bind(id)
            .bind(name.as_str())
            .fetch_one(pool)
            .await
            .map_err(|error| match violation(&error) {
                Some(Violation::Unique) => OrgError::AlreadyExists(id),
                _ => OrgError::Database(error),
            })?;
    Ok(CreatedOrg { org_id: id, name })
}

/// Every organization with its rate limit, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Organization>, OrgError> {
    // The key columns are NULL: an organization's limit is never a key's own.
    sqlx::query_as::<_, OrgRow>(
        "SELECT o.id, o.name, o.created_at, \
                NULL::integer AS key_rpm, NULL::integer AS key_burst, \
                r.requests_per_minute AS org_rpm, r.burst AS org_burst \
         FROM organizations o LEFT JOIN rate_limit_configs r ON r.org_id = o.id \
         ORDER BY o.created_at, o.id",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(OrgRow::into_organization)
    .collect()
}

/// Whether the organization exists; for the operations that must tell an unknown
/// organization from one with nothing to show.
pub(crate) async fn exists<'e>(
    executor: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)")
        .bind(id)
        .fetch_one(executor)
        .await
}
