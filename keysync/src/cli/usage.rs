//! `keysync usage`: what the gateways metered for one organization (or one of its
//! keys) in a time range, grouped by hour, day, month, key, endpoint (the route's name)
//! or outcome, with the total; with `--cost`, what a month of it costs on the
//! organization's price plans (the invoice, rendered in [`super::invoice`]).

use std::io::{self, Write};

use chrono::Utc;
use clap::Args;

use super::render::{print, Output, Render};
use super::text_table::{table, Column};
use super::{connect, parse_id, CommandError};
use crate::billing::period::BillingPeriod;
use crate::operations::invoices;
use crate::operations::usage::{self, UsageParameters, UsageReport, UsageRow, CLI_NAMES};

#[derive(Debug, Args)]
#[command(after_help = USAGE_EXAMPLES)]
pub struct UsageArgs {
    /// The organization
    #[arg(long, value_name = "UUID")]
    pub org_id: String,
    /// Only this key of the organization
    #[arg(long, value_name = "UUID")]
    pub key_id: Option<String>,
    /// How far back, such as 30d (the default), 24h or 90m
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Start of the range: a date (2026-03-01, midnight UTC) or an RFC 3339 time
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    pub from: Option<String>,
    /// End of the range, exclusive (default now); needs --from
    #[arg(long, value_name = "DATE", allow_hyphen_values = true)]
    pub to: Option<String>,
    /// Rows by hour, day (the default), month (UTC), key, endpoint (the route's name) or
    /// status
    #[arg(long, value_name = "GROUP")]
    pub by: Option<String>,
    /// What a month costs on the organization's price plans: a line per tier and per
    /// endpoint weight, and the total (not with the flags above)
    #[arg(long)]
    pub cost: bool,
    /// The month --cost prices, such as 2026-12 (default: this month, so far)
    #[arg(long, value_name = "MONTH", allow_hyphen_values = true)]
    pub period: Option<String>,
    #[command(flatten)]
    pub output: Output,
}

const USAGE_EXAMPLES: &str = "\
Examples:
  keysync usage --org-id ORG_ID                          the last 30 days, by day
  keysync usage --org-id ORG_ID --since 24h --by hour
  keysync usage --org-id ORG_ID --from 2026-03-01 --to 2026-04-01 --by key --json
  keysync usage --org-id ORG_ID --since 7d --by endpoint     by route name (- : none)
  keysync usage --org-id ORG_ID --cost                   this month's cost so far
  keysync usage --org-id ORG_ID --cost --period 2026-12 --json
Ranges are [from, to) in whole UTC hours; a date is its midnight, UTC.";

pub async fn run(
    args: UsageArgs,
    database_url: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let org_id = parse_id("org id", &args.org_id)?;
    if args.cost {
        return cost(args, org_id, database_url, out).await;
    }
    if args.period.is_some() {
        return Err(CommandError::Usage("--period needs --cost"));
    }
    let key_id = args
        .key_id
        .as_deref()
        .map(|id| parse_id("key id", id))
        .transpose()?;
    let query = UsageParameters {
        since: args.since.as_deref(),
        from: args.from.as_deref(),
        to: args.to.as_deref(),
        by: args.by.as_deref(),
    }
    .check(org_id, key_id, CLI_NAMES, Utc::now())?;
    let pool = connect(database_url).await?;
    print(out, &usage::report(&pool, &query).await?, args.output)?;
    Ok(())
}

/// `--cost`: the invoice of the month asked for (this one by default), as of now.
async fn cost(
    args: UsageArgs,
    org_id: uuid::Uuid,
    database_url: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let others = [&args.key_id, &args.since, &args.from, &args.to, &args.by];
    if others.iter().any(|flag| flag.is_some()) {
        return Err(CommandError::Usage(
            "--cost prices a whole month: it cannot be combined with --key-id, --since, \
             --from, --to or --by (use --period)",
        ));
    }
    let period = args
        .period
        .as_deref()
        .map(|text| BillingPeriod::parse("--period", text))
        .transpose()?;
    let pool = connect(database_url).await?;
    let invoice = invoices::preview(&pool, org_id, period, Utc::now()).await?;
    print(out, &invoice, args.output)?;
    Ok(())
}

impl Render for UsageReport {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let group = match self.by {
            usage::GroupBy::Key => Column::new("KEY", |row: &UsageRow| {
                row.key_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string())
            }),
            usage::GroupBy::Endpoint => Column::new("ENDPOINT", |row: &UsageRow| {
                row.endpoint.clone().unwrap_or_else(|| "-".to_owned())
            }),
            usage::GroupBy::Status => Column::new("OUTCOME", |row: &UsageRow| {
                row.outcome.clone().unwrap_or_else(|| "-".to_owned())
            }),
            _ => Column::new("PERIOD", |row: &UsageRow| {
                row.period
                    .map_or_else(|| "-".to_owned(), |period| period.to_string())
            }),
        };
        let columns: [Column<UsageRow>; 10] = [
            group,
            Column::new("REQUESTS", |row| row.requests.to_string()),
            Column::new("MEAN_MS", mean_ms),
            Column::new("LE_10MS", |row| row.le_10ms.to_string()),
            Column::new("LE_100MS", |row| row.le_100ms.to_string()),
            Column::new("LE_1S", |row| row.le_1s.to_string()),
            Column::new("OVER_1S", |row| row.over_1s.to_string()),
            Column::new("REQUEST_BYTES", |row| row.request_bytes.to_string()),
            Column::new("RESPONSE_BYTES", |row| row.response_bytes.to_string()),
            Column::new("DURATION_US", |row| row.duration_us.to_string()),
        ];
        out.write_all(table(&columns, &self.rows).as_bytes())?;
        writeln!(
            out,
            "total_requests: {} (from {} to {})",
            self.total_requests, self.from, self.to
        )
    }
}

