//! `keysync plans`: create, list, show and archive price plans. Prices are given in the
//! currency's major unit as decimal text (`49.00`, `0.50`) and kept exactly in minor
//! units; tiers as `UP_TO:PRICE` (per 1,000 units, the last `inf:PRICE`), weights as
//! `ENDPOINT=WEIGHT`.

use std::collections::BTreeMap;
use std::io::{self, Write};

use chrono::Utc;
use clap::Subcommand;

use super::limits::unchanged_note;
use super::render::{print, Output, Render};
use super::text_table::{table, Column};
use super::{connect, CommandError};
use crate::billing::currency::Currency;
use crate::billing::money::parse_minor;
use crate::billing::plan::{PlanTerms, Tier};
use crate::operations::actor::Actor;
use crate::operations::name::Name;
use crate::operations::plans::{self, ArchivedPlan, PlanRecord, PlanRef};

#[derive(Debug, Subcommand)]
pub enum PlansCommand {
    /// Create a price plan (plans never change: a new price is a new plan)
    ///
    /// A month costs the base fee, plus each tier's units beyond the included ones at
    /// its price per 1,000. A request counts as its endpoint's weight (1 unless given).
    #[command(after_help = PLAN_EXAMPLES)]
    Create {
        /// Unique name (1 to 200 characters), by which commands may name the plan
        #[arg(long)]
        name: String,
        /// ISO 4217 currency code, such as EUR, USD or JPY
        #[arg(long)]
        currency: String,
        /// The monthly fee, in the currency (49.00)
        #[arg(
            long,
            value_name = "AMOUNT",
            default_value = "0",
            allow_hyphen_values = true
        )]
        base_fee: String,
        /// Units a month without a charge
        #[arg(
            long,
            value_name = "UNITS",
            default_value = "0",
            allow_hyphen_values = true
        )]
        included: String,
        /// A graduated tier, in order: UP_TO:PRICE, the price of 1,000 units up to the
        /// period's UP_TO-th unit; the last one inf:PRICE (repeat the flag)
        #[arg(long = "tier", value_name = "UP_TO:PRICE", allow_hyphen_values = true)]
        tiers: Vec<String>,
        /// What one request of an endpoint (a route's name) counts as: ENDPOINT=WEIGHT,
        /// a whole number from 0 (repeat the flag)
        #[arg(
            long = "weight",
            value_name = "ENDPOINT=WEIGHT",
            allow_hyphen_values = true
        )]
        weights: Vec<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List price plans by name (archived ones with --archived)
    List {
        /// Archived plans too
        #[arg(long)]
        archived: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Show a price plan: its fee, tiers and weights
    Show {
        /// The plan's name or id
        #[arg(value_name = "PLAN")]
        plan: String,
        #[command(flatten)]
        output: Output,
    },
    /// Archive a price plan: no organization can be put on it any more (those on it
    /// stay, and are billed on it)
    Archive {
        /// The plan's name or id
        #[arg(value_name = "PLAN")]
        plan: String,
        #[command(flatten)]
        output: Output,
    },
}

const PLAN_EXAMPLES: &str = "\
Examples:
  keysync plans create --name pro --currency EUR --base-fee 49.00 --included 1000000 \\
      --tier 10000000:0.50 --tier inf:0.30 --weight search=5 --weight health=0
      49.00 EUR a month; units 1,000,001 to 10,000,000 at 0.50 per 1,000, then 0.30;
      a search request counts 5 units, a health check none
  keysync plans create --name free --currency USD --included 10000 --tier inf:0
Amounts are exact (minor units, rounded half up once per invoice line).";

pub async fn run(
    command: PlansCommand,
    database_url: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    match command {
        PlansCommand::Create {
            name,
            currency,
            base_fee,
            included,
            tiers,
            weights,
            output,
        } => {
            let name = Name::of_plan(&name)?;
            let terms = terms(&currency, &base_fee, &included, &tiers, &weights)?;
            let pool = connect(database_url).await?;
            print(
                out,
                &plans::create(&pool, Actor::Cli, &name, &terms).await?,
                output,
            )?;
        }
        PlansCommand::List { archived, output } => {
            let pool = connect(database_url).await?;
            print(out, &plans::list(&pool, archived).await?, output)?;
        }
        PlansCommand::Show { plan, output } => {
            let pool = connect(database_url).await?;
            print(
                out,
                &plans::get(&pool, &PlanRef::parse(&plan)).await?,
                output,
            )?;
        }
        PlansCommand::Archive { plan, output } => {
            let pool = connect(database_url).await?;
            let archived =
                plans::archive(&pool, Actor::Cli, &PlanRef::parse(&plan), Utc::now()).await?;
            print(out, &archived, output)?;
        }
    }
    Ok(())
}

