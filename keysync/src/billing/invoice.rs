//! Pricing one organization's period: from the segments of the period (each on one plan,
//! with its billable requests by endpoint) to the invoice, its lines and its total.
//! Pure arithmetic on integers; reading the plans and the usage is [`super::ledger`]'s.
//!
//! The rules, in the order they apply to a segment:
//! 1. Units: each endpoint's requests times its weight in the plan (1 unless named),
//!    one line per weighted endpoint with requests and one for every other endpoint.
//! 2. A segment shorter than the period (a plan change during it, or a first plan taken
//!    mid-month) gets that share of the plan: the base fee, the included units and every
//!    tier bound are multiplied by its hours over the period's hours, each rounded half
//!    up (the fee to the minor unit, the counts to whole units).
//! 3. The included units cost nothing; each tier prices the units between its bounds:
//!    `units x price per 1,000 / 1,000`, computed exactly and rounded **once per line,
//!    half up, to the currency's minor unit**. Every tier gets a line, used or not.
//! 4. A segment's amount is its base fee plus its tier lines; the invoice's total is the
//!    sum of its segments. Totals add rounded lines, so the lines always add up to the
//!    total shown; nothing is rounded twice, and no floating-point number is involved.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use super::currency::Currency;
use super::money::{divide_half_up, format_minor};
use super::period::BillingPeriod;
use super::plan::PlanTerms;
use super::schedule::Segment;
use crate::usage::Outcome;

/// A plan as an invoice names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedPlan {
    pub id: Uuid,
    pub name: String,
    pub terms: PlanTerms,
}

/// A segment to price: its plan and its billable requests (forwarded: not refused by the
/// gateway) by endpoint.
#[derive(Debug, Clone)]
pub struct SegmentUsage<'a> {
    pub segment: Segment,
    pub plan: &'a PricedPlan,
    pub requests: BTreeMap<String, i64>,
}

/// Why a period cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    #[error("no price plan was in effect at any time of {0}")]
    NoPlan(String),
    #[error("the plans of {0} are in different currencies")]
    MixedCurrencies(String),
    #[error("an amount of {0} is out of range")]
    OutOfRange(String),
}

/// An organization's invoice for a period: what `keysync usage --cost` prints,
/// `GET /v1/orgs/{org_id}/invoice-preview` answers and the `io.keysync.invoice.v1` event
/// carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Invoice {
    pub org_id: Uuid,
    /// The month, `2026-12`.
    pub period: String,
    /// The period, `[from, to)`: a calendar month in UTC.
    #[serde(serialize_with = "seconds")]
    #[schema(value_type = String, format = DateTime)]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "seconds")]
    #[schema(value_type = String, format = DateTime)]
    pub to: DateTime<Utc>,
    /// False while the period runs: the usage so far, priced with the whole period's
    /// fees.
    pub closed: bool,
    /// ISO 4217; every amount is in it.
    #[schema(value_type = String, example = "EUR")]
    pub currency: Currency,
    /// The parts of the period on one plan each, in order.
    pub segments: Vec<InvoiceSegment>,
    /// The sum of the segments' amounts, in minor units (cents).
    pub total_minor: i64,
    /// The same as decimal text with the currency's decimals, `53.50`.
    pub total: String,
}

/// Part of a period on one plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct InvoiceSegment {
    pub plan_id: Uuid,
    pub plan_name: String,
    #[serde(serialize_with = "seconds")]
    #[schema(value_type = String, format = DateTime)]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "seconds")]
    #[schema(value_type = String, format = DateTime)]
    pub to: DateTime<Utc>,
    /// Its hours, of `period_hours`: the share of the plan's fee, included units and tier
    /// bounds it gets.
    pub hours: i64,
    pub period_hours: i64,
    /// The base fee, prorated by the share.
    pub base_fee_minor: i64,
    pub base_fee: String,
    /// Units by endpoint weight: one line per weighted endpoint with requests, one
    /// (`endpoint`: null, weight 1) for the other endpoints.
    pub endpoints: Vec<EndpointUnits>,
    /// Units in all.
    pub units: i64,
    /// The included units (when the plan has any), then every tier.
    pub tiers: Vec<TierLine>,
    /// The base fee plus the tier lines, in minor units.
    pub amount_minor: i64,
    pub amount: String,
}

