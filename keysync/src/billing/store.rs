//! What pricing reads from PostgreSQL (migration 0015): plans, an organization's plan
//! changes and its billable requests by endpoint, and the invoice of a period made from
//! them ([`invoice_of`]). Writing plans and changes is [`crate::operations`]'s, with
//! the audit trail.
//!
//! Which requests are billable is [`invoice::billable_requests`]'s rule.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::currency::Currency;
use super::invoice::{self, Invoice, InvoiceError, PricedPlan, SegmentUsage};
use super::period::BillingPeriod;
use super::plan::{PlanTerms, Tier};
use super::schedule::{self, PlanChange};
use crate::usage::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Invoice(#[from] InvoiceError),
    #[error("unexpected plan row {0}: {1}")]
    InvalidRow(Uuid, String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A plan as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlan {
    pub plan: PricedPlan,
    pub created_at: DateTime<Utc>,
    /// Set once archived: no organization may be put on it any more.
    pub archived_at: Option<DateTime<Utc>>,
}

/// The columns [`PlanRow`] reads, for `SELECT {PLAN_COLUMNS} FROM price_plans ...`.
pub const PLAN_COLUMNS: &str = "id, name, currency, base_fee_minor, included_requests, \
     tiers::text AS tiers, weights::text AS weights, created_at, archived_at";

/// A row of `price_plans` as [`PLAN_COLUMNS`] reads it.
#[derive(Debug, sqlx::FromRow)]
pub struct PlanRow {
    id: Uuid,
    name: String,
    currency: String,
    base_fee_minor: i64,
    included_requests: i64,
    tiers: String,
    weights: String,
    created_at: DateTime<Utc>,
    archived_at: Option<DateTime<Utc>>,
}

impl PlanRow {
    /// The plan, checked as when it was made: a row that breaks a rule is keysync's
    /// fault (or a hand edit), reported rather than priced.
    pub fn into_plan(self) -> Result<StoredPlan, StoreError> {
        let invalid = |what: String| StoreError::InvalidRow(self.id, what);
        let currency = Currency::parse(&self.currency).map_err(|e| invalid(e.to_string()))?;
        let tiers: Vec<Tier> =
            serde_json::from_str(&self.tiers).map_err(|e| invalid(format!("tiers: {e}")))?;
        let weights: BTreeMap<String, i64> =
            serde_json::from_str(&self.weights).map_err(|e| invalid(format!("weights: {e}")))?;
        let terms = PlanTerms::new(
            currency,
            self.base_fee_minor,
            self.included_requests,
            tiers,
            weights,
        )
        .map_err(|e| invalid(e.to_string()))?;
        Ok(StoredPlan {
            plan: PricedPlan {
                id: self.id,
                name: self.name,
                terms,
            },
            created_at: self.created_at,
            archived_at: self.archived_at,
        })
    }
}

/// The plans with these ids (those that exist).
pub async fn plans(
    connection: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, StoredPlan>, StoreError> {
    let rows: Vec<PlanRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PLAN_COLUMNS} FROM price_plans WHERE id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(connection)
    .await?;
    rows.into_iter()
        .map(|row| row.into_plan().map(|plan| (plan.plan.id, plan)))
        .collect()
}

/// Every plan change of an organization, oldest first.
pub async fn plan_changes(
    connection: &mut PgConnection,
    org_id: Uuid,
) -> Result<Vec<PlanChange>, sqlx::Error> {
    let rows: Vec<(DateTime<Utc>, Uuid)> = sqlx::query_as(
        "SELECT effective_from, plan_id FROM org_plans WHERE org_id = $1 \
         ORDER BY effective_from",
    )
    .bind(org_id)
    .fetch_all(connection)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(from, plan_id)| PlanChange { from, plan_id })
        .collect())
}

/// The organization's billable requests by endpoint in `[from, to)` (whole hours): its
/// rows of the rollup by endpoint and outcome, kept by [`invoice::billable_requests`].
pub async fn billable_requests(
    connection: &mut PgConnection,
    org_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i16, i64)> = sqlx::query_as(
        "SELECT endpoint, outcome, sum(requests)::bigint FROM usage_hourly \
         WHERE org_id = $1 AND hour >= $2 AND hour < $3 GROUP BY endpoint, outcome",
    )
    .bind(org_id)
    .bind(from)
    .bind(to)
    .fetch_all(connection)
    .await?;
    Ok(invoice::billable_requests(rows.into_iter().filter_map(
        |(endpoint, code, requests)| {
            Outcome::from_code(i64::from(code)).map(|outcome| (endpoint, outcome, requests))
        },
    )))
}

/// The organization's invoice for `period` as of `now` (closed once `now` is past the
/// period's end): the segments its plan changes cut, each priced on its plan with the
/// requests billed in it.
pub async fn invoice_of(
    connection: &mut PgConnection,
    org_id: Uuid,
    period: BillingPeriod,
    now: DateTime<Utc>,
) -> Result<Invoice, StoreError> {
    let changes = plan_changes(connection, org_id).await?;
    let segments = schedule::segments(&changes, period);
    let ids: Vec<Uuid> = segments.iter().map(|segment| segment.plan_id).collect();
    let plans = plans(connection, &ids).await?;
    let mut priced = Vec::with_capacity(segments.len());
    for segment in segments {
        // The foreign key keeps every plan a change names.
        let Some(plan) = plans.get(&segment.plan_id) else {
            return Err(StoreError::InvalidRow(
                segment.plan_id,
                "named by a plan change, not found".to_owned(),
            ));
        };
        let requests = billable_requests(connection, org_id, segment.from, segment.to).await?;
        priced.push(SegmentUsage {
            segment,
            plan: &plan.plan,
            requests,
        });
    }
    Ok(invoice::compute(
        org_id,
        period,
        now >= period.end,
        &priced,
    )?)
}
