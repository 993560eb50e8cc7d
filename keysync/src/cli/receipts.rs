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
