//! Price plans, as operators make them (`keysync plans`, `/v1/plans`): created with
//! checked terms ([`crate::billing::plan::PlanTerms`]), listed, shown, archived. A plan
//! never changes once made (a new price is a new plan, so an invoice's plan always
//! means what it meant); archiving one stops organizations from being put on it, and
//! those on it stay. Every create and archive is recorded in the audit trail.
//!
//! A plan is named by its id or its name ([`PlanRef`]); names are unique and never look
//! like an id.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use uuid::Uuid;

use super::actor::Actor;
use super::audit::{self, Absent, AuditAction, Change};
use super::name::Name;
use super::sql_state::{violation, Violation};
use super::timestamp::Timestamp;
use crate::billing::money::format_minor;
use crate::billing::plan::PlanTerms;
use crate::billing::store::{PlanRow, StoreError, StoredPlan, PLAN_COLUMNS};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("plan '{0}' already exists")]
    AlreadyExists(String),
    #[error("plan {0} not found")]
    NotFound(PlanRef),
    #[error("plan '{0}' is archived: no organization can be put on it")]
    Archived(String),
    #[error("invalid plan name '{0}': a name must not look like an id")]
    NameLikeAnId(String),
    #[error("{0}")]
    InvalidRow(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<StoreError> for PlanError {
    fn from(error: StoreError) -> PlanError {
        match error {
            StoreError::Database(error) => PlanError::Database(error),
            other => PlanError::InvalidRow(other.to_string()),
        }
    }
}

/// How a caller names a plan: an id, else a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanRef {
    Id(Uuid),
    Name(String),
}

impl PlanRef {
    /// An id when `text` is one, else a name.
    pub fn parse(text: &str) -> PlanRef {
        let text = text.trim();
        Uuid::parse_str(text).map_or_else(|_| PlanRef::Name(text.to_owned()), PlanRef::Id)
    }
}

impl fmt::Display for PlanRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanRef::Id(id) => write!(f, "{id}"),
            PlanRef::Name(name) => write!(f, "'{name}'"),
        }
    }
}

/// A tier as listed: its bound, its price in minor units and as decimal text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TierRecord {
    /// The last unit of the period it prices; `null`: no bound (the last tier).
    pub up_to: Option<i64>,
    pub price_per_1000_minor: i64,
    /// The same in the currency's major unit, `0.50`.
    pub price_per_1000: String,
}

/// A plan as listed and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlanRecord {
    pub plan_id: Uuid,
    pub name: String,
    /// ISO 4217; every amount of the plan is in it.
    pub currency: String,
    /// A month's fee in minor units (cents), and as decimal text.
    pub base_fee_minor: i64,
    pub base_fee: String,
    /// Units a month without a charge.
    pub included_requests: i64,
    /// Graduated, in order; bounds count from the period's first unit.
    pub tiers: Vec<TierRecord>,
    /// What one request of an endpoint counts as; endpoints not named count 1.
    pub weights: BTreeMap<String, u32>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When it was archived; `null` while organizations may be put on it.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub archived_at: Option<Timestamp>,
}

impl From<StoredPlan> for PlanRecord {
    fn from(stored: StoredPlan) -> PlanRecord {
        let terms = &stored.plan.terms;
        let currency = terms.currency();
        PlanRecord {
            plan_id: stored.plan.id,
            name: stored.plan.name.clone(),
            currency: currency.code().to_owned(),
            base_fee_minor: terms.base_fee_minor(),
            base_fee: format_minor(terms.base_fee_minor(), currency),
            included_requests: terms.included(),
            tiers: terms
                .tiers()
                .iter()
                .map(|tier| TierRecord {
                    up_to: tier.up_to,
                    price_per_1000_minor: tier.price_per_1000_minor,
                    price_per_1000: format_minor(tier.price_per_1000_minor, currency),
                })
                .collect(),
            weights: terms.weights().clone(),
            created_at: Timestamp(stored.created_at),
            archived_at: stored.archived_at.map(Timestamp),
        }
    }
}

/// A plan after `archive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ArchivedPlan {
    pub plan: PlanRecord,
    /// False when it was archived already; nothing was written.
    pub changed: bool,
}

/// A plan as the audit trail records it.
#[derive(Debug, Clone, Serialize)]
struct AuditedPlan<'a> {
    name: &'a str,
    currency: &'a str,
    base_fee_minor: i64,
    included_requests: i64,
    tiers: &'a [crate::billing::plan::Tier],
    weights: &'a BTreeMap<String, u32>,
    archived: bool,
}

impl<'a> AuditedPlan<'a> {
    fn of(name: &'a str, terms: &'a PlanTerms, archived: bool) -> AuditedPlan<'a> {
        AuditedPlan {
            name,
            currency: terms.currency().code(),
            base_fee_minor: terms.base_fee_minor(),
            included_requests: terms.included(),
            tiers: terms.tiers(),
            weights: terms.weights(),
            archived,
        }
    }
}