/// Requests of an endpoint and the units they count as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EndpointUnits {
    /// The endpoint (a route's name) the plan weighs; null for every other endpoint.
    pub endpoint: Option<String>,
    /// Billable requests: forwarded upstream (not refused by a rate limit, a quota or a
    /// key's policy).
    pub requests: i64,
    pub weight: u32,
    /// `requests x weight`.
    pub units: i64,
}

/// The units one tier prices and what they cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TierLine {
    /// True for the included units (free).
    pub included: bool,
    /// The tier's first and last unit of the period (the last null: unbounded),
    /// prorated for a segment shorter than the period.
    pub first_unit: i64,
    pub last_unit: Option<i64>,
    /// The segment's units that fall in the tier.
    pub units: i64,
    pub price_per_1000_minor: i64,
    pub price_per_1000: String,
    /// `units x price_per_1000_minor / 1000`, rounded half up to the minor unit.
    pub amount_minor: i64,
    pub amount: String,
}

/// Whether requests of `outcome` are billed: those the gateway forwarded upstream
/// (answered 1xx to 5xx, whatever the answer), as a quota counts them. A request the
/// gateway refused (a rate limit, a quota, a key's policy) is never billed, so a month
/// in which an organization ran out of its quota costs what was served.
pub fn is_billable(outcome: Outcome) -> bool {
    match outcome {
        Outcome::Other
        | Outcome::Status2xx
        | Outcome::Status3xx
        | Outcome::Status4xx
        | Outcome::Status5xx => true,
        Outcome::RateLimited | Outcome::QuotaExceeded | Outcome::PolicyDenied => false,
    }
}

/// The billable requests by endpoint of `rows` (endpoint, outcome, requests).
pub fn billable_requests(
    rows: impl IntoIterator<Item = (String, Outcome, i64)>,
) -> BTreeMap<String, i64> {
    let mut requests = BTreeMap::new();
    for (endpoint, outcome, count) in rows {
        if is_billable(outcome) && count > 0 {
            let sum: &mut i64 = requests.entry(endpoint).or_default();
            *sum = sum.saturating_add(count);
        }
    }
    requests
}