/// The mean duration in milliseconds, one decimal, over the timed requests (those in
/// the buckets: the gateway times a sample of a busy key's requests, and none it
/// answered itself); `-` without any.
fn mean_ms(row: &UsageRow) -> String {
    let timed = [row.le_10ms, row.le_100ms, row.le_1s, row.over_1s]
        .iter()
        .fold(0i64, |sum, n| sum.saturating_add(*n));
    if timed <= 0 {
        return "-".to_owned();
    }
    format!("{:.1}", row.duration_us as f64 / timed as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;
    use crate::cli::render::printed;
    use crate::operations::timestamp::Timestamp;
    use crate::operations::usage::GroupBy;

    fn at(text: &str) -> Timestamp {
        Timestamp(DateTime::parse_from_rfc3339(text).unwrap().to_utc())
    }

    fn row(requests: i64) -> UsageRow {
        UsageRow {
            period: None,
            key_id: None,
            endpoint: None,
            outcome: None,
            requests,
            duration_us: requests * 2500,
            le_10ms: requests,
            le_100ms: 0,
            le_1s: 0,
            over_1s: 0,
            request_bytes: 10,
            response_bytes: 20,
        }
    }

    fn report(by: GroupBy, rows: Vec<UsageRow>) -> UsageReport {
        UsageReport {
            org_id: Uuid::from_u128(1),
            key_id: None,
            from: at("2026-03-01T00:00:00Z"),
            to: at("2026-03-02T00:00:00Z"),
            by,
            total_requests: rows.iter().map(|row| row.requests).sum(),
            rows,
        }
    }

    #[test]
    fn text_is_a_table_and_the_total() {
        let mut first = row(4);
        first.period = Some(at("2026-03-01T10:00:00Z"));
        let text = printed(&report(GroupBy::Hour, vec![first]), false);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0][..3], ["PERIOD", "REQUESTS", "MEAN_MS"]);
        assert_eq!(lines[1][..4], ["2026-03-01T10:00:00Z", "4", "2.5", "4"]);
        assert_eq!(
            text.lines().last().unwrap(),
            "total_requests: 4 (from 2026-03-01T00:00:00Z to 2026-03-02T00:00:00Z)"
        );
        let mut status = row(3);
        status.outcome = Some("rate_limited".to_owned());
        let text = printed(&report(GroupBy::Status, vec![status, row(0)]), false);
        assert!(text.starts_with("OUTCOME "), "{text}");
        assert!(text.contains("\nrate_limited  3"), "{text}");
        assert!(text.contains("\n-             0         -"), "{text}");
        let (mut orders, mut unnamed) = (row(7), row(2));
        orders.endpoint = Some("orders".to_owned());
        unnamed.endpoint = Some("-".to_owned());
        let text = printed(&report(GroupBy::Endpoint, vec![orders, unnamed]), false);
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0][..2], ["ENDPOINT", "REQUESTS"]);
        assert_eq!(lines[1][..2], ["orders", "7"]);
        assert_eq!(lines[2][..2], ["-", "2"]);
    }

    #[test]
    fn the_mean_is_over_the_timed_requests() {
        let mut sampled = row(10);
        (sampled.duration_us, sampled.le_10ms, sampled.le_100ms) = (60_000, 1, 1);
        assert_eq!(mean_ms(&sampled), "30.0", "2 of 10 timed, 60 ms in all");
        let mut refused = row(4);
        (refused.duration_us, refused.le_10ms) = (0, 0);
        assert_eq!(mean_ms(&refused), "-", "none timed");
    }

    #[test]
    fn json_has_the_total_and_only_the_grouped_field() {
        let mut keyed = row(5);
        keyed.key_id = Some(Uuid::from_u128(7));
        let json: Value =
            serde_json::from_str(&printed(&report(GroupBy::Key, vec![keyed]), true)).unwrap();
        assert_eq!(json["total_requests"], 5);
        assert_eq!(json["by"], "key");
        assert_eq!(json["key_id"], Value::Null);
        assert_eq!(json["rows"][0]["key_id"], Uuid::from_u128(7).to_string());
        assert!(json["rows"][0].get("period").is_none());
        assert!(json["rows"][0].get("outcome").is_none());
        assert!(json["rows"][0].get("endpoint").is_none());
        assert_eq!(json["rows"][0]["requests"], 5);
        assert_eq!(json["from"], "2026-03-01T00:00:00Z");
    }
}
