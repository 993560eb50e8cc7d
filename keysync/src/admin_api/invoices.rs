//! `/v1/orgs/{org_id}/invoice-preview`: what a month of the organization's usage costs
//! on its price plans (`keysync usage --cost`), answered as the CLI's `--json` prints
//! it. Readable with a read-only token, and with a token limited to that organization.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;

use super::documented::{BadRequest, NotFound, OrgIdPath, Throttled, Unauthorized, Unavailable};
use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::org_scope::OrgInPath;
use super::ApiState;
use crate::billing::invoice::Invoice;
use crate::billing::period::BillingPeriod;
use crate::operations::invoices;

/// `?period=` of an invoice preview.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InvoiceQuery {
    /// The month, such as `2026-12` (a calendar month, UTC); default: this month, priced
    /// on its usage so far.
    pub period: Option<String>,
}

/// The organization's invoice for a month: for each part of it on one plan, the
/// prorated base fee, the units by endpoint weight, the included units and each tier's
/// units and amount, then the total. Amounts are integers in minor units
/// (`total_minor`) and the same as decimal text (`total`), rounded once per line, half
/// up (`keysync usage --cost --json`).
#[utoipa::path(
    get,
    path = "/v1/orgs/{org_id}/invoice-preview",
    tag = "plans",
    params(OrgIdPath, InvoiceQuery),
    responses(
        (status = 200, description = "The invoice (`closed`: false while the month runs)", body = Invoice),
        (status = 409, description = "The month cannot be priced: its plans are in different currencies, or an amount is out of range (`cannot_price`)", body = ErrorBody),
        BadRequest, Unauthorized, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn invoice_preview(
    State(state): State<ApiState>,
    OrgInPath(org_id): OrgInPath,
    QueryParams(query): QueryParams<InvoiceQuery>,
) -> Result<Json<Invoice>, ApiError> {
    let period = query
        .period
        .as_deref()
        .map(|text| BillingPeriod::parse("period", text))
        .transpose()
        .map_err(|error| ApiError::invalid_request(error.to_string()))?;
    Ok(Json(
        invoices::preview(state.pool(), org_id, period, Utc::now()).await?,
    ))
}
