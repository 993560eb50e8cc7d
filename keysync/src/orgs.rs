//! Organizations in the database: the owners of API keys, with their rate limits.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::rate_limit::{InvalidLimit, LimitColumns, RateLimit};

/// SQLSTATE of a unique-constraint violation.
const UNIQUE_VIOLATION: &str = "23505";

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("organization {0} already exists")]
    AlreadyExists(Uuid),
    #[error("unexpected row: {0}")]
    InvalidRow(#[from] InvalidLimit),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Its row in `rate_limit_configs`, shared by all its keys (`per_key` false).
    pub rate_limit: Option<RateLimit>,
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    #[sqlx(flatten)]
    limits: LimitColumns,
}

impl OrgRow {
    fn into_organization(self) -> Result<Organization, OrgError> {
        Ok(Organization {
            id: self.id,
            name: self.name,
            created_at: self.created_at,
            rate_limit: self.limits.resolve()?,
        })
    }
}

/// Inserts an organization with the given id; it starts without a rate limit.
pub async fn create(pool: &PgPool, id: Uuid, name: &str) -> Result<Organization, OrgError> {
    sqlx::query_as::<_, OrgRow>(
        "INSERT INTO organizations (id, name) VALUES ($1, $2) \
         RETURNING id, name, created_at, NULL::integer AS key_rpm, NULL::integer AS key_burst, \
                   NULL::integer AS org_rpm, NULL::integer AS org_burst",
    )
    .bind(id)
    .bind(name)
    .fetch_one(pool)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some(UNIQUE_VIOLATION) => {
            OrgError::AlreadyExists(id)
        }
        _ => OrgError::Database(error),
    })?
    .into_organization()
}

/// Every organization with its rate limit, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Organization>, OrgError> {
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

pub async fn exists(pool: &PgPool, id: Uuid) -> Result<bool, OrgError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}
