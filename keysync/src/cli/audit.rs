//! `keysync audit`: list the audit trail, newest first: every change operators made to
//! organizations, keys, limits and admin tokens, who made it, and the values before and
//! after.

use std::io::{self, Write};

use chrono::Utc;
use clap::Args;
use serde_json::Value;

use super::list_limit::{parse_limit, DEFAULT_LIMIT};
use super::render::{print, Output, Render};
use super::text_table::{table, Column};
use super::{connect, parse_id, CommandError};
use crate::operations::audit::{self, AuditFilter, AuditRecord};
use crate::operations::durations;

#[derive(Debug, Args)]
#[command(after_help = AUDIT_EXAMPLES)]
pub struct AuditArgs {
    /// Only this organization's records (its keys and limits)
    #[arg(long, value_name = "UUID")]
    pub org_id: Option<String>,
    /// Only records this recent, such as 7d, 24h or 30m
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// At most this many records, the newest (1 to 10000; default 100)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub limit: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

const AUDIT_EXAMPLES: &str = "\
Examples:
  keysync audit                                 the 100 newest records
  keysync audit --org-id ORG_ID --since 7d      one organization's last week
  keysync audit --since 24h --limit 10000 --json";

pub async fn run(
    args: AuditArgs,
    database_url: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let filter = AuditFilter {
        org_id: args
            .org_id
            .as_deref()
            .map(|id| parse_id("org id", id))
            .transpose()?,
        since: args
            .since
            .as_deref()
            .map(|text| durations::since(text, Utc::now()))
            .transpose()?,
        ..AuditFilter::default()
    };
    let limit = match args.limit.as_deref() {
        Some(text) => parse_limit(text)?,
        None => DEFAULT_LIMIT,
    };
    let pool = connect(database_url).await?;
    print(out, &audit::list(&pool, filter, limit).await?, args.output)?;
    Ok(())
}

/// A JSON value in one table cell: compact, `-` for none.
fn value_cell(value: &Option<Value>) -> String {
    value
        .as_ref()
        .map_or_else(|| "-".to_owned(), Value::to_string)
}

impl Render for Vec<AuditRecord> {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns: [Column<AuditRecord>; 7] = [
            Column::new("TIME", |record| record.at.to_string()),
            Column::new("ACTION", |record| record.action.clone()),
            // One word per cell, so the table still cuts with awk.
            Column::new("ACTOR", |record| match record.actor_token_id {
                Some(id) => format!("{}:{id}", record.actor),
                None => record.actor.clone(),
            }),
            Column::new("OBJECT", |record| {
                format!("{}:{}", record.object_type, record.object_id)
            }),
            Column::new("ORG", |record| {
                record
                    .org_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string())
            }),
            Column::new("OLD", |record| value_cell(&record.old_value)),
            Column::new("NEW", |record| value_cell(&record.new_value)),
        ];
        out.write_all(table(&columns, self).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;
    use crate::cli::render::printed;
    use crate::operations::timestamp::Timestamp;

    fn record(actor_token_id: Option<Uuid>) -> AuditRecord {
        AuditRecord {
            event_id: Uuid::from_u128(9),
            at: Timestamp(DateTime::from_timestamp(1_700_000_000, 0).unwrap()),
            action: "key.limit_set".to_owned(),
            actor: if actor_token_id.is_some() {
                "admin_token"
            } else {
                "cli"
            }
            .to_owned(),
            actor_token_id,
            object_type: "key".to_owned(),
            object_id: Uuid::from_u128(1),
            org_id: Some(Uuid::from_u128(2)),
            old_value: None,
            new_value: Some(serde_json::json!({"requests_per_minute": 10, "burst": 0})),
        }
    }

    #[test]
    fn records_are_one_row_each_with_compact_values() {
        let records = vec![record(None), record(Some(Uuid::from_u128(3)))];
        let text = printed(&records, false);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            ["TIME", "ACTION", "ACTOR", "OBJECT", "ORG", "OLD", "NEW"]
        );
        assert_eq!(
            lines[1],
            [
                "2023-11-14T22:13:20Z",
                "key.limit_set",
                "cli",
                "key:00000000-0000-0000-0000-000000000001",
                "00000000-0000-0000-0000-000000000002",
                "-",
                r#"{"burst":0,"requests_per_minute":10}"#,
            ]
        );
        assert_eq!(
            lines[2][2],
            "admin_token:00000000-0000-0000-0000-000000000003"
        );

        let json: Value = serde_json::from_str(&printed(&records, true)).unwrap();
        assert_eq!(json[0]["actor"], "cli");
        assert_eq!(json[0]["actor_token_id"], Value::Null);
        assert_eq!(json[0]["old_value"], Value::Null);
        assert_eq!(json[0]["new_value"]["requests_per_minute"], 10);
        assert_eq!(json[1]["actor_token_id"], Uuid::from_u128(3).to_string());
    }

    #[test]
    fn no_records_is_the_header_alone() {
        assert_eq!(
            printed(&Vec::<AuditRecord>::new(), false),
            "TIME  ACTION  ACTOR  OBJECT  ORG  OLD  NEW\n"
        );
    }
}
