//! `keysync webhooks`: register the endpoints keysync tells of key changes and quota
//! thresholds (signed, Standard Webhooks), list and delete them, send one a test event,
//! and list the deliveries with their last attempt.

use std::io::{self, Write};

use clap::Subcommand;

use super::list_limit::{parse_limit, DEFAULT_LIMIT};
use super::render::{field_lines, print, Output, Render};
use super::text_table::{table, Column};
use super::{connect, parse_id, CommandError};
use crate::operations::actor::Actor;
use crate::operations::webhooks::{
    self, CreatedWebhook, DeletedWebhook, DeliveryFilter, ListedDelivery, ListedWebhook,
    NewWebhook, QueuedTest,
};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register an endpoint and print its signing secret; it is shown only this once
    #[command(after_help = CREATE_EXAMPLES)]
    Create {
        /// Where deliveries are POSTed (https)
        #[arg(long)]
        url: String,
        /// An event it receives: key.created, key.revoked, key.rotated, key.expired,
        /// key.leaked or quota.threshold (repeat for more)
        #[arg(long = "event", value_name = "EVENT", required = true)]
        events: Vec<String>,
        /// Accept a plain http URL (tests, a receiver on loopback)
        #[arg(long)]
        allow_http: bool,
        /// Accept a host that resolves to a private, loopback or link-local address
        /// (checked again at every delivery)
        #[arg(long)]
        allow_private: bool,
        #[command(flatten)]
        output: Output,
    },
    /// List the endpoints (never their secrets), with their pending and failed
    /// deliveries
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Delete an endpoint; deliveries still queued for it are dropped
    Delete {
        #[arg(value_name = "WEBHOOK_ID")]
        webhook_id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Queue a webhook.test event for one endpoint (`serve` sends it)
    Test {
        #[arg(value_name = "WEBHOOK_ID")]
        webhook_id: String,
        #[command(flatten)]
        output: Output,
    },
    /// List deliveries, newest first, with their attempts and last answer
    Deliveries {
        /// Only this endpoint's
        #[arg(long = "webhook", value_name = "WEBHOOK_ID")]
        webhook_id: Option<String>,
        /// Only those whose last attempt failed (retrying, or given up)
        #[arg(long)]
        failed: bool,
        /// At most this many, the newest (1 to 10000; default 100)
        #[arg(long, value_name = "N", allow_hyphen_values = true)]
        limit: Option<String>,
        #[command(flatten)]
        output: Output,
    },
}

const CREATE_EXAMPLES: &str = "\
Examples:
  keysync webhooks create --url https://hooks.example.com/keysync \\
      --event key.revoked --event key.leaked
  keysync webhooks create --url http://127.0.0.1:8000/hook --event key.created \\
      --allow-http --allow-private --json";

/// The last line of the text output that shows a new secret.
const SHOWN_ONCE: &str =
    "This secret is shown only once: store it now to verify deliveries (webhook-signature).";

pub async fn run(
    command: WebhooksCommand,
    database_url: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    match command {
        WebhooksCommand::Create {
            url,
            events,
            allow_http,
            allow_private,
            output,
        } => {
            let webhook = NewWebhook::new(&url, &events, allow_http, allow_private)?;
            let pool = connect(database_url).await?;
            print(
                out,
                &webhooks::create(&pool, Actor::Cli, webhook).await?,
                output,
            )?;
        }
        WebhooksCommand::List { output } => {
            let pool = connect(database_url).await?;
            print(out, &webhooks::list(&pool).await?, output)?;
        }
        WebhooksCommand::Delete { webhook_id, output } => {
            let webhook_id = parse_id("webhook id", &webhook_id)?;
            let pool = connect(database_url).await?;
            print(
                out,
                &webhooks::delete(&pool, Actor::Cli, webhook_id).await?,
                output,
            )?;
        }
        WebhooksCommand::Test { webhook_id, output } => {
            let webhook_id = parse_id("webhook id", &webhook_id)?;
            let pool = connect(database_url).await?;
            print(out, &webhooks::test(&pool, webhook_id).await?, output)?;
        }
        WebhooksCommand::Deliveries {
            webhook_id,
            failed,
            limit,
            output,
        } => {
            let filter = DeliveryFilter {
                webhook_id: webhook_id
                    .as_deref()
                    .map(|id| parse_id("webhook id", id))
                    .transpose()?,
                failed,
            };
            let limit = match limit.as_deref() {
                Some(text) => parse_limit(text)?,
                None => DEFAULT_LIMIT,
            };
            let pool = connect(database_url).await?;
            print(
                out,
                &webhooks::list_deliveries(&pool, filter, limit).await?,
                output,
            )?;
        }
    }
    Ok(())
}