/// Makes a plan named `name` with `terms`, and records it in the audit trail.
pub async fn create(
    pool: &PgPool,
    actor: Actor,
    name: &Name,
    terms: &PlanTerms,
) -> Result<PlanRecord, PlanError> {
    let mut transaction = pool.begin().await?;
    let created = create_on(&mut transaction, actor, name, terms).await?;
    transaction.commit().await?;
    Ok(created)
}

/// As [`create`], inside a transaction the caller holds and commits (the plan and its
/// audit record must commit together).
pub async fn create_on(
    transaction: &mut PgConnection,
    actor: Actor,
    name: &Name,
    terms: &PlanTerms,
) -> Result<PlanRecord, PlanError> {
    if Uuid::parse_str(name.as_str()).is_ok() {
        return Err(PlanError::NameLikeAnId(name.as_str().to_owned()));
    }
    let id = Uuid::new_v4();
    // Serializing tiers and weights (numbers and strings) cannot fail.
    let tiers = serde_json::to_string(terms.tiers()).unwrap_or_default();
    let weights = serde_json::to_string(terms.weights()).unwrap_or_default();
    let row: PlanRow = sqlx::query_as(AssertSqlSafe(format!(
        "INSERT INTO price_plans (id, name, currency, base_fee_minor, included_requests, \
                                  tiers, weights, changed_by_token) \
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8) RETURNING {PLAN_COLUMNS}"
    )))
    .bind(id)
    .bind(name.as_str())
    .bind(terms.currency().code())
    .bind(terms.base_fee_minor())
    .bind(terms.included())
    .bind(tiers)
    .bind(weights)
    .bind(actor.token_id())
    .fetch_one(&mut *transaction)
    .await
    .map_err(|error| match violation(&error) {
        Some(Violation::Unique) => PlanError::AlreadyExists(name.as_str().to_owned()),
        _ => PlanError::Database(error),
    })?;
    audit::record(
        transaction,
        actor,
        Change {
            action: AuditAction::PlanCreated,
            object_id: id,
            org_id: None,
            old_value: Absent,
            new_value: AuditedPlan::of(name.as_str(), terms, false),
        },
    )
    .await?;
    Ok(row.into_plan()?.into())
}

/// Every plan, by name; archived ones too when `archived`.
pub async fn list(pool: &PgPool, archived: bool) -> Result<Vec<PlanRecord>, PlanError> {
    let rows: Vec<PlanRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {PLAN_COLUMNS} FROM price_plans WHERE $1 OR archived_at IS NULL ORDER BY name"
    )))
    .bind(archived)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| Ok(row.into_plan()?.into()))
        .collect()
}

/// The plan `plan` names.
pub async fn get(pool: &PgPool, plan: &PlanRef) -> Result<PlanRecord, PlanError> {
    let mut connection = pool.acquire().await?;
    Ok(find(&mut connection, plan, "").await?.into())
}

/// The plan `plan` names, read with `lock` (`FOR UPDATE`, or nothing).
pub(crate) async fn find(
    connection: &mut PgConnection,
    plan: &PlanRef,
    lock: &'static str,
) -> Result<StoredPlan, PlanError> {
    let (condition, id, name) = match plan {
        PlanRef::Id(id) => ("id = $1", Some(*id), None),
        PlanRef::Name(name) => ("name = $2", None, Some(name.as_str())),
    };
    let row: Option<PlanRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {PLAN_COLUMNS} FROM price_plans WHERE {condition} {lock}"
    )))
    .bind(id)
    .bind(name)
    .fetch_optional(connection)
    .await?;
    Ok(row
        .ok_or_else(|| PlanError::NotFound(plan.clone()))?
        .into_plan()?)
}

/// Archives the plan `plan` names (at `now`) and records it; archiving an archived plan
/// changes and records nothing.
pub async fn archive(
    pool: &PgPool,
    actor: Actor,
    plan: &PlanRef,
    now: DateTime<Utc>,
) -> Result<ArchivedPlan, PlanError> {
    let mut transaction = pool.begin().await?;
    let mut stored = find(&mut transaction, plan, "FOR UPDATE").await?;
    let changed = stored.archived_at.is_none();
    if changed {
        sqlx::query("UPDATE price_plans SET archived_at = $2, changed_by_token = $3 WHERE id = $1")
            .bind(stored.plan.id)
            .bind(now)
            .bind(actor.token_id())
            .execute(&mut *transaction)
            .await?;
        let (name, terms) = (&stored.plan.name, &stored.plan.terms);
        audit::record(
            &mut transaction,
            actor,
            Change {
                action: AuditAction::PlanArchived,
                object_id: stored.plan.id,
                org_id: None,
                old_value: AuditedPlan::of(name, terms, false),
                new_value: AuditedPlan::of(name, terms, true),
            },
        )
        .await?;
        stored.archived_at = Some(now);
    }
    transaction.commit().await?;
    Ok(ArchivedPlan {
        plan: stored.into(),
        changed,
    })
}
