//! `keysync keys revoke KEY_ID --wait [--timeout 10s] [--json]`: the revocation's receipt
//! (how many live gateways serve it), and `keysync gateways [--json]`: the fleet.
//!
//! A wait that ends with gateways missing prints the receipt like a complete one, then
//! fails with exit status [`UNCONFIRMED_EXIT`]: the key is revoked, but not every live
//! gateway was seen to serve it.

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

use super::render::{print, Output, Render};
use super::text_table::{table, Column};
use super::{connect, parse_id, CommandError};
use crate::config::{read_fleet, ProcessEnvironment};
use crate::fleet::receipt::{MissingGateway, Receipt};
use crate::fleet::revocation::{self, Wait};
use crate::fleet::roster::{self, Gateway, Roster};
use crate::operations::actor::Actor;
use crate::operations::durations::InvalidDuration;
use crate::operations::keys::RevokedKey;

/// Exit status of `keys revoke --wait` when some live gateway did not confirm in time.
pub const UNCONFIRMED_EXIT: u8 = 3;

/// The JSON of `keys revoke --wait --json`: the key and its receipt, side by side.
#[derive(Debug, Serialize)]
struct RevokedWithReceipt<'a> {
    #[serde(flatten)]
    revoked: &'a RevokedKey,
    #[serde(flatten)]
    receipt: &'a Receipt,
}

impl Render for RevokedWithReceipt<'_> {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        self.revoked.text(out)?;
        receipt_text(self.receipt, out)
    }
}

/// `revoked on 3 of 3 gateways in 4 ms`, and the gateways missing, one a line.
fn receipt_text(receipt: &Receipt, out: &mut dyn Write) -> io::Result<()> {
    write!(
        out,
        "revoked on {} of {} gateways in {} ms",
        receipt.confirmed, receipt.gateways, receipt.elapsed_ms
    )?;
    if receipt.missing.is_empty() {
        return writeln!(out);
    }
    writeln!(out, "; not confirmed by:")?;
    let columns: [Column<MissingGateway>; 4] = [
        Column::new("INSTANCE", |gateway| gateway.instance_id.to_string()),
        Column::new("HOST", |gateway| gateway.host.clone()),
        Column::new("MODE", |gateway| gateway.mode.clone()),
        Column::new("REVISION", |gateway| gateway.revision.to_string()),
    ];
    out.write_all(table(&columns, &receipt.missing).as_bytes())?;
    writeln!(out, "(the key needs revision {})", receipt.revision)
}

/// `keys revoke`, with or without `--wait`.
pub async fn revoke(
    key_id: &str,
    wait: bool,
    timeout: Option<&str>,
    output: Output,
    database_url: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let key_id = parse_id("key id", key_id)?;
    let wait = if wait {
        let timeout = parse_timeout(timeout.unwrap_or("10s"))?;
        let fleet = read_fleet(&ProcessEnvironment)?;
        Some(Wait {
            timeout,
            live_window: fleet.live_window,
        })
    } else {
        None
    };
    let pool = connect(database_url).await?;
    let revoked = revocation::revoke(&pool, Actor::Cli, key_id, wait).await?;
    let Some(receipt) = &revoked.receipt else {
        return Ok(print(out, &revoked.revoked, output)?);
    };
    let shown = RevokedWithReceipt {
        revoked: &revoked.revoked,
        receipt,
    };
    print(out, &shown, output)?;
    if receipt.complete() {
        Ok(())
    } else {
        Err(CommandError::Unconfirmed {
            key_id,
            missing: receipt.missing.len(),
            gateways: receipt.gateways,
        })
    }
}

/// `--timeout`: a duration such as 10s or 2m.
fn parse_timeout(text: &str) -> Result<Duration, CommandError> {
    humantime::parse_duration(text.trim()).map_err(|error| {
        CommandError::InvalidDuration(InvalidDuration {
            flag: "--timeout",
            value: text.to_owned(),
            reason: error.to_string(),
        })
    })
}

/// `keysync gateways`.
pub async fn gateways(
    output: Output,
    database_url: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let fleet = read_fleet(&ProcessEnvironment)?;
    let pool = connect(database_url).await?;
    let roster = roster::read(&pool, fleet.live_window).await?;
    print(out, &roster, output)?;
    Ok(())
}