impl Render for CreatedWebhook {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        field_lines(out, self)?;
        writeln!(out, "{SHOWN_ONCE}")
    }
}

impl Render for Vec<ListedWebhook> {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns: [Column<ListedWebhook>; 6] = [
            Column::new("ID", |listed| listed.webhook.webhook_id.to_string()),
            Column::new("URL", |listed| listed.webhook.url.clone()),
            Column::new("EVENTS", |listed| listed.webhook.events.join(",")),
            Column::new("CREATED", |listed| listed.webhook.created_at.to_string()),
            Column::new("PENDING", |webhook| webhook.pending.to_string()),
            Column::new("FAILED", |webhook| webhook.failed.to_string()),
        ];
        out.write_all(table(&columns, self).as_bytes())
    }
}

impl Render for DeletedWebhook {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "deleted webhook {} ({} queued deliveries dropped)",
            self.webhook_id, self.dropped_deliveries
        )
    }
}

impl Render for QueuedTest {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "queued webhook.test {} for webhook {}",
            self.message_id, self.webhook_id
        )
    }
}

impl Render for Vec<ListedDelivery> {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns: [Column<ListedDelivery>; 8] = [
            Column::new("CREATED", |delivery| delivery.created_at.to_string()),
            Column::new("WEBHOOK", |delivery| delivery.webhook_id.to_string()),
            Column::new("MESSAGE", |delivery| delivery.message_id.clone()),
            Column::new("EVENT", |delivery| delivery.event_type.clone()),
            Column::new("STATE", |delivery| delivery.state.as_str().to_owned()),
            Column::new("ATTEMPTS", |delivery| delivery.attempts.to_string()),
            Column::new("STATUS", |delivery| {
                delivery
                    .last_status
                    .map_or_else(|| "-".to_owned(), |status| status.to_string())
            }),
            // Last, as it has spaces.
            Column::new("ERROR", |delivery| {
                delivery
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "-".to_owned())
            }),
        ];
        out.write_all(table(&columns, self).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use clap::Parser;
    use uuid::Uuid;

    use super::*;
    use crate::cli::render::printed;
    use crate::cli::{Cli, Command};
    use crate::operations::timestamp::Timestamp;
    use crate::operations::webhooks::DeliveryState;

    #[test]
    fn create_takes_repeated_events_and_the_two_allowances() {
        let cli = Cli::try_parse_from([
            "keysync",
            "webhooks",
            "create",
            "--url",
            "http://127.0.0.1:9/h",
            "--event",
            "key.created",
            "--event",
            "key.revoked",
            "--allow-http",
            "--allow-private",
            "--json",
        ])
        .unwrap();
        match cli.command {
            Command::Webhooks(WebhooksCommand::Create {
                url,
                events,
                allow_http,
                allow_private,
                output,
            }) => {
                assert_eq!(url, "http://127.0.0.1:9/h");
                assert_eq!(events, ["key.created", "key.revoked"]);
                assert!(allow_http && allow_private && output.json);
            }
            other => panic!("unexpected {other:?}"),
        }
        // An event is required.
        assert!(
            Cli::try_parse_from(["keysync", "webhooks", "create", "--url", "https://x"]).is_err()
        );
    }

    #[test]
    fn deliveries_show_state_attempts_and_the_last_answer() {
        let at = Timestamp(DateTime::from_timestamp(0, 0).unwrap());
        let delivery = ListedDelivery {
            delivery_id: Uuid::nil(),
            webhook_id: Uuid::nil(),
            message_id: "msg_1".to_owned(),
            event_type: "key.revoked".to_owned(),
            state: DeliveryState::Pending,
            attempts: 2,
            created_at: at,
            last_attempt_at: Some(at),
            next_attempt_at: Some(at),
            last_status: None,
            last_error: Some("no answer within 10s".to_owned()),
            delivered_at: None,
        };
        let text = printed(&vec![delivery], false);
        let rows: Vec<&str> = text.lines().collect();
        assert!(rows[0].starts_with("CREATED"), "{text}");
        assert!(
            rows[1].contains("key.revoked") && rows[1].contains("pending"),
            "{text}"
        );
        assert!(rows[1].ends_with("no answer within 10s"), "{text}");
    }
}
