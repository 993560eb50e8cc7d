//! Organizations: the owners of API keys, with the rate limit their keys share and
//! their monthly quota ([`super::quotas`]).

use chrono::{DateTime, Utc};
use keysync_contract::limit::Limit;
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::actor::Actor;
use super::audit::{self, Absent, AuditAction, Change};
use super::external_id::ExternalId;
use super::limit_json;
use super::metadata::Metadata;
use super::name::Name;
use super::page::PageRequest;
use super::quotas::{self, QuotaColumns, QuotaUse};
use super::sql_state::{violation, Violation};
use super::timestamp::Timestamp;
use crate::key_set::limit_columns::{InvalidLimit, LimitColumns};

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("organization {0} already exists")]
    AlreadyExists(Uuid),
    #[error("external id '{0}' already belongs to another organization")]
    ExternalIdTaken(String),
    #[error("organization {0} not found")]
    NotFound(Uuid),
    #[error("unexpected row: {0}")]
    InvalidRow(#[from] InvalidLimit),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A new organization (it starts without a rate limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CreatedOrg {
    pub org_id: Uuid,
    pub name: String,
    /// The customer's id in the operator's billing system; `null`: none.
    #[schema(value_type = Option<String>)]
    pub external_id: Option<ExternalId>,
    /// The operator's JSON object, as given; `null`: none.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

/// What an organization carries besides its name: both optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgData {
    pub external_id: Option<ExternalId>,
    pub metadata: Option<Metadata>,
}

/// An organization as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Organization {
    pub org_id: Uuid,
    pub name: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Its row in `rate_limit_configs`, shared by all its keys; `null`: no limit.
    #[serde(serialize_with = "limit_json::org_limit")]
    #[schema(value_type = Option<limit_json::OrgLimitJson>)]
    pub rate_limit: Option<Limit>,
    /// Its monthly quota and its use this period; `null`: no quota.
    pub quota: Option<QuotaUse>,
    /// The customer's id in the operator's billing system; `null`: none.
    #[schema(value_type = Option<String>)]
    pub external_id: Option<ExternalId>,
    /// The operator's JSON object, as given; `null`: none.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

/// A page of organizations, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrgPage {
    pub items: Vec<Organization>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: Uuid,
    name: String,
    created_at: chrono::DateTime<chrono::Utc>,
    #[sqlx(flatten)]
    limits: LimitColumns,
    #[sqlx(flatten)]
    quota: QuotaColumns,
    external_id: Option<String>,
    metadata: Option<String>,
}

impl OrgRow {
    fn into_organization(self, now: DateTime<Utc>) -> Result<Organization, OrgError> {
        Ok(Organization {
            org_id: self.id,
            name: self.name,
            created_at: Timestamp(self.created_at),
            rate_limit: self.limits.resolve()?.map(|key_limit| key_limit.limit),
            quota: self.quota.resolve(now),
            external_id: self.external_id.map(ExternalId::stored),
            metadata: self.metadata.map(Metadata::stored),
        })
    }
}

/// An organization as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditedOrg {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ExternalId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// Inserts an organization, with the given id or a random one, and records it in the
/// audit trail.
pub async fn create(
    pool: &PgPool,
    actor: Actor,
    id: Option<Uuid>,
    name: &Name,
    data: OrgData,
) -> Result<CreatedOrg, OrgError> {
    let mut transaction = pool.begin().await?;
    let created = create_on(&mut transaction, actor, id, name, data).await?;
    transaction.commit().await?;
    Ok(created)
}

/// As [`create`], inside a transaction the caller holds and commits (the organization
/// and its audit record must commit together).
pub async fn create_on(
    connection: &mut PgConnection,
    actor: Actor,
    id: Option<Uuid>,
    name: &Name,
    data: OrgData,
) -> Result<CreatedOrg, OrgError> {
    let id = id.unwrap_or_else(Uuid::new_v4);
    let name: String = sqlx::query_scalar(
        "INSERT INTO organizations (id, name, changed_by_token, external_id, metadata) \
         VALUES ($1, $2, $3, $4, $5::json) RETURNING name",
    )
    .bind(id)
    .bind(name.as_str())
    .bind(actor.token_id())
    .bind(data.external_id.as_ref().map(ExternalId::as_str))
    .bind(data.metadata.as_ref().map(Metadata::as_str))
    .fetch_one(&mut *connection)
    .await
    .map_err(|error| unique_error(error, id, data.external_id.as_ref()))?;
    audit::record(
        connection,
        actor,
        Change {
            action: AuditAction::OrgCreated,
            object_id: id,
            org_id: Some(id),
            old_value: Absent,
            new_value: AuditedOrg {
                name: name.clone(),
                external_id: data.external_id.clone(),
                metadata: data.metadata.clone(),
            },
        },
    )
    .await?;
    Ok(CreatedOrg {
        org_id: id,
        name,
        external_id: data.external_id,
        metadata: data.metadata,
    })
}

/// The unique constraint of `organizations.external_id` (PostgreSQL's default name).
const EXTERNAL_ID_CONSTRAINT: &str = "organizations_external_id_key";

