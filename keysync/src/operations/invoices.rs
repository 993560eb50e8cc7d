//! What an organization's usage costs on its plans in a month (`keysync usage --cost`,
//! `GET /v1/orgs/{org_id}/invoice-preview`): the invoice of the period as of now, the
//! current month unless asked for another. The arithmetic is
//! [`crate::billing::invoice`]'s; a period still running is priced on its usage so far
//! (`closed`: false).

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::orgs;
use crate::billing::invoice::{Invoice, InvoiceError};
use crate::billing::period::BillingPeriod;
use crate::billing::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("organization {0} not found")]
    OrgNotFound(Uuid),
    #[error("organization {org_id} has no price plan in {period}: put it on one with `keysync orgs set-plan`")]
    NoPlan { org_id: Uuid, period: String },
    #[error("cannot price {0}")]
    Invoice(InvoiceError),
    #[error("{0}")]
    InvalidRow(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The invoice of `org_id` for `period` (the one containing `now` when `None`) as of
/// `now`.
pub async fn preview(
    pool: &PgPool,
    org_id: Uuid,
    period: Option<BillingPeriod>,
    now: DateTime<Utc>,
) -> Result<Invoice, CostError> {
    let period = period.unwrap_or_else(|| BillingPeriod::containing(now));
    let mut connection = pool.acquire().await?;
    if !orgs::exists(&mut *connection, org_id).await? {
        return Err(CostError::OrgNotFound(org_id));
    }
    store::invoice_of(&mut connection, org_id, period, now)
        .await
        .map_err(|error| match error {
            StoreError::Invoice(InvoiceError::NoPlan(period)) => {
                CostError::NoPlan { org_id, period }
            }
            StoreError::Invoice(error) => CostError::Invoice(error),
            StoreError::InvalidRow(..) => CostError::InvalidRow(error.to_string()),
            StoreError::Database(error) => CostError::Database(error),
        })
}
