//! `keysync alerts`: the anomaly alerts `keysync serve` raised, newest first: spikes,
//! drops, jumps in refusals or upstream 5xx, by organization and hour, with what was
//! observed and what it was judged against.

use std::io::{self, Write};

use chrono::Utc;
use clap::Args;

use super::list_limit::{parse_limit, DEFAULT_LIMIT};
use super::render::{print, Output, Render};
use super::text_table::{table, Column};
use super::{connect, parse_id, CommandError};
use crate::anomaly::kind::AnomalyKind;
use crate::operations::alerts::{self, AlertParameters, AlertRecord};
use crate::operations::durations::SINCE_FLAG;

#[derive(Debug, Args)]
#[command(after_help = ALERTS_EXAMPLES)]
pub struct AlertsArgs {
    /// Only this organization's alerts
    #[arg(long, value_name = "UUID")]
    pub org_id: Option<String>,
    /// Only alerts raised this recently, such as 7d (the default), 24h or 30m
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Only these kinds: spike, drop, refusals, upstream_5xx (several separated by
    /// commas)
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// At most this many alerts, the newest (1 to 10000; default 100)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub limit: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

const ALERTS_EXAMPLES: &str = "\
Examples:
  keysync alerts                                   the last 7 days, every organization
  keysync alerts --org-id ORG_ID --since 30d
  keysync alerts --kind refusals,upstream_5xx --json
Shares (refusals, upstream_5xx) read as percentages in the table, fractions in JSON.";

pub async fn run(
    args: AlertsArgs,
    database_url: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let filter = AlertParameters {
        org_id: args
            .org_id
            .as_deref()
            .map(|id| parse_id("org id", id))
            .transpose()?,
        since: args.since.as_deref(),
        kind: args.kind.as_deref(),
    }
    .check(SINCE_FLAG, "--kind", Utc::now())?;
    let limit = match args.limit.as_deref() {
        Some(text) => parse_limit(text)?,
        None => DEFAULT_LIMIT,
    };
    let pool = connect(database_url).await?;
    print(
        out,
        &alerts::list(&pool, &filter, limit).await?,
        args.output,
    )?;
    Ok(())
}

impl Render for Vec<AlertRecord> {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns: [Column<AlertRecord>; 10] = [
            Column::new("RAISED_AT", |alert| alert.raised_at.to_string()),
            Column::new("ORG", |alert| alert.org_id.to_string()),
            Column::new("KIND", |alert| alert.kind.clone()),
            Column::new("HOUR", |alert| alert.hour.to_string()),
            Column::new("COMPLETE", |alert| alert.hour_complete.to_string()),
            Column::new("OBSERVED", |alert| value(alert, alert.observed)),
            Column::new("BASELINE", |alert| value(alert, alert.baseline)),
            Column::new("THRESHOLD", |alert| value(alert, alert.threshold)),
            Column::new("REQUESTS", |alert| alert.requests.to_string()),
            Column::new("MATCHING", |alert| alert.matching_requests.to_string()),
        ];
        out.write_all(table(&columns, self).as_bytes())
    }
}

/// One of an alert's numbers: a percentage for the kinds that judge shares, else
/// requests to a tenth at most.
fn value(alert: &AlertRecord, number: f64) -> String {
    let share = matches!(
        alert.kind.parse(),
        Ok(AnomalyKind::Refusals | AnomalyKind::Upstream5xx)
    );
    if share {
        return format!("{:.1}%", number * 100.0);
    }
    let text = format!("{number:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;
    use crate::cli::render::printed;
    use crate::operations::timestamp::Timestamp;

    fn at(text: &str) -> Timestamp {
        Timestamp(DateTime::parse_from_rfc3339(text).unwrap().to_utc())
    }

    fn alert(kind: &str, observed: f64, baseline: f64, threshold: f64) -> AlertRecord {
        AlertRecord {
            event_id: Uuid::from_u128(9),
            org_id: Uuid::from_u128(1),
            kind: kind.to_owned(),
            hour: at("2026-12-07T08:00:00Z"),
            hour_complete: true,
            observed,
            baseline,
            threshold,
            requests: 6_000,
            matching_requests: 750,
            baseline_weeks: 4,
            raised_at: at("2026-12-07T09:01:00Z"),
        }
    }

    #[test]
    fn alerts_are_one_row_each_with_readable_numbers() {
        let alerts = vec![
            alert("spike", 6_000.0, 1_050.5, 5_252.5),
            alert("refusals", 0.125, 0.01, 0.05),
        ];
        let text = printed(&alerts, false);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|line| line.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0],
            [
                "RAISED_AT",
                "ORG",
                "KIND",
                "HOUR",
                "COMPLETE",
                "OBSERVED",
                "BASELINE",
                "THRESHOLD",
                "REQUESTS",
                "MATCHING"
            ]
        );
        assert_eq!(
            lines[1],
            [
                "2026-12-07T09:01:00Z",
                "00000000-0000-0000-0000-000000000001",
                "spike",
                "2026-12-07T08:00:00Z",
                "true",
                "6000",
                "1050.5",
                "5252.5",
                "6000",
                "750"
            ]
        );
        assert_eq!(lines[2][5..8], ["12.5%", "1.0%", "5.0%"]);

        let json: Value = serde_json::from_str(&printed(&alerts, true)).unwrap();
        assert_eq!(json[0]["kind"], "spike");
        assert_eq!(json[0]["observed"], 6000.0);
        assert_eq!(json[1]["observed"], 0.125);
        assert_eq!(json[1]["hour"], "2026-12-07T08:00:00Z");
        assert_eq!(json[1]["event_id"], Uuid::from_u128(9).to_string());
    }

    #[test]
    fn no_alerts_is_the_header_alone() {
        assert_eq!(
            printed(&Vec::<AlertRecord>::new(), false),
            "RAISED_AT  ORG  KIND  HOUR  COMPLETE  OBSERVED  BASELINE  THRESHOLD  REQUESTS  \
             MATCHING\n"
        );
    }
}