/// A write of organization `id` that failed: a clash of `external_id` (if one was
/// written) or of the id is an error of its own.
pub(crate) fn unique_error(
    error: sqlx::Error,
    id: Uuid,
    external_id: Option<&ExternalId>,
) -> OrgError {
    if violation(&error) != Some(Violation::Unique) {
        return OrgError::Database(error);
    }
    let constraint = match &error {
        sqlx::Error::Database(database) => database.constraint().map(str::to_owned),
        _ => None,
    };
    match external_id {
        Some(external_id) if constraint.as_deref() == Some(EXTERNAL_ID_CONSTRAINT) => {
            OrgError::ExternalIdTaken(external_id.as_str().to_owned())
        }
        _ => OrgError::AlreadyExists(id),
    }
}

/// The columns of an organization with its limit and quota. The key columns are NULL:
/// an organization's limit is never a key's own. With the parameters of
/// [`quotas::listing`] (`$1` to `$3`): the quota's use is that of the period its reset
/// day gives.
const ORG_SELECT: &str = "SELECT o.id, o.name, o.created_at, \
            NULL::integer AS key_rpm, NULL::integer AS key_burst, \
            r.requests_per_minute AS org_rpm, r.burst AS org_burst, \
            q.monthly_limit AS quota_monthly, q.reset_day AS quota_reset_day, \
            u.used AS quota_used, o.external_id, o.metadata::text AS metadata \
     FROM organizations o LEFT JOIN rate_limit_configs r ON r.org_id = o.id \
     LEFT JOIN quotas q ON q.subject_kind = $2 AND q.subject_id = o.id \
     LEFT JOIN quota_usage u ON u.subject_kind = $2 AND u.subject_id = o.id \
         AND u.period_start = ($1::timestamptz[])[q.reset_day]";

/// Every organization with its rate limit, oldest first (all pages).
pub async fn list(pool: &PgPool) -> Result<Vec<Organization>, OrgError> {
    let mut all = Vec::new();
    let mut page = PageRequest::first();
    loop {
        let listed = list_page(pool, page).await?;
        all.extend(listed.items);
        match listed.next_cursor {
            Some(next) => page = page.next(&next),
            None => return Ok(all),
        }
    }
}

/// A page of organizations with their rate limits, oldest first, and where the next
/// page starts.
pub async fn list_page(pool: &PgPool, page: PageRequest) -> Result<OrgPage, OrgError> {
    let now = Utc::now();
    let rows: Vec<OrgRow> = match page.after {
        None => {
            let sql = format!("{ORG_SELECT} ORDER BY o.created_at, o.id LIMIT $4");
            quotas::listing(AssertSqlSafe(sql), now)
                .bind(page.fetch())
                .fetch_all(pool)
                .await?
        }
        Some(after) => {
            let sql = format!(
                "{ORG_SELECT} WHERE (o.created_at, o.id) > ($5, $6) \
                 ORDER BY o.created_at, o.id LIMIT $4"
            );
            quotas::listing(AssertSqlSafe(sql), now)
                .bind(page.fetch())
                .bind(after.created_at)
                .bind(after.id)
                .fetch_all(pool)
                .await?
        }
    };
    page_of(rows, page, now)
}

/// A page of the organizations whose name contains `search` (any case) or whose id it
/// is, oldest first (the web console's search).
pub async fn search_page(
    pool: &PgPool,
    search: &str,
    page: PageRequest,
) -> Result<OrgPage, OrgError> {
    let now = Utc::now();
    let search = search.trim();
    let pattern = format!(
        "%{}%",
        search
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    let matching = "(o.name ILIKE $5 OR o.id::text = lower($6))";
    let rows: Vec<OrgRow> = match page.after {
        None => {
            let sql = format!("{ORG_SELECT} WHERE {matching} ORDER BY o.created_at, o.id LIMIT $4");
            quotas::listing(AssertSqlSafe(sql), now)
                .bind(page.fetch())
                .bind(&pattern)
                .bind(search)
                .fetch_all(pool)
                .await?
        }
        Some(after) => {
            let sql = format!(
                "{ORG_SELECT} WHERE {matching} AND (o.created_at, o.id) > ($7, $8) \
                 ORDER BY o.created_at, o.id LIMIT $4"
            );
            quotas::listing(AssertSqlSafe(sql), now)
                .bind(page.fetch())
                .bind(&pattern)
                .bind(search)
                .bind(after.created_at)
                .bind(after.id)
                .fetch_all(pool)
                .await?
        }
    };
    page_of(rows, page, now)
}

/// The page `rows` (one more than the page when there is a next) make.
fn page_of(rows: Vec<OrgRow>, page: PageRequest, now: DateTime<Utc>) -> Result<OrgPage, OrgError> {
    let (rows, next_cursor) = page.cut(rows, |row| (row.created_at, row.id));
    Ok(OrgPage {
        items: rows
            .into_iter()
            .map(|row| row.into_organization(now))
            .collect::<Result<_, _>>()?,
        next_cursor,
    })
}

/// One organization with its rate limit and quota.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Organization, OrgError> {
    let now = Utc::now();
    let sql = format!("{ORG_SELECT} WHERE o.id = $4");
    quotas::listing::<OrgRow>(AssertSqlSafe(sql), now)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(OrgError::NotFound(id))?
        .into_organization(now)
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
