//! `keysync orgs`: create, list and update organizations (external id, metadata), and
//! set their rate limits, monthly quotas and price plans.

use std::io::{self, Write};

use chrono::Utc;
use clap::Subcommand;

use super::limits::{limit_cell, per_minute, unchanged_note, LimitArgs};
use super::metadata_args::field_change;
use super::quotas::{quota_cell, OrgQuotaArgs};
use super::render::{print, Output, Render};
use super::text_table::{table, Column};
use super::{connect, parse_id, CommandError};
use crate::operations::actor::Actor;
use crate::operations::external_id::ExternalId;
use crate::operations::limits::{self, OrgLimitOutcome};
use crate::operations::metadata::Metadata;
use crate::operations::name::Name;
use crate::operations::org_plans::{self, OrgPlanOutcome, OrgPlans, ScheduledPlan};
use crate::operations::org_update::{self, OrgUpdate, OrgUpdateOutcome};
use crate::operations::orgs::{self, CreatedOrg, OrgData, Organization};
use crate::operations::plans::PlanRef;
use crate::operations::quotas;

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Create an organization
    Create {
        /// Display name (1 to 200 characters)
        #[arg(long)]
        name: String,
        /// Use this id instead of a random one
        #[arg(long, value_name = "UUID")]
        id: Option<String>,
        /// The customer's id in your billing system (unique); the usage export's
        /// events carry it as their subject
        #[arg(long, value_name = "ID")]
        external_id: Option<String>,
        /// A JSON object kept with the organization and returned as given (at most
        /// 1 KiB)
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Change an organization's external id or metadata (what is not given stays)
    #[command(after_help = ORG_UPDATE_EXAMPLES)]
    Update {
        /// The organization's id
        #[arg(value_name = "ORG_ID")]
        org_id: String,
        /// The customer's id in your billing system (unique)
        #[arg(long, value_name = "ID")]
        external_id: Option<String>,
        /// Remove the external id
        #[arg(long)]
        clear_external_id: bool,
        /// A JSON object (at most 1 KiB) that replaces the metadata
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
        /// Remove the metadata
        #[arg(long)]
        clear_metadata: bool,
        #[command(flatten)]
        output: Output,
    },
    /// List organizations, oldest first, with their rate limits and quotas (used/monthly
    /// this period)
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Set or clear an organization's rate limit, shared by all its keys
    ///
    /// The budget is --rpm + --burst requests in each clock-aligned one-minute window,
    /// counted across all the organization's keys (keys with a limit of their own are
    /// counted apart). Gateways get the change within moments, without a restart.
    #[command(after_help = ORG_LIMIT_EXAMPLES)]
    SetLimit {
        /// The organization's id
        #[arg(value_name = "ORG_ID")]
        org_id: String,
        #[command(flatten)]
        limit: LimitArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Set or clear an organization's monthly quota, shared by all its keys
    ///
    /// The quota counts the requests the gateways forwarded for all the organization's
    /// keys in each period, from --reset-day of one month (UTC midnight) to the same day
    /// of the next. Requests already served this period count. Its keys' own quotas
    /// follow the organization's reset day.
    #[command(after_help = ORG_QUOTA_EXAMPLES)]
    SetQuota {
        /// The organization's id
        #[arg(value_name = "ORG_ID")]
        org_id: String,
        #[command(flatten)]
        quota: OrgQuotaArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Show the price plan an organization is on, and the changes scheduled
    Plan {
        /// The organization's id
        #[arg(value_name = "ORG_ID")]
        org_id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Put an organization on a price plan
    ///
    /// The change takes effect at the start of the next period (a calendar month, UTC),
    /// so a month is billed on the plan it began with; with --now, at once (from the
    /// start of the current hour, prorated). An organization's first plan takes effect
    /// at once. A change replaces the changes scheduled after it.
    #[command(after_help = ORG_PLAN_EXAMPLES)]
    SetPlan {
        /// The organization's id
        #[arg(value_name = "ORG_ID")]
        org_id: String,
        /// The plan's name or id
        #[arg(value_name = "PLAN")]
        plan: String,
        /// Take effect now rather than at the next period
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        output: Output,
    },
}

const ORG_UPDATE_EXAMPLES: &str = "\
Examples:
  keysync orgs update ORG_ID --external-id cus_NffrFeUfNV2Hib
  keysync orgs update ORG_ID --metadata '{\"plan\": \"gold\"}' --clear-external-id";

const ORG_PLAN_EXAMPLES: &str = "\
Examples:
  keysync orgs set-plan ORG_ID pro           from the first of next month
  keysync orgs set-plan ORG_ID pro --now     from this hour (this month prorated)";

const ORG_QUOTA_EXAMPLES: &str = "\
Examples:
  keysync orgs set-quota ORG_ID --monthly 1000000 --reset-day 15
  keysync orgs set-quota ORG_ID --clear                no quota";

const ORG_LIMIT_EXAMPLES: &str = "\
Examples:
  keysync orgs set-limit ORG_ID --rpm 100 --burst 20   120 requests a minute
  keysync orgs set-limit ORG_ID --clear                no limit";

pub async fn run(
    command: OrgsCommand,
    database_url: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    match command {
        OrgsCommand::Create {
            name,
            id,
            external_id,
            metadata,
            output,
        } => {
            let name = Name::of_org(&name)?;
            let id = id.map(|id| parse_id("org id", &id)).transpose()?;
            let data = OrgData {
                external_id: external_id.as_deref().map(ExternalId::parse).transpose()?,
                metadata: metadata.as_deref().map(Metadata::parse).transpose()?,
            };
            let pool = connect(database_url).await?;
            print(
                out,
                &orgs::create(&pool, Actor::Cli, id, &name, data).await?,
                output,
            )?;
        }
        OrgsCommand::Update {
            org_id,
            external_id,
            clear_external_id,
            metadata,
            clear_metadata,
            output,
        } => {
            let org_id = parse_id("org id", &org_id)?;
            let update = OrgUpdate {
                external_id: field_change(
                    external_id.as_deref().map(ExternalId::parse).transpose()?,
                    clear_external_id,
                    "--clear-external-id cannot be combined with --external-id",
                )?,
                metadata: field_change(
                    metadata.as_deref().map(Metadata::parse).transpose()?,
                    clear_metadata,
                    "--clear-metadata cannot be combined with --metadata",
                )?,
            };
            if update == OrgUpdate::default() {
                return Err(CommandError::Usage(
                    "give --external-id, --metadata, --clear-external-id or --clear-metadata",
                ));
            }
            let pool = connect(database_url).await?;
            print(
                out,
                &org_update::update(&pool, Actor::Cli, org_id, &update).await?,
                output,
            )?;
        }
        OrgsCommand::List { output } => {
            let pool = connect(database_url).await?;
            print(out, &orgs::list(&pool).await?, output)?;
        }
        OrgsCommand::SetLimit {
            org_id,
            limit,
            output,
        } => {
            let org_id = parse_id("org id", &org_id)?;
            let change = limit.change()?;
            let pool = connect(database_url).await?;
            print(
                out,
                &limits::set_org_limit(&pool, Actor::Cli, org_id, change).await?,
                output,
            )?;
        }
        OrgsCommand::SetQuota {
            org_id,
            quota,
            output,
        } => {
            let org_id = parse_id("org id", &org_id)?;
            let change = quota.change()?;
            let pool = connect(database_url).await?;
            let outcome =
                quotas::set_org_quota(&pool, Actor::Cli, org_id, change, Utc::now()).await?;
            print(out, &outcome, output)?;
        }
        OrgsCommand::Plan { org_id, output } => {
            let org_id = parse_id("org id", &org_id)?;
            let pool = connect(database_url).await?;
            print(
                out,
                &org_plans::get(&pool, org_id, Utc::now()).await?,
                output,
            )?;
        }
        OrgsCommand::SetPlan {
            org_id,
            plan,
            now,
            output,
        } => {
            let org_id = parse_id("org id", &org_id)?;
            let plan = PlanRef::parse(&plan);
            let pool = connect(database_url).await?;
            let outcome =
                org_plans::set_org_plan(&pool, Actor::Cli, org_id, &plan, now, Utc::now()).await?;
            print(out, &outcome, output)?;
        }
    }
    Ok(())
}

impl Render for CreatedOrg {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "created organization {} ({})", self.org_id, self.name)
    }
}

impl Render for Vec<Organization> {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns: [Column<Organization>; 6] = [
            Column::new("ID", |org| org.org_id.to_string()),
            Column::new("NAME", |org| org.name.clone()),
            Column::new("EXTERNAL_ID", |org| {
                org.external_id
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), ToString::to_string)
            }),
            Column::new("CREATED", |org| org.created_at.to_string()),
            // Used this period over the monthly quota.
            Column::new("QUOTA", |org| quota_cell(org.quota)),
            Column::new("LIMIT", |org| limit_cell(org.rate_limit)),
        ];
        out.write_all(table(&columns, self).as_bytes())
    }
}

