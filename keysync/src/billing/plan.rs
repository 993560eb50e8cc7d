//! A price plan's terms, checked: a currency, a monthly base fee, the units included, the
//! graduated tiers beyond them and the per-endpoint weights. Every way a plan is made
//! (`keysync plans create`, `POST /v1/plans`) and read back goes through
//! [`PlanTerms::new`], so a plan that breaks a rule below never exists.
//!
//! Units: a request counts as its endpoint's weight (1 unless the plan names the
//! endpoint: a `search` call may count 5, a `health` call 0). Tiers are graduated: each
//! prices the units that fall in it, per 1,000, and bounds are counted from the period's
//! first unit, so `included 1000000`, tiers `10000000:50` and `inf:30` mean units
//! 1,000,001 to 10,000,000 at 50 minor units per 1,000 and every one beyond at 30.

use std::collections::BTreeMap;

use keysync_contract::usage_endpoint::{is_reported, MAX_ENDPOINTS, MAX_NAME_LEN};
use serde::{Deserialize, Serialize};

use super::currency::Currency;
use super::money::MAX_PRICE_MINOR;

/// The most tiers a plan may have.
pub const MAX_TIERS: usize = 20;
/// The largest weight of an endpoint.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// The most units a plan may include or bound a tier at: a thousand times the most
/// requests a month a quota may count.
pub const MAX_UNITS: i64 = 1_000_000_000_000_000_000;

/// One graduated tier: the units up to `up_to` (counted from the period's first; `None`:
/// every unit beyond the previous bound) at a price per 1,000 units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// The last unit of the period this tier prices; `null` for the last tier, which has
    /// no bound.
    #[schema(minimum = 1)]
    pub up_to: Option<i64>,
    /// The price of 1,000 units in this tier, in the currency's minor unit (cents).
    #[schema(minimum = 0, maximum = 1000000000000000_i64)]
    pub price_per_1000_minor: i64,
}

/// Terms that break a rule; the message says which, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPlan {
    #[error("invalid base fee: {0}")]
    BaseFee(&'static str),
    #[error("invalid included requests: {0}")]
    Included(&'static str),
    #[error("a plan needs tiers: at least one, the last without a bound (inf)")]
    NoTiers,
    #[error("too many tiers: at most {MAX_TIERS}")]
    TooManyTiers,
    #[error("invalid price of tier {tier}: {reason}")]
    TierPrice { tier: usize, reason: &'static str },
    #[error("tiers not increasing: tier {tier} goes up to {up_to}, not beyond {previous}")]
    TiersNotIncreasing {
        tier: usize,
        up_to: i64,
        previous: i64,
    },
    #[error("invalid tier {tier}: only the last tier has no bound")]
    UnboundedBeforeLast { tier: usize },
    #[error(
        "invalid tier {tier}: the last tier must have no bound (inf), so every unit has a price"
    )]
    BoundedLast { tier: usize },
    #[error("invalid tier {tier}: bound {up_to} is over {MAX_UNITS}")]
    TierTooLarge { tier: usize, up_to: i64 },
    #[error(
        "invalid weight endpoint '{0}': not an endpoint name (1 to {MAX_NAME_LEN} of A-Z a-z \
         0-9 . _ : / -, or (other))"
    )]
    WeightEndpoint(String),
    #[error("invalid weight of '{endpoint}': expected a whole number from 0 to {MAX_WEIGHT}")]
    Weight { endpoint: String },
    #[error("too many weights: at most {MAX_ENDPOINTS}")]
    TooManyWeights,
}

/// A plan's checked terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanTerms {
    currency: Currency,
    base_fee_minor: i64,
    included: i64,
    tiers: Vec<Tier>,
    weights: BTreeMap<String, u32>,
}