/// The plan's terms from the flags, checked before connecting.
fn terms(
    currency: &str,
    base_fee: &str,
    included: &str,
    tiers: &[String],
    weights: &[String],
) -> Result<PlanTerms, CommandError> {
    let currency = Currency::parse(currency)?;
    let amount = |flag: &'static str, value: &str| {
        parse_minor(value, currency).map_err(|error| CommandError::InvalidPlanFlag {
            flag,
            value: value.to_owned(),
            reason: error.to_string(),
        })
    };
    let base_fee_minor = amount("--base-fee", base_fee)?;
    let included_units =
        included
            .trim()
            .parse::<i64>()
            .map_err(|_| CommandError::InvalidPlanFlag {
                flag: "--included",
                value: included.to_owned(),
                reason: "expected a whole number of units from 0".to_owned(),
            })?;
    let mut parsed_tiers = Vec::with_capacity(tiers.len());
    for text in tiers {
        let invalid = |reason: String| CommandError::InvalidPlanFlag {
            flag: "--tier",
            value: text.clone(),
            reason,
        };
        let (up_to, price) = text.split_once(':').ok_or_else(|| {
            invalid("expected UP_TO:PRICE, such as 1000000:0.50 or inf:0.30".to_owned())
        })?;
        let up_to = match up_to.trim() {
            "inf" => None,
            bound => Some(bound.parse::<i64>().map_err(|_| {
                invalid("expected UP_TO:PRICE, UP_TO a whole number of units or inf".to_owned())
            })?),
        };
        let price_per_1000_minor =
            parse_minor(price, currency).map_err(|error| invalid(error.to_string()))?;
        parsed_tiers.push(Tier {
            up_to,
            price_per_1000_minor,
        });
    }
    let mut parsed_weights = BTreeMap::new();
    for text in weights {
        let invalid = |reason: &str| CommandError::InvalidPlanFlag {
            flag: "--weight",
            value: text.clone(),
            reason: reason.to_owned(),
        };
        // Split at the last `=`: a weight never holds one.
        let (endpoint, weight) = text
            .rsplit_once('=')
            .ok_or_else(|| invalid("expected ENDPOINT=WEIGHT, such as search=5"))?;
        let weight = weight
            .trim()
            .parse::<i64>()
            .map_err(|_| invalid("expected ENDPOINT=WEIGHT, WEIGHT a whole number"))?;
        if parsed_weights.insert(endpoint.to_owned(), weight).is_some() {
            return Err(invalid("this endpoint has a weight already"));
        }
    }
    Ok(PlanTerms::new(
        currency,
        base_fee_minor,
        included_units,
        parsed_tiers,
        parsed_weights,
    )?)
}

/// `1000001-10000000` or `10000001-` for an unbounded tier.
fn tier_range(first: i64, up_to: Option<i64>) -> String {
    match up_to {
        Some(last) => format!("{first}-{last}"),
        None => format!("{first}-"),
    }
}

impl Render for PlanRecord {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "plan {} ({})", self.name, self.plan_id)?;
        writeln!(out, "currency: {}", self.currency)?;
        writeln!(out, "base fee: {} a month", self.base_fee)?;
        writeln!(out, "included: {} units", self.included_requests)?;
        let mut first = self.included_requests.saturating_add(1);
        for tier in &self.tiers {
            writeln!(
                out,
                "tier {}: {} per 1000",
                tier_range(first, tier.up_to),
                tier.price_per_1000
            )?;
            first = tier.up_to.map_or(first, |up_to| up_to.saturating_add(1));
        }
        if !self.weights.is_empty() {
            let weights: Vec<String> = self
                .weights
                .iter()
                .map(|(endpoint, weight)| format!("{endpoint}={weight}"))
                .collect();
            writeln!(out, "weights: {} (others 1)", weights.join(" "))?;
        }
        writeln!(out, "created: {}", self.created_at)?;
        match self.archived_at {
            Some(at) => writeln!(out, "archived: {at}"),
            None => Ok(()),
        }
    }
}

impl Render for Vec<PlanRecord> {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns: [Column<PlanRecord>; 8] = [
            Column::new("ID", |plan| plan.plan_id.to_string()),
            Column::new("NAME", |plan| plan.name.clone()),
            Column::new("CURRENCY", |plan| plan.currency.clone()),
            Column::new("BASE_FEE", |plan| plan.base_fee.clone()),
            Column::new("INCLUDED", |plan| plan.included_requests.to_string()),
            // Each tier's bound and price per 1,000: `10000000:0.50,inf:0.30`.
            Column::new("TIERS", |plan| {
                let tiers: Vec<String> = plan
                    .tiers
                    .iter()
                    .map(|tier| {
                        let bound = tier
                            .up_to
                            .map_or("inf".to_owned(), |up_to| up_to.to_string());
                        format!("{bound}:{}", tier.price_per_1000)
                    })
                    .collect();
                tiers.join(",")
            }),
            Column::new("WEIGHTS", |plan| {
                if plan.weights.is_empty() {
                    return "-".to_owned();
                }
                let weights: Vec<String> = plan
                    .weights
                    .iter()
                    .map(|(endpoint, weight)| format!("{endpoint}={weight}"))
                    .collect();
                weights.join(",")
            }),
            Column::new("ARCHIVED", |plan| {
                plan.archived_at
                    .map_or_else(|| "-".to_owned(), |at| at.to_string())
            }),
        ];
        out.write_all(table(&columns, self).as_bytes())
    }
}

