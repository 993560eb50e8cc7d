//! The metadata flags of `keys set-metadata` and `orgs update`: `--metadata JSON` or
//! `--clear-metadata`, checked before anything is written.

use clap::Args;

use super::CommandError;
use crate::operations::field_change::FieldChange;
use crate::operations::metadata::Metadata;

/// `--metadata JSON` or `--clear`, for `keys set-metadata`.
#[derive(Debug, Clone, Args)]
pub struct MetadataArgs {
    /// A JSON object (at most 1 KiB), kept and returned as given; it replaces the
    /// metadata there was
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,
    /// Remove the metadata instead
    #[arg(long)]
    pub clear: bool,
}

impl MetadataArgs {
    /// The metadata to set; `None` clears it.
    pub fn metadata(&self) -> Result<Option<Metadata>, CommandError> {
        match (&self.metadata, self.clear) {
            (Some(_), true) => Err(CommandError::Usage(
                "--clear cannot be combined with --metadata",
            )),
            (None, false) => Err(CommandError::Usage("give --metadata JSON, or --clear")),
            (Some(text), false) => Ok(Some(Metadata::parse(text)?)),
            (None, true) => Ok(None),
        }
    }
}

/// A value flag and its clearing flag (`--external-id X` / `--clear-external-id`) as a
/// change: neither leaves it as it is.
pub fn field_change<T>(
    value: Option<T>,
    clear: bool,
    conflict: &'static str,
) -> Result<FieldChange<T>, CommandError> {
    match (value, clear) {
        (Some(_), true) => Err(CommandError::Usage(conflict)),
        (Some(value), false) => Ok(FieldChange::Set(value)),
        (None, true) => Ok(FieldChange::Clear),
        (None, false) => Ok(FieldChange::Unchanged),
    }
}
