//! `keysync migrate`: apply the database migrations (already applied ones are skipped).

use std::io::Write;

use super::{connect, CommandError};
use crate::database;

pub async fn run(database_url: Option<String>, out: &mut dyn Write) -> Result<(), CommandError> {
    let pool = connect(database_url).await?;
    database::migrate(&pool).await?;
    writeln!(out, "migrations applied")?;
    Ok(())
}