/// `name (id)` of a plan in an organization's answer.
fn plan_cell(entry: &ScheduledPlan) -> String {
    format!("{} ({})", entry.plan_name, entry.plan_id)
}

/// The `current:` and `scheduled:` lines of an organization's plans.
fn plan_lines(
    out: &mut dyn Write,
    current: Option<&ScheduledPlan>,
    scheduled: &[ScheduledPlan],
) -> io::Result<()> {
    if let Some(current) = current {
        writeln!(
            out,
            "current: {} since {}",
            plan_cell(current),
            current.from
        )?;
    }
    for entry in scheduled {
        writeln!(out, "scheduled: {} from {}", plan_cell(entry), entry.from)?;
    }
    Ok(())
}

impl Render for OrgPlans {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.current.is_none() && self.scheduled.is_empty() {
            return writeln!(out, "organization {}: no price plan", self.org_id);
        }
        writeln!(out, "organization {}", self.org_id)?;
        plan_lines(out, self.current.as_ref(), &self.scheduled)
    }
}

impl Render for OrgPlanOutcome {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let plan = plan_cell;
        let asked = self
            .current
            .iter()
            .chain(&self.scheduled)
            .find(|entry| entry.from == self.effective_from);
        match asked {
            Some(entry) => writeln!(
                out,
                "organization {}: plan {} from {}{}",
                self.org_id,
                plan(entry),
                self.effective_from,
                unchanged_note(self.changed)
            )?,
            None => writeln!(
                out,
                "organization {}{}",
                self.org_id,
                unchanged_note(self.changed)
            )?,
        }
        plan_lines(out, self.current.as_ref(), &self.scheduled)
    }
}