/// Prices `segments` (in order, of `period`) for `org_id`.
pub fn compute(
    org_id: Uuid,
    period: BillingPeriod,
    closed: bool,
    segments: &[SegmentUsage<'_>],
) -> Result<Invoice, InvoiceError> {
    let label = period.to_string();
    let first = segments
        .first()
        .ok_or_else(|| InvoiceError::NoPlan(label.clone()))?;
    let currency = first.plan.terms.currency();
    if segments
        .iter()
        .any(|segment| segment.plan.terms.currency() != currency)
    {
        return Err(InvoiceError::MixedCurrencies(label));
    }
    let out_of_range = || InvoiceError::OutOfRange(label.clone());
    let mut priced = Vec::with_capacity(segments.len());
    let mut total: i128 = 0;
    for segment in segments {
        let line = price_segment(period, segment).ok_or_else(out_of_range)?;
        total += i128::from(line.amount_minor);
        priced.push(line);
    }
    let total_minor = i64::try_from(total).map_err(|_| out_of_range())?;
    Ok(Invoice {
        org_id,
        period: label,
        from: period.start,
        to: period.end,
        closed,
        currency,
        segments: priced,
        total_minor,
        total: format_minor(total_minor, currency),
    })
}

/// One segment's lines; `None` when an amount does not fit an `i64`.
fn price_segment(period: BillingPeriod, usage: &SegmentUsage<'_>) -> Option<InvoiceSegment> {
    let terms = &usage.plan.terms;
    let currency = terms.currency();
    let hours = (usage.segment.to - usage.segment.from).num_hours();
    let period_hours = period.hours();
    // The share of the plan this segment gets (rule 2).
    let share = |value: i64| -> i128 {
        if hours >= period_hours {
            i128::from(value)
        } else {
            divide_half_up(
                i128::from(value) * i128::from(hours.max(0)),
                i128::from(period_hours),
            )
        }
    };

    // Rule 1: units by endpoint weight.
    let mut endpoints = Vec::new();
    let mut other_requests: i128 = 0;
    for (endpoint, requests) in &usage.requests {
        if terms.weights().contains_key(endpoint) {
            continue;
        }
        other_requests += i128::from(*requests);
    }
    let mut units: i128 = 0;
    for (endpoint, weight) in terms.weights() {
        let requests = usage.requests.get(endpoint).copied().unwrap_or(0);
        if requests > 0 {
            let weighted = i128::from(requests) * i128::from(*weight);
            units += weighted;
            endpoints.push(EndpointUnits {
                endpoint: Some(endpoint.clone()),
                requests,
                weight: *weight,
                units: i64::try_from(weighted).ok()?,
            });
        }
    }
    if other_requests > 0 {
        units += other_requests;
        let other = i64::try_from(other_requests).ok()?;
        endpoints.push(EndpointUnits {
            endpoint: None,
            requests: other,
            weight: 1,
            units: other,
        });
    }

    // Rule 3: the included units, then each tier between its bounds.
    let base_fee = share(terms.base_fee_minor());
    let included = share(terms.included());
    let mut tiers = Vec::with_capacity(terms.tiers().len() + 1);
    let zero = format_minor(0, currency);
    if included > 0 {
        tiers.push(TierLine {
            included: true,
            first_unit: 1,
            last_unit: Some(i64::try_from(included).ok()?),
            units: i64::try_from(units.min(included)).ok()?,
            price_per_1000_minor: 0,
            price_per_1000: zero.clone(),
            amount_minor: 0,
            amount: zero.clone(),
        });
    }
    let mut lower = included;
    let mut amount = base_fee;
    for tier in terms.tiers() {
        let upper = tier.up_to.map(|up_to| share(up_to).max(lower));
        let above = (units - lower).max(0);
        let in_tier = upper.map_or(above, |upper| above.min(upper - lower));
        let price = tier.price_per_1000_minor;
        let line_amount = divide_half_up(in_tier * i128::from(price), 1000);
        amount += line_amount;
        let line_amount = i64::try_from(line_amount).ok()?;
        tiers.push(TierLine {
            included: false,
            first_unit: i64::try_from(lower + 1).ok()?,
            last_unit: upper.map(i64::try_from).transpose().ok()?,
            units: i64::try_from(in_tier).ok()?,
            price_per_1000_minor: price,
            price_per_1000: format_minor(price, currency),
            amount_minor: line_amount,
            amount: format_minor(line_amount, currency),
        });
        if let Some(upper) = upper {
            lower = upper;
        }
    }
    let base_fee_minor = i64::try_from(base_fee).ok()?;
    let amount_minor = i64::try_from(amount).ok()?;
    Some(InvoiceSegment {
        plan_id: usage.plan.id,
        plan_name: usage.plan.name.clone(),
        from: usage.segment.from,
        to: usage.segment.to,
        hours,
        period_hours,
        base_fee_minor,
        base_fee: format_minor(base_fee_minor, currency),
        endpoints,
        units: i64::try_from(units).ok()?,
        tiers,
        amount_minor,
        amount: format_minor(amount_minor, currency),
    })
}

/// An instant as operators read it: RFC 3339 in UTC, to the second.
fn seconds<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::plan::Tier;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn december() -> BillingPeriod {
        BillingPeriod::parse("period", "2026-12").unwrap()
    }

    /// EUR 49.00 a month, 1,000,000 units included, then 0.50 per 1,000 up to unit
    /// 10,000,000 and 0.30 per 1,000 beyond; `search` counts 5, `health` 0.
    fn pro() -> PricedPlan {
        plan(
            1,
            "pro",
            "EUR",
            4900,
            1_000_000,
            &[(Some(10_000_000), 50), (None, 30)],
            &[("search", 5), ("health", 0)],
        )
    }

    fn plan(
        id: u128,
        name: &str,
        currency: &str,
        base: i64,
        included: i64,
        tiers: &[(Option<i64>, i64)],
        weights: &[(&str, i64)],
    ) -> PricedPlan {
        PricedPlan {
            id: Uuid::from_u128(id),
            name: name.to_owned(),
            terms: PlanTerms::new(
                Currency::parse(currency).unwrap(),
                base,
                included,
                tiers
                    .iter()
                    .map(|(up_to, price)| Tier {
                        up_to: *up_to,
                        price_per_1000_minor: *price,
                    })
                    .collect(),
                weights
                    .iter()
                    .map(|(name, weight)| ((*name).to_owned(), *weight))
                    .collect(),
            )
            .unwrap(),
        }
    }

    fn usage<'a>(
        plan: &'a PricedPlan,
        from: &str,
        to: &str,
        requests: &[(&str, i64)],
    ) -> SegmentUsage<'a> {
        SegmentUsage {
            segment: Segment {
                plan_id: plan.id,
                from: at(from),
                to: at(to),
            },
            plan,
            requests: requests
                .iter()
                .map(|(endpoint, count)| ((*endpoint).to_owned(), *count))
                .collect(),
        }
    }

    fn whole_month<'a>(plan: &'a PricedPlan, requests: &[(&str, i64)]) -> SegmentUsage<'a> {
        usage(
            plan,
            "2026-12-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
            requests,
        )
    }

    fn invoice(segments: &[SegmentUsage<'_>]) -> Invoice {
        compute(Uuid::from_u128(9), december(), true, segments).unwrap()
    }

    /// (first, last, units, amount) of each tier line.
    fn tier_lines(segment: &InvoiceSegment) -> Vec<(i64, Option<i64>, i64, i64)> {
        segment
            .tiers
            .iter()
            .map(|line| {
                (
                    line.first_unit,
                    line.last_unit,
                    line.units,
                    line.amount_minor,
                )
            })
            .collect()
    }

    #[test]
    fn zero_usage_costs_the_base_fee() {
        let pro = pro();
        let invoice = invoice(&[whole_month(&pro, &[])]);
        let segment = &invoice.segments[0];
        assert_eq!(segment.units, 0);
        assert!(segment.endpoints.is_empty());
        assert_eq!(
            tier_lines(segment),
            [
                (1, Some(1_000_000), 0, 0),
                (1_000_001, Some(10_000_000), 0, 0),
                (10_000_001, None, 0, 0),
            ]
        );
        assert_eq!(segment.base_fee, "49.00");
        assert_eq!(
            (invoice.total_minor, invoice.total.as_str()),
            (4900, "49.00")
        );
        assert_eq!(invoice.currency.code(), "EUR");
    }

    #[test]
    fn units_up_to_the_included_are_free_and_one_more_is_priced() {
        let pro = pro();
        // Exactly at the boundary: all included.
        let at_boundary = invoice(&[whole_month(&pro, &[("orders", 1_000_000)])]);
        assert_eq!(
            tier_lines(&at_boundary.segments[0]),
            [
                (1, Some(1_000_000), 1_000_000, 0),
                (1_000_001, Some(10_000_000), 0, 0),
                (10_000_001, None, 0, 0),
            ]
        );
        assert_eq!(at_boundary.total_minor, 4900);
        // One past: 1 unit at 50 cents per 1,000 is 0.05 cents, rounded half up to 0.
        let one_past = invoice(&[whole_month(&pro, &[("orders", 1_000_001)])]);
        assert_eq!(
            tier_lines(&one_past.segments[0])[1],
            (1_000_001, Some(10_000_000), 1, 0)
        );
        assert_eq!(one_past.total_minor, 4900);
        // 10 past: 0.5 cents, a half: rounded up to 1 cent.
        let ten_past = invoice(&[whole_month(&pro, &[("orders", 1_000_010)])]);
        assert_eq!(tier_lines(&ten_past.segments[0])[1].3, 1);
        assert_eq!(ten_past.total, "49.01");
        // 9 past: 0.45 cents, down to 0.
        let nine_past = invoice(&[whole_month(&pro, &[("orders", 1_000_009)])]);
        assert_eq!(nine_past.total, "49.00");
    }

    #[test]
    fn a_tier_boundary_exactly_and_one_past() {
        let pro = pro();
        // Exactly at the second bound: 9,000,000 units in tier 1 at 0.50 / 1,000 =
        // 4,500.00.
        let at_bound = invoice(&[whole_month(&pro, &[("orders", 10_000_000)])]);
        assert_eq!(
            tier_lines(&at_bound.segments[0]),
            [
                (1, Some(1_000_000), 1_000_000, 0),
                (1_000_001, Some(10_000_000), 9_000_000, 450_000),
                (10_000_001, None, 0, 0),
            ]
        );
        assert_eq!(at_bound.total, "4549.00");
        // 1,000 past: one more 1,000 at 0.30.
        let past = invoice(&[whole_month(&pro, &[("orders", 10_001_000)])]);
        assert_eq!(
            tier_lines(&past.segments[0])[2],
            (10_000_001, None, 1_000, 30)
        );
        assert_eq!(past.total, "4549.30");
        // One past: 1 unit at 0.30 / 1,000 = 0.03 cents, rounded to 0.
        let one = invoice(&[whole_month(&pro, &[("orders", 10_000_001)])]);
        assert_eq!(tier_lines(&one.segments[0])[2], (10_000_001, None, 1, 0));
        assert_eq!(one.total, "4549.00");
    }

    #[test]
    fn weights_count_each_endpoints_requests_as_units() {
        let pro = pro();
        // 300,000 search x 5 = 1,500,000; 50,000 health x 0 = 0; 700,000 others x 1.
        // 2,200,000 units: 1,200,000 beyond the included at 0.50 / 1,000 = 600.00.
        let invoice = invoice(&[whole_month(
            &pro,
            &[
                ("search", 300_000),
                ("health", 50_000),
                ("orders", 600_000),
                ("-", 100_000),
            ],
        )]);
        let segment = &invoice.segments[0];
        let endpoints: Vec<_> = segment
            .endpoints
            .iter()
            .map(|line| {
                (
                    line.endpoint.as_deref(),
                    line.requests,
                    line.weight,
                    line.units,
                )
            })
            .collect();
        assert_eq!(
            endpoints,
            [
                (Some("health"), 50_000, 0, 0),
                (Some("search"), 300_000, 5, 1_500_000),
                (None, 700_000, 1, 700_000),
            ]
        );
        assert_eq!(segment.units, 2_200_000);
        assert_eq!(
            tier_lines(segment)[1],
            (1_000_001, Some(10_000_000), 1_200_000, 60_000)
        );
        assert_eq!(invoice.total, "649.00");
    }

    #[test]
    fn a_plan_change_mid_way_splits_the_period_by_hours() {
        // December has 744 hours. `starter` (EUR 10.00, 100,000 included, then 1.00 per
        // 1,000) until the 16th 00:00 (360 hours), `pro` from then (384 hours).
        let starter = plan(2, "starter", "EUR", 1000, 100_000, &[(None, 100)], &[]);
        let pro = pro();
        let invoice = invoice(&[
            usage(
                &starter,
                "2026-12-01T00:00:00Z",
                "2026-12-16T00:00:00Z",
                &[("orders", 200_000)],
            ),
            usage(
                &pro,
                "2026-12-16T00:00:00Z",
                "2027-01-01T00:00:00Z",
                &[("orders", 1_000_000), ("search", 10_000)],
            ),
        ]);
        let [first, second] = &invoice.segments[..] else {
            panic!("two segments: {invoice:?}")
        };
        // starter: fee 1000 x 360/744 = 483.87 -> 484; included 100,000 x 360/744 =
        // 48,387.09 -> 48,387; 200,000 - 48,387 = 151,613 units at 1.00 / 1,000 =
        // 15,161.3 cents -> 15,161.
        assert_eq!((first.hours, first.period_hours), (360, 744));
        assert_eq!(first.base_fee_minor, 484);
        assert_eq!(
            tier_lines(first),
            [
                (1, Some(48_387), 48_387, 0),
                (48_388, None, 151_613, 15_161)
            ]
        );
        assert_eq!(first.amount, "156.45");
        // pro: fee 4900 x 384/744 = 2529.03 -> 2529; included 1,000,000 x 384/744 =
        // 516,129.03 -> 516,129; bound 10,000,000 x 384/744 = 5,161,290.32 -> 5,161,290.
        // Units: 1,000,000 + 10,000 x 5 = 1,050,000; 533,871 beyond at 0.50 / 1,000 =
        // 26,693.55 cents -> 26,694 (half up).
        assert_eq!(second.base_fee_minor, 2529);
        assert_eq!(second.units, 1_050_000);
        assert_eq!(
            tier_lines(second),
            [
                (1, Some(516_129), 516_129, 0),
                (516_130, Some(5_161_290), 533_871, 26_694),
                (5_161_291, None, 0, 0),
            ]
        );
        assert_eq!(second.amount, "292.23");
        // The total is the sum of the rounded lines: 156.45 + 292.23.
        assert_eq!(invoice.total, "448.68");
    }

    #[test]
    fn a_month_with_a_quota_bills_only_what_was_served() {
        // The organization ran out of its quota: 1,200,000 forwarded (2xx, 4xx, 5xx),
        // then 400,000 refused by the quota, 30,000 by a rate limit, 500 by a key's
        // policy. Billed: the 1,200,000 forwarded; 200,000 beyond the included at 0.50
        // per 1,000 = 100.00, plus 49.00.
        let rows = [
            ("orders", Outcome::Status2xx, 1_100_000),
            ("orders", Outcome::Status4xx, 60_000),
            ("orders", Outcome::Status5xx, 40_000),
            ("orders", Outcome::QuotaExceeded, 400_000),
            ("orders", Outcome::RateLimited, 30_000),
            ("orders", Outcome::PolicyDenied, 500),
        ];
        let requests = billable_requests(
            rows.iter()
                .map(|(endpoint, outcome, count)| ((*endpoint).to_owned(), *outcome, *count)),
        );
        assert_eq!(requests, BTreeMap::from([("orders".to_owned(), 1_200_000)]));
        let pro = pro();
        let invoice = invoice(&[SegmentUsage {
            requests,
            ..whole_month(&pro, &[])
        }]);
        assert_eq!(invoice.segments[0].units, 1_200_000);
        assert_eq!(invoice.total, "149.00");
    }

    #[test]
    fn currencies_without_decimals_and_mixed_ones() {
        let yen = plan(3, "jp", "JPY", 5000, 0, &[(None, 75)], &[]);
        // 1,234 units at 75 yen per 1,000 = 92.55 -> 93.
        let invoice = invoice(&[whole_month(&yen, &[("orders", 1_234)])]);
        assert_eq!(invoice.segments[0].tiers.len(), 1, "no included line");
        assert_eq!(invoice.total, "5093");
        let pro = pro();
        let mixed = compute(
            Uuid::nil(),
            december(),
            true,
            &[
                usage(&yen, "2026-12-01T00:00:00Z", "2026-12-10T00:00:00Z", &[]),
                usage(&pro, "2026-12-10T00:00:00Z", "2027-01-01T00:00:00Z", &[]),
            ],
        );
        assert_eq!(
            mixed.unwrap_err().to_string(),
            "the plans of 2026-12 are in different currencies"
        );
        assert_eq!(
            compute(Uuid::nil(), december(), true, &[])
                .unwrap_err()
                .to_string(),
            "no price plan was in effect at any time of 2026-12"
        );
    }

    #[test]
    fn the_largest_prices_and_usage_stay_exact_or_are_refused() {
        let dear = plan(
            4,
            "dear",
            "EUR",
            0,
            0,
            &[(None, 1_000_000_000_000_000)],
            &[],
        );
        // 9,000 units at 10^15 per 1,000: 9 x 10^15 fits an i64.
        let fits = invoice(&[whole_month(&dear, &[("orders", 9_000)])]);
        assert_eq!(fits.total_minor, 9_000_000_000_000_000);
        let over = compute(
            Uuid::nil(),
            december(),
            true,
            &[whole_month(&dear, &[("orders", 10_000_000)])],
        );
        assert_eq!(
            over.unwrap_err().to_string(),
            "an amount of 2026-12 is out of range"
        );
    }

    #[test]
    fn the_json_has_minor_units_and_decimal_text() {
        let pro = pro();
        let invoice = invoice(&[whole_month(&pro, &[("search", 1)])]);
        let json = serde_json::to_value(&invoice).unwrap();
        assert_eq!(json["period"], "2026-12");
        assert_eq!(json["from"], "2026-12-01T00:00:00Z");
        assert_eq!(json["currency"], "EUR");
        assert_eq!(json["total_minor"], 4900);
        assert_eq!(json["total"], "49.00");
        assert_eq!(json["segments"][0]["plan_name"], "pro");
        assert_eq!(json["segments"][0]["endpoints"][0]["endpoint"], "search");
        assert_eq!(json["segments"][0]["tiers"][1]["price_per_1000"], "0.50");
        assert_eq!(
            json["segments"][0]["tiers"][2]["last_unit"],
            serde_json::Value::Null
        );
    }
}