impl Render for ArchivedPlan {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "archived plan {} ({}){}",
            self.plan.name,
            self.plan.plan_id,
            unchanged_note(self.changed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::render::printed;

    fn flags(tiers: &[&str], weights: &[&str]) -> Result<PlanTerms, String> {
        let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        terms("EUR", "49.00", "1000000", &owned(tiers), &owned(weights))
            .map_err(|error| error.to_string())
    }

    #[test]
    fn flags_become_exact_terms() {
        let terms = flags(
            &["10000000:0.50", "inf:0.3"],
            &["search=5", "api/v2:list=2"],
        )
        .unwrap();
        assert_eq!(terms.base_fee_minor(), 4900);
        assert_eq!(terms.included(), 1_000_000);
        assert_eq!(
            terms.tiers(),
            [
                Tier {
                    up_to: Some(10_000_000),
                    price_per_1000_minor: 50
                },
                Tier {
                    up_to: None,
                    price_per_1000_minor: 30
                }
            ]
        );
        assert_eq!(terms.weight("search"), 5);
        assert_eq!(terms.weight("api/v2:list"), 2);
    }

    #[test]
    fn bad_flags_are_one_clear_line() {
        let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let error =
            |currency: &str, base: &str, included: &str, tiers: &[&str], weights: &[&str]| {
                terms(currency, base, included, &owned(tiers), &owned(weights))
                    .unwrap_err()
                    .to_string()
            };
        let inf = &["inf:0.30"][..];
        for (message, expected) in [
            (
                error("EURO", "1", "0", inf, &[]),
                "unknown currency 'EURO': expected an ISO 4217 code",
            ),
            (
                error("EUR", "-1", "0", inf, &[]),
                "invalid --base-fee '-1': must not be negative",
            ),
            (
                error("EUR", "1.001", "0", inf, &[]),
                "invalid --base-fee '1.001': EUR has 2 decimals",
            ),
            (
                error("EUR", "1", "-5", inf, &[]),
                "invalid included requests: must not be negative",
            ),
            (
                error("EUR", "1", "lots", inf, &[]),
                "invalid --included 'lots': expected a whole number of units from 0",
            ),
            (
                error("EUR", "1", "0", &["inf:-0.30"], &[]),
                "invalid --tier 'inf:-0.30': must not be negative",
            ),
            (
                error("EUR", "1", "0", &["0.30"], &[]),
                "invalid --tier '0.30': expected UP_TO:PRICE",
            ),
            (
                error("EUR", "1", "1000", &["500:0.5", "inf:0.3"], &[]),
                "tiers not increasing: tier 1 goes up to 500, not beyond 1000",
            ),
            (
                error("EUR", "1", "0", inf, &["se arch=5"]),
                "invalid weight endpoint 'se arch': not an endpoint name",
            ),
            (
                error("EUR", "1", "0", inf, &["search"]),
                "invalid --weight 'search': expected ENDPOINT=WEIGHT",
            ),
            (
                error("EUR", "1", "0", inf, &["search=5", "search=2"]),
                "invalid --weight 'search=2': this endpoint has a weight already",
            ),
        ] {
            assert!(message.starts_with(expected), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn a_plan_reads_as_its_tiers_in_units() {
        let record = PlanRecord {
            plan_id: uuid::Uuid::nil(),
            name: "pro".to_owned(),
            currency: "EUR".to_owned(),
            base_fee_minor: 4900,
            base_fee: "49.00".to_owned(),
            included_requests: 1_000_000,
            tiers: vec![
                plans::TierRecord {
                    up_to: Some(10_000_000),
                    price_per_1000_minor: 50,
                    price_per_1000: "0.50".to_owned(),
                },
                plans::TierRecord {
                    up_to: None,
                    price_per_1000_minor: 30,
                    price_per_1000: "0.30".to_owned(),
                },
            ],
            weights: BTreeMap::from([("search".to_owned(), 5)]),
            created_at: crate::operations::timestamp::Timestamp(
                "2026-12-01T00:00:00Z".parse().unwrap(),
            ),
            archived_at: None,
        };
        let text = printed(&record, false);
        assert!(
            text.contains("\ntier 1000001-10000000: 0.50 per 1000\n"),
            "{text}"
        );
        assert!(text.contains("\ntier 10000001-: 0.30 per 1000\n"), "{text}");
        assert!(text.contains("\nweights: search=5 (others 1)\n"), "{text}");
        let listed = printed(&vec![record], false);
        assert!(listed.contains("10000000:0.50,inf:0.30"), "{listed}");
    }
}