impl Render for Roster {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns: [Column<Gateway>; 7] = [
            Column::new("INSTANCE", |gateway| gateway.instance_id.to_string()),
            Column::new("HOST", |gateway| gateway.host.clone()),
            Column::new("MODE", |gateway| gateway.mode.clone()),
            Column::new("VERSION", |gateway| gateway.version.clone()),
            Column::new("REVISION", |gateway| gateway.revision.to_string()),
            Column::new("LAG", |gateway| gateway.lag.to_string()),
            Column::new("LAST SEEN", |gateway| {
                if gateway.stale {
                    format!("{} (stale)", gateway.last_seen)
                } else {
                    gateway.last_seen.to_string()
                }
            }),
        ];
        out.write_all(table(&columns, &self.gateways).as_bytes())?;
        let live = self.live().count();
        writeln!(
            out,
            "{live} live, {} stale; database revision {}",
            self.gateways.len() - live,
            self.revision
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;
    use crate::operations::keys::Revocation;
    use crate::operations::timestamp::Timestamp;

    fn receipt(missing: Vec<MissingGateway>) -> Receipt {
        Receipt {
            confirmed: 3 - u32::try_from(missing.len()).unwrap(),
            gateways: 3,
            elapsed_ms: 4,
            revision: 42,
            missing,
        }
    }

    fn shown(receipt: &Receipt, json: bool) -> String {
        let revoked = RevokedKey {
            key_id: Uuid::nil(),
            revocation: Revocation::Revoked,
        };
        let mut out = Vec::new();
        let both = RevokedWithReceipt {
            revoked: &revoked,
            receipt,
        };
        print(&mut out, &both, Output { json }).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_complete_receipt_reads_as_one_line_after_the_revocation() {
        assert_eq!(
            shown(&receipt(vec![]), false),
            "revoked key 00000000-0000-0000-0000-000000000000\n\
             revoked on 3 of 3 gateways in 4 ms\n"
        );
    }

    #[test]
    fn the_gateways_missing_are_listed_and_the_json_is_flat() {
        let missing = MissingGateway {
            instance_id: Uuid::from_u128(1),
            host: "edge-2".into(),
            mode: "native".into(),
            revision: 40,
        };
        let receipt = receipt(vec![missing]);
        let text = shown(&receipt, false);
        assert!(
            text.contains("revoked on 2 of 3 gateways in 4 ms; not confirmed by:\n"),
            "{text}"
        );
        assert!(text.contains("edge-2"), "{text}");
        assert!(text.ends_with("(the key needs revision 42)\n"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&shown(&receipt, true)).unwrap();
        assert_eq!(json["key_id"], Uuid::nil().to_string());
        assert_eq!(json["revocation"], "revoked");
        assert_eq!(
            (json["confirmed"].as_u64(), json["gateways"].as_u64()),
            (Some(2), Some(3))
        );
        assert_eq!(json["missing"][0]["host"], "edge-2");
        assert_eq!(json["missing"][0]["revision"], 40);
    }

    #[test]
    fn an_unconfirmed_receipt_exits_3_and_keeps_what_it_printed() {
        let error = CommandError::Unconfirmed {
            key_id: Uuid::nil(),
            missing: 1,
            gateways: 3,
        };
        assert_eq!(error.exit_code(), UNCONFIRMED_EXIT);
        assert!(error.keeps_output());
        assert!(error
            .to_string()
            .contains("1 of 3 live gateways did not confirm"));
        assert_eq!(CommandError::NoDatabaseUrl.exit_code(), 1);
        assert!(!CommandError::NoDatabaseUrl.keeps_output());
    }

    #[test]
    fn the_fleet_reads_as_a_table_with_the_stale_ones_marked() {
        let at = Timestamp(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        let gateway = |stale| Gateway {
            instance_id: Uuid::from_u128(u128::from(stale)),
            host: "edge".into(),
            mode: "wasm".into(),
            version: "0.1.0".into(),
            revision: 9,
            lag: 1,
            last_seen: at,
            stale,
        };
        let roster = Roster {
            revision: 10,
            gateways: vec![gateway(false), gateway(true)],
        };
        let mut out = Vec::new();
        roster.text(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("INSTANCE"), "{text}");
        assert!(text.contains("2023-11-14T22:13:20Z (stale)"), "{text}");
        assert!(
            text.ends_with("1 live, 1 stale; database revision 10\n"),
            "{text}"
        );
    }

    #[test]
    fn the_timeout_needs_the_wait_and_reads_as_a_duration() {
        use clap::Parser;
        assert!(crate::cli::Cli::try_parse_from([
            "keysync",
            "keys",
            "revoke",
            "k",
            "--timeout",
            "1s"
        ])
        .is_err());
        assert!(crate::cli::Cli::try_parse_from([
            "keysync",
            "keys",
            "revoke",
            "k",
            "--wait",
            "--timeout",
            "1s",
            "--json"
        ])
        .is_ok());
        assert_eq!(
            parse_timeout("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert!(parse_timeout("soon")
            .unwrap_err()
            .to_string()
            .contains("--timeout"));
    }
}