impl Render for OrgUpdateOutcome {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "organization {}: external id {}, metadata {}{}",
            self.org_id,
            self.external_id
                .as_ref()
                .map_or_else(|| "none".to_owned(), ToString::to_string),
            self.metadata
                .as_ref()
                .map_or_else(|| "none".to_owned(), ToString::to_string),
            unchanged_note(self.changed)
        )
    }
}

impl Render for OrgLimitOutcome {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let unchanged = unchanged_note(self.changed);
        match self.rate_limit {
            Some(limit) => writeln!(
                out,
                "organization {}: rate limit {}, {} requests a minute shared by its \
                 keys{unchanged}",
                self.org_id,
                per_minute(limit),
                limit.budget()
            ),
            None => writeln!(
                out,
                "organization {}: no rate limit{unchanged}",
                self.org_id
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use keysync_contract::limit::Limit;
    use uuid::Uuid;

    use super::*;
    use crate::cli::render::printed;
    use crate::operations::timestamp::Timestamp;

    #[test]
    fn limits_are_listed_as_rate_plus_burst() {
        let org = Organization {
            org_id: Uuid::nil(),
            name: "Acme".to_owned(),
            created_at: Timestamp(DateTime::from_timestamp(0, 0).unwrap()),
            rate_limit: Some(Limit {
                requests_per_minute: 100,
                burst: 20,
            }),
            quota: None,
            external_id: None,
            metadata: None,
        };
        let orgs = vec![org];
        let text = printed(&orgs, false);
        let last = text.lines().nth(1).unwrap();
        assert!(last.ends_with("  -      100/min+20"), "{text}");
        let value: serde_json::Value = serde_json::from_str(&printed(&orgs, true)).unwrap();
        assert_eq!(
            value[0]["rate_limit"],
            serde_json::json!({"requests_per_minute": 100, "burst": 20})
        );
    }

    #[test]
    fn a_created_organization_is_one_sentence_or_its_id_and_name() {
        let created = CreatedOrg {
            org_id: Uuid::nil(),
            name: "Acme Corp".to_owned(),
            external_id: None,
            metadata: None,
        };
        assert_eq!(
            printed(&created, false),
            "created organization 00000000-0000-0000-0000-000000000000 (Acme Corp)\n"
        );
        assert_eq!(
            printed(&created, true),
            "{\n  \"org_id\": \"00000000-0000-0000-0000-000000000000\",\n  \"name\": \"Acme Corp\",\n  \"external_id\": null,\n  \"metadata\": null\n}\n"
        );
    }
}
