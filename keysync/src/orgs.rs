//! Organizations in the database: the owners of API keys.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// SQLSTATE of a unique-constraint violation.
const UNIQUE_VIOLATION: &str = "23505";

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("organization {0} already exists")]
    AlreadyExists(Uuid),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// Inserts an organization with the given id.
pub async fn create(pool: &PgPool, id: Uuid, name: &str) -> Result<Organization, OrgError> {
    sqlx::query_as::<_, Organization>(
        "INSERT INTO organizations (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
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
    })
}

/// Every organization, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Organization>, OrgError> {
    Ok(sqlx::query_as::<_, Organization>(
        "SELECT id, name, created_at FROM organizations ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await?)
}

pub async fn exists(pool: &PgPool, id: Uuid) -> Result<bool, OrgError> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}