impl PlanTerms {
    /// Checks the terms: prices from 0 to [`MAX_PRICE_MINOR`], included units from 0,
    /// one to [`MAX_TIERS`] tiers with bounds increasing beyond the included units and
    /// only the last one unbounded, weights of endpoint names from 0 to [`MAX_WEIGHT`].
    pub fn new(
        currency: Currency,
        base_fee_minor: i64,
        included: i64,
        tiers: Vec<Tier>,
        weights: BTreeMap<String, i64>,
    ) -> Result<PlanTerms, InvalidPlan> {
        price(base_fee_minor).map_err(InvalidPlan::BaseFee)?;
        if included < 0 {
            return Err(InvalidPlan::Included("must not be negative"));
        }
        if included > MAX_UNITS {
            return Err(InvalidPlan::Included("too large"));
        }
        if tiers.is_empty() {
            return Err(InvalidPlan::NoTiers);
        }
        if tiers.len() > MAX_TIERS {
            return Err(InvalidPlan::TooManyTiers);
        }
        let mut previous = included;
        let last = tiers.len();
        for (index, tier) in tiers.iter().enumerate() {
            let number = index + 1;
            price(tier.price_per_1000_minor).map_err(|reason| InvalidPlan::TierPrice {
                tier: number,
                reason,
            })?;
            match tier.up_to {
                None if number < last => {
                    return Err(InvalidPlan::UnboundedBeforeLast { tier: number })
                }
                None => {}
                Some(_) if number == last => return Err(InvalidPlan::BoundedLast { tier: number }),
                Some(up_to) if up_to <= previous => {
                    return Err(InvalidPlan::TiersNotIncreasing {
                        tier: number,
                        up_to,
                        previous,
                    })
                }
                Some(up_to) if up_to > MAX_UNITS => {
                    return Err(InvalidPlan::TierTooLarge {
                        tier: number,
                        up_to,
                    })
                }
                Some(up_to) => previous = up_to,
            }
        }
        if weights.len() > MAX_ENDPOINTS {
            return Err(InvalidPlan::TooManyWeights);
        }
        let mut checked = BTreeMap::new();
        for (endpoint, weight) in weights {
            if !is_reported(&endpoint) {
                return Err(InvalidPlan::WeightEndpoint(endpoint));
            }
            let weight = u32::try_from(weight)
                .ok()
                .filter(|weight| *weight <= MAX_WEIGHT)
                .ok_or_else(|| InvalidPlan::Weight {
                    endpoint: endpoint.clone(),
                })?;
            checked.insert(endpoint, weight);
        }
        Ok(PlanTerms {
            currency,
            base_fee_minor,
            included,
            tiers,
            weights: checked,
        })
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// A month's fee, in minor units.
    pub fn base_fee_minor(&self) -> i64 {
        self.base_fee_minor
    }

    /// Units a month without a charge.
    pub fn included(&self) -> i64 {
        self.included
    }

    /// In order; the last has no bound.
    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The endpoints that do not count 1 a request.
    pub fn weights(&self) -> &BTreeMap<String, u32> {
        &self.weights
    }

    /// What a request of `endpoint` counts as.
    pub fn weight(&self, endpoint: &str) -> u32 {
        self.weights.get(endpoint).copied().unwrap_or(1)
    }
}

/// A price's rule: 0 to [`MAX_PRICE_MINOR`] minor units.
fn price(minor: i64) -> Result<(), &'static str> {
    if minor < 0 {
        Err("must not be negative")
    } else if minor > MAX_PRICE_MINOR {
        Err("larger than the largest price")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier(up_to: Option<i64>, price: i64) -> Tier {
        Tier {
            up_to,
            price_per_1000_minor: price,
        }
    }

    fn terms(
        base: i64,
        included: i64,
        tiers: Vec<Tier>,
        weights: &[(&str, i64)],
    ) -> Result<PlanTerms, String> {
        let weights = weights
            .iter()
            .map(|(name, weight)| ((*name).to_owned(), *weight))
            .collect();
        PlanTerms::new(
            Currency::parse("EUR").unwrap(),
            base,
            included,
            tiers,
            weights,
        )
        .map_err(|error| error.to_string())
    }

    #[test]
    fn good_terms_are_kept() {
        let plan = terms(
            4900,
            1_000_000,
            vec![tier(Some(10_000_000), 50), tier(None, 30)],
            &[("search", 5), ("health", 0), ("-", 2), ("(other)", 1)],
        )
        .unwrap();
        assert_eq!(plan.weight("search"), 5);
        assert_eq!(plan.weight("health"), 0);
        assert_eq!(plan.weight("orders"), 1);
        assert_eq!(plan.tiers().len(), 2);
        assert!(terms(0, 0, vec![tier(None, 0)], &[]).is_ok(), "free");
    }

    #[test]
    fn every_broken_rule_is_one_clear_line() {
        let ok_tiers = || vec![tier(None, 30)];
        for (result, expected) in [
            (
                terms(-1, 0, ok_tiers(), &[]),
                "invalid base fee: must not be negative",
            ),
            (
                terms(MAX_PRICE_MINOR + 1, 0, ok_tiers(), &[]),
                "invalid base fee: larger than the largest price",
            ),
            (
                terms(0, -1, ok_tiers(), &[]),
                "invalid included requests: must not be negative",
            ),
            (terms(0, 0, vec![], &[]), "a plan needs tiers"),
            (
                terms(0, 0, vec![tier(None, -5)], &[]),
                "invalid price of tier 1: must not be negative",
            ),
            (
                terms(0, 1_000, vec![tier(Some(1_000), 50), tier(None, 30)], &[]),
                "tiers not increasing: tier 1 goes up to 1000, not beyond 1000",
            ),
            (
                terms(
                    0,
                    0,
                    vec![tier(Some(5_000), 50), tier(Some(4_000), 40), tier(None, 30)],
                    &[],
                ),
                "tiers not increasing: tier 2 goes up to 4000, not beyond 5000",
            ),
            (
                terms(0, 0, vec![tier(None, 50), tier(None, 30)], &[]),
                "invalid tier 1: only the last tier has no bound",
            ),
            (
                terms(0, 0, vec![tier(Some(5_000), 50)], &[]),
                "invalid tier 1: the last tier must have no bound (inf)",
            ),
            (
                terms(0, 0, ok_tiers(), &[("se arch", 5)]),
                "invalid weight endpoint 'se arch': not an endpoint name",
            ),
            (
                terms(0, 0, ok_tiers(), &[("", 5)]),
                "invalid weight endpoint '': not an endpoint name",
            ),
            (
                terms(0, 0, ok_tiers(), &[("search", -1)]),
                "invalid weight of 'search': expected a whole number from 0 to 1000000",
            ),
            (
                terms(0, 0, ok_tiers(), &[("search", 1_000_001)]),
                "invalid weight of 'search'",
            ),
        ] {
            let message = result.unwrap_err();
            assert!(message.starts_with(expected), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        let many = (0..=MAX_TIERS as i64)
            .map(|n| tier(Some(n + 1), 1))
            .collect();
        assert_eq!(
            terms(0, 0, many, &[]).unwrap_err(),
            "too many tiers: at most 20"
        );
    }
}
