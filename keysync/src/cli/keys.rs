//! `keysync keys`: create, list, get, rotate, revoke and import API keys, and set their
//! own rate limits, monthly quotas, scopes, allowlists and metadata.

use std::io::{self, Write};

use chrono::Utc;
use clap::builder::PossibleValue;
use clap::{Subcommand, ValueEnum};

use super::key_check;
use super::key_policy::{
    allowlist_cell, checked_allowlist, checked_scopes, scopes_cell, AllowlistArgs, ScopeArgs,
};
use super::limits::{limit_cell, per_minute, scope_cell, unchanged_note, LimitArgs};
use super::metadata_args::MetadataArgs;
use super::quotas::{quota_cell, KeyQuotaArgs};
use super::receipts;
use super::render::{field_lines, print, Output, Render};
use super::text_table::{table, Column};
use super::{connect, parse_id, CommandError};
use crate::operations::actor::Actor;
use crate::operations::durations;
use crate::operations::key_import::{self, ImportedKeys};
use crate::operations::key_metadata::{self, KeyMetadataOutcome};
use crate::operations::key_policy;
use crate::operations::key_secret::KeyEnvironment;
use crate::operations::keys::{
    self, CreatedKey, KeyFilter, ListedKey, NewKey, OldKeyFate, Revocation, RevokedKey, RotatedKey,
};
use crate::operations::limits::{self, KeyLimitOutcome};
use crate::operations::metadata::Metadata;
use crate::operations::name::Name;
use crate::operations::quotas;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it; it is shown only this once
    #[command(after_help = CREATE_EXAMPLES)]
    Create {
        /// The organization that owns the key
        #[arg(long, value_name = "UUID")]
        org_id: String,
        /// Display name (1 to 200 characters)
        #[arg(long)]
        name: String,
        /// Key environment: sk_live_ or sk_test_ keys
        #[arg(long, value_enum, default_value = "live")]
        env: KeyEnvironment,
        /// Lifetime, such as 90d, 24h, 30m or 45s; the key never expires without it
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// A scope the key grants, such as orders:read (1 to 64 of a-z 0-9 : . _ -);
        /// repeat for more, at most 32. Without any, routes that require a scope refuse
        /// the key
        #[arg(long = "scope", value_name = "SCOPE", allow_hyphen_values = true)]
        scopes: Vec<String>,
        /// A network the key may be used from, such as 203.0.113.0/24 or 2001:db8::/32;
        /// repeat for more, at most 16. Without any, the key works from anywhere
        #[arg(long = "allow-cidr", value_name = "CIDR", allow_hyphen_values = true)]
        allowed_networks: Vec<String>,
        /// A JSON object kept with the key and returned as given (at most 1 KiB)
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List an organization's keys (prefixes only, never the keys), their quotas
    /// (used/monthly this period), limits, scopes, allowlists and last use
    List {
        /// The organization whose keys to list
        #[arg(long, value_name = "UUID")]
        org_id: String,
        /// Only keys nobody used for this long, such as 30d: never used, or last used
        /// before then; keys created since are left out (they had no chance yet)
        #[arg(long, value_name = "DURATION")]
        unused_since: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Show one key as listed (never the key itself)
    Get {
        /// The key's id (not the key itself)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Replace a key with a new one and print it; it is shown only this once
    ///
    /// The new key gets the old key's organization, name, environment (sk_live_ or
    /// sk_test_), own rate limit, scopes and allowlist, and records which key it
    /// replaced. The old key keeps working for the
    /// grace period and then counts as expired; with --grace 0s it is revoked at once.
    #[command(after_help = ROTATE_EXAMPLES)]
    Rotate {
        /// The old key's id (not the key itself); it must be active
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        /// How long the old key keeps working, such as 24h, 30m or 0s (0s revokes it
        /// now); a sooner expiry of its own is kept
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "24h",
            allow_hyphen_values = true
        )]
        grace: String,
        /// Lifetime of the new key, such as 90d; the new key never expires without it
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        expires_in: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Revoke a key; keysync pushes the revocation to watching gateways at once
    ///
    /// With --wait, returns when every live gateway serves a revision that includes the
    /// revocation (after which none admits the key), and prints how many did; exit
    /// status 3 when some did not within --timeout (they are listed).
    Revoke {
        /// The key's id (not the key itself)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        /// Wait until every live gateway serves the revocation
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, such as 10s (the default) or 1m
        #[arg(long, value_name = "DURATION", requires = "wait")]
        timeout: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Tell from a key's text whether keysync could have issued it (its checksum);
    /// offline, and the key is never printed back
    ///
    /// Exit status 1 when the checksum does not match or the text is not a key. Without
    /// KEY (or with -), the key is read from standard input, which keeps it out of
    /// shell history.
    Check {
        /// The key itself, or - to read it from standard input
        #[arg(value_name = "KEY")]
        key: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Give a key a rate limit of its own, or clear it
    ///
    /// A key's own limit replaces its organization's for that key and is counted for
    /// that key alone: --rpm + --burst requests in each clock-aligned one-minute window.
    /// Cleared, the key shares its organization's limit again. Gateways get the change
    /// within moments, without a restart.
    #[command(after_help = KEY_LIMIT_EXAMPLES)]
    SetLimit {
        /// The key's id (not the key itself)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        #[command(flatten)]
        limit: LimitArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Give a key a monthly quota of its own, or clear it
    ///
    /// The key's quota counts the requests the gateways forwarded for this key alone,
    /// in its organization's periods (from the organization's reset day, 1 when it has
    /// no quota). Requests already served this period count.
    #[command(after_help = KEY_QUOTA_EXAMPLES)]
    SetQuota {
        /// The key's id (not the key itself)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        #[command(flatten)]
        quota: KeyQuotaArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Replace the scopes a key grants, or clear them
    ///
    /// A route that requires scopes (its Envoy route metadata keysync.scopes) admits a
    /// key only when the key grants every one of them; other requests get 403
    /// insufficient_scope. Routes that require none admit any valid key. Gateways get
    /// the change within moments, without a restart.
    #[command(after_help = SCOPES_EXAMPLES)]
    SetScopes {
        /// The key's id (not the key itself)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        #[command(flatten)]
        scopes: ScopeArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Replace the networks a key may be used from, or clear them (from anywhere)
    ///
    /// With an allowlist, a request from an address outside every listed network gets
    /// 403 ip_not_allowed. The address is the one Envoy reports as the client's (its
    /// use_remote_address and xff_num_trusted_hops settings decide it). Gateways get
    /// the change within moments, without a restart.
    #[command(after_help = ALLOWLIST_EXAMPLES)]
    SetAllowlist {
        /// The key's id (not the key itself)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        #[command(flatten)]
        networks: AllowlistArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Set or clear a key's metadata: a JSON object kept with it and returned as given
    #[command(after_help = KEY_METADATA_EXAMPLES)]
    SetMetadata {
        /// The key's id (not the key itself)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
        #[command(flatten)]
        metadata: MetadataArgs,
        #[command(flatten)]
        output: Output,
    },
    /// Import keys customers already hold, from a JSON Lines file: one key a line, by
    /// its SHA-256 or by its text (hashed here, never stored or printed)
    ///
    /// Each line is {"key_hash": "<64 hex>"} or {"key": "sk_live_..."}, with optional
    /// "name", "expires_at" and "created_at" (RFC 3339), "metadata" (an object) and,
    /// with key_hash, "prefix" (what listings show). All or nothing: the first bad line
    /// (not hex, wrong length, a key given twice or already stored, an unknown field)
    /// is the error, by line number, and nothing is imported. Imported keys have no
    /// checksum: gateways accept them while accept_legacy_keys is on.
    #[command(after_help = IMPORT_EXAMPLES)]
    Import {
        /// The organization the keys belong to
        #[arg(long, value_name = "UUID")]
        org_id: String,
        /// The JSON Lines file, or - for standard input
        #[arg(long, value_name = "FILE")]
        file: String,
        #[command(flatten)]
        output: Output,
    },
}

const KEY_METADATA_EXAMPLES: &str = "\
Examples:
  keysync keys set-metadata KEY_ID --metadata '{\"team\": \"payments\"}'
  keysync keys set-metadata KEY_ID --clear";

const IMPORT_EXAMPLES: &str = "\
Examples:
  keysync keys import --org-id ORG_ID --file old-keys.jsonl
    {\"key_hash\": \"9f86d0...0a08\", \"name\": \"billing\", \"created_at\": \"2024-03-01T00:00:00Z\"}
    {\"key\": \"sk_live_...\", \"expires_at\": \"2027-01-01T00:00:00Z\"}";

const CREATE_EXAMPLES: &str = "\
Examples:
  keysync keys create --org-id ORG_ID --name \"ci deploy\" --expires-in 90d
  keysync keys create --org-id ORG_ID --name orders --scope orders:read --scope orders:write \\
      --allow-cidr 203.0.113.0/24 --allow-cidr 2001:db8::/32";

const SCOPES_EXAMPLES: &str = "\
Examples:
  keysync keys set-scopes KEY_ID --scope orders:read --scope orders:write
  keysync keys set-scopes KEY_ID --clear               no scopes: only routes requiring none";

const ALLOWLIST_EXAMPLES: &str = "\
Examples:
  keysync keys set-allowlist KEY_ID --allow-cidr 203.0.113.0/24 --allow-cidr 2001:db8::/32
  keysync keys set-allowlist KEY_ID --clear            usable from anywhere again";

const KEY_LIMIT_EXAMPLES: &str = "\
Examples:
  keysync keys set-limit KEY_ID --rpm 10               10 requests a minute, this key only
  keysync keys set-limit KEY_ID --clear                back to the organization's limit";

const KEY_QUOTA_EXAMPLES: &str = "\
Examples:
  keysync keys set-quota KEY_ID --monthly 50000       50000 requests a month, this key only
  keysync keys set-quota KEY_ID --clear                no quota of its own";

const ROTATE_EXAMPLES: &str = "\
Examples:
  keysync keys rotate KEY_ID                   old key works 24 more hours
  keysync keys rotate KEY_ID --grace 1h --expires-in 90d
  keysync keys rotate KEY_ID --grace 0s        leaked key: revoke it now";

/// The flag `keys list` takes a lookback in.
const UNUSED_SINCE_FLAG: &str = "--unused-since";

/// The import file's text: `-` reads standard input.
fn read_import_file(file: &str) -> Result<String, CommandError> {
    let read = if file == "-" {
        io::read_to_string(io::stdin())
    } else {
        std::fs::read_to_string(file)
    };
    read.map_err(|cause| CommandError::ReadFile {
        path: file.to_owned(),
        cause,
    })
}

/// The last line of every text output that shows a new key.
const SHOWN_ONCE: &str = "This key is shown only once: store it now. keysync keeps only its hash.";

/// `--env live|test`.
impl ValueEnum for KeyEnvironment {
    fn value_variants<'a>() -> &'a [Self] {
        &[KeyEnvironment::Live, KeyEnvironment::Test]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            KeyEnvironment::Live => "live",
            KeyEnvironment::Test => "test",
        }))
    }
}

pub async fn run(
    command: KeysCommand,
    database_url: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    match command {
        KeysCommand::Check { key, output } => {
            let checked = key_check::check(&key_check::key_text(key)?)?;
            print(out, &checked, output)?;
        }
        KeysCommand::Create {
            org_id,
            name,
            env,
            expires_in,
            scopes,
            allowed_networks,
            metadata,
            output,
        } => {
            let key = NewKey {
                org_id: parse_id("org id", &org_id)?,
                name: Name::of_key(&name)?,
                environment: env,
                expires_at: expires_in
                    .map(|text| durations::expiry(&text, Utc::now()))
                    .transpose()?,
                scopes: checked_scopes(&scopes)?,
                allowed_networks: checked_allowlist(&allowed_networks)?,
                metadata: metadata.as_deref().map(Metadata::parse).transpose()?,
            };
            let pool = connect(database_url).await?;
            print(out, &keys::create(&pool, Actor::Cli, key).await?, output)?;
        }
        KeysCommand::List {
            org_id,
            unused_since,
            output,
        } => {
            let org_id = parse_id("org id", &org_id)?;
            let filter = KeyFilter {
                unused_since: unused_since
                    .map(|text| durations::since_named(UNUSED_SINCE_FLAG, &text, Utc::now()))
                    .transpose()?,
            };
            let pool = connect(database_url).await?;
            print(
                out,
                &keys::list_for_org(&pool, org_id, filter).await?,
                output,
            )?;
        }
        KeysCommand::SetMetadata {
            key_id,
            metadata,
            output,
        } => {
            let key_id = parse_id("key id", &key_id)?;
            let metadata = metadata.metadata()?;
            let pool = connect(database_url).await?;
            let outcome =
                key_metadata::set_key_metadata(&pool, Actor::Cli, key_id, metadata.as_ref())
                    .await?;
            print(out, &outcome, output)?;
        }
        KeysCommand::Import {
            org_id,
            file,
            output,
        } => {
            let org_id = parse_id("org id", &org_id)?;
            let text = read_import_file(&file)?;
            let keys = key_import::parse(&text, Utc::now())?;
            let pool = connect(database_url).await?;
            let imported = key_import::import(&pool, Actor::Cli, org_id, &keys).await?;
            print(out, &imported, output)?;
        }
        KeysCommand::Get { key_id, output } => {
            let key_id = parse_id("key id", &key_id)?;
            let pool = connect(database_url).await?;
            print(out, &keys::get(&pool, key_id).await?, output)?;
        }
        KeysCommand::Rotate {
            key_id,
            grace,
            expires_in,
            output,
        } => {
            let old_id = parse_id("key id", &key_id)?;
            let now = Utc::now();
            let fate = match durations::grace(&grace, now)? {
                None => OldKeyFate::RevokeNow,
                Some(at) => OldKeyFate::ExpireBy(at),
            };
            let expires_at = expires_in
                .map(|text| durations::expiry(&text, now))
                .transpose()?;
            let pool = connect(database_url).await?;
            let rotated = keys::rotate(&pool, Actor::Cli, old_id, expires_at, fate).await?;
            print(out, &rotated, output)?;
        }
        KeysCommand::Revoke {
            key_id,
            wait,
            timeout,
            output,
        } => {
            receipts::revoke(&key_id, wait, timeout.as_deref(), output, database_url, out).await?;
        }
        KeysCommand::SetLimit {
            key_id,
            limit,
            output,
        } => {
            let key_id = parse_id("key id", &key_id)?;
            let change = limit.change()?;
            let pool = connect(database_url).await?;
            print(
                out,
                &limits::set_key_limit(&pool, Actor::Cli, key_id, change).await?,
                output,
            )?;
        }
        KeysCommand::SetQuota {
            key_id,
            quota,
            output,
        } => {
            let key_id = parse_id("key id", &key_id)?;
            let change = quota.change()?;
            let pool = connect(database_url).await?;
            let outcome =
                quotas::set_key_quota(&pool, Actor::Cli, key_id, change, Utc::now()).await?;
            print(out, &outcome, output)?;
        }
        KeysCommand::SetScopes {
            key_id,
            scopes,
            output,
        } => {
            let key_id = parse_id("key id", &key_id)?;
            let scopes = scopes.scopes()?;
            let pool = connect(database_url).await?;
            print(
                out,
                &key_policy::set_scopes(&pool, Actor::Cli, key_id, &scopes).await?,
                output,
            )?;
        }
        KeysCommand::SetAllowlist {
            key_id,
            networks,
            output,
        } => {
            let key_id = parse_id("key id", &key_id)?;
            let allowlist = networks.allowlist()?;
            let pool = connect(database_url).await?;
            print(
                out,
                &key_policy::set_allowlist(&pool, Actor::Cli, key_id, &allowlist).await?,
                output,
            )?;
        }
    }
    Ok(())
}

impl Render for CreatedKey {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        field_lines(out, self)?;
        writeln!(out, "{SHOWN_ONCE}")
    }
}

impl Render for RotatedKey {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        field_lines(out, self)?;
        if self.old_key_revoked {
            writeln!(out, "The old key is revoked.")?;
        } else {
            writeln!(
                out,
                "The old key keeps working until {}.",
                self.old_key_expires_at
            )?;
        }
        writeln!(out, "{SHOWN_ONCE}")
    }
}

impl Render for ListedKey {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        field_lines(out, self)
    }
}

impl Render for Vec<ListedKey> {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns: [Column<ListedKey>; 12] = [
            Column::new("ID", |key| key.key_id.to_string()),
            Column::new("PREFIX", |key| key.prefix.clone()),
            Column::new("NAME", |key| key.name.clone()),
            Column::new("CREATED", |key| key.created_at.to_string()),
            Column::new("EXPIRES", |key| {
                key.expires_at
                    .map_or_else(|| "never".to_owned(), |at| at.to_string())
            }),
            // A leak report shows beside the status (a flagged key still works), and so
            // does an import (a key without a checksum: a legacy key to gateways).
            Column::new("STATUS", |key| {
                let notes: Vec<&str> = [
                    key.leaked_at.map(|_| "leaked"),
                    key.imported.then_some("imported"),
                ]
                .into_iter()
                .flatten()
                .collect();
                if notes.is_empty() {
                    key.status.as_str().to_owned()
                } else {
                    format!("{} ({})", key.status.as_str(), notes.join(","))
                }
            }),
            // The key's own quota, used this period over monthly.
            Column::new("QUOTA", |key| quota_cell(key.quota)),
            Column::new("LIMIT", |key| {
                limit_cell(key.rate_limit.map(|key_limit| key_limit.limit))
            }),
            // Whose budget the limit is: the key's own, or its organization's.
            Column::new("BUDGET", |key| scope_cell(key.rate_limit)),
            Column::new("SCOPES", |key| scopes_cell(&key.scopes)),
            Column::new("ALLOWED_FROM", |key| allowlist_cell(&key.allowed_networks)),
            // To the minute.
            Column::new("LAST_USED", |key| {
                key.last_used_at
                    .map_or_else(|| "never".to_owned(), |at| at.to_string())
            }),
        ];
        out.write_all(table(&columns, self).as_bytes())
    }
}

impl Render for KeyLimitOutcome {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let unchanged = unchanged_note(self.changed);
        match self.rate_limit {
            Some(key_limit) if key_limit.per_key => writeln!(
                out,
                "key {}: rate limit {} of its own, {} requests a minute for this key \
                 alone{unchanged}",
                self.key_id,
                per_minute(key_limit.limit),
                key_limit.limit.budget()
            ),
            Some(key_limit) => writeln!(
                out,
                "key {}: no limit of its own; its organization's {} applies, shared \
                 with the organization's other keys{unchanged}",
                self.key_id,
                per_minute(key_limit.limit)
            ),
            None => writeln!(
                out,
                "key {}: no rate limit (neither the key nor its organization has \
                 one){unchanged}",
                self.key_id
            ),
        }
    }
}

impl Render for KeyMetadataOutcome {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let unchanged = unchanged_note(self.changed);
        match &self.metadata {
            Some(metadata) => writeln!(out, "key {}: metadata {metadata}{unchanged}", self.key_id),
            None => writeln!(out, "key {}: no metadata{unchanged}", self.key_id),
        }
    }
}

impl Render for ImportedKeys {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "imported {} keys into organization {} (keys list shows them as imported)",
            self.imported, self.org_id
        )
    }
}

impl Render for RevokedKey {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        match self.revocation {
            Revocation::Revoked => writeln!(out, "revoked key {}", self.key_id),
            Revocation::AlreadyRevoked => {
                writeln!(out, "key {} was already revoked", self.key_id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;
    use crate::cli::render::printed;
    use crate::key_set::key_policy::PolicyColumns;
    use crate::operations::key_secret::KeySecret;
    use crate::operations::keys::ApiKeyInfo;
    use crate::operations::timestamp::Timestamp;

    #[test]
    fn key_listing_shows_prefix_and_status() {
        let key = ApiKeyInfo {
            id: Uuid::nil(),
            org_id: Uuid::nil(),
            name: "ci".to_owned(),
            key_prefix: "sk_live_AbCd".to_owned(),
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            expires_at: None,
            revoked_at: None,
            active: true,
            leaked_at: None,
        };
        let leaked = ApiKeyInfo {
            leaked_at: DateTime::from_timestamp(60, 0),
            ..key.clone()
        };
        let no_policy = PolicyColumns::default;
        let keys = vec![ListedKey::new(
            key.clone(),
            None,
            None,
            no_policy(),
            Utc::now(),
        )];
        let leaked = printed(
            &vec![ListedKey::new(leaked, None, None, no_policy(), Utc::now())],
            false,
        );
        assert!(leaked.contains("active (leaked)"), "{leaked}");
        let text = printed(&keys, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "ID",
                "PREFIX",
                "NAME",
                "CREATED",
                "EXPIRES",
                "STATUS",
                "QUOTA",
                "LIMIT",
                "BUDGET",
                "SCOPES",
                "ALLOWED_FROM",
                "LAST_USED"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "00000000-0000-0000-0000-000000000000",
                "sk_live_AbCd",
                "ci",
                "1970-01-01T00:00:00Z",
                "never",
                "active",
                "-",
                "-",
                "-",
                "-",
                "any",
                "never"
            ]
        );

        let value: serde_json::Value = serde_json::from_str(&printed(&keys, true)).unwrap();
        assert_eq!(value[0]["prefix"], "sk_live_AbCd");
        assert_eq!(value[0]["status"], "active");
        assert_eq!(value[0]["expires_at"], serde_json::Value::Null);
        assert_eq!(value[0]["rate_limit"], serde_json::Value::Null);
        assert_eq!(value[0]["quota"], serde_json::Value::Null);
        assert_eq!(value[0]["leaked_at"], serde_json::Value::Null);
        assert_eq!(value[0]["scopes"], serde_json::json!([]));
        assert_eq!(value[0]["allowed_networks"], serde_json::json!([]));

        let with_policy = ListedKey::new(
            key,
            None,
            None,
            PolicyColumns {
                scopes: vec!["orders:read".to_owned(), "orders:write".to_owned()],
                allowed_networks: vec!["10.0.0.0/8".to_owned(), "2001:db8::/32".to_owned()],
            },
            Utc::now(),
        );
        let text = printed(&vec![with_policy.clone()], false);
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            row[9..11],
            ["orders:read,orders:write", "10.0.0.0/8,2001:db8::/32"]
        );
        let one = printed(&with_policy, false);
        assert!(
            one.contains("\nscopes: orders:read orders:write\n"),
            "{one}"
        );
        assert!(
            one.contains("\nallowed_networks: 10.0.0.0/8 2001:db8::/32\n"),
            "{one}"
        );
    }

    #[test]
    fn a_listing_shows_last_use_import_and_metadata_as_given() {
        let key = ApiKeyInfo {
            id: Uuid::nil(),
            org_id: Uuid::nil(),
            name: "old".to_owned(),
            key_prefix: "sk_live_Old1".to_owned(),
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            expires_at: None,
            revoked_at: None,
            active: true,
            leaked_at: None,
        };
        let metadata = r#"{"z": 1,  "a": [2]}"#;
        let listed = ListedKey::new(key, None, None, PolicyColumns::default(), Utc::now())
            .with_data(keys::KeyDataColumns {
                last_used_at: DateTime::from_timestamp(120, 0),
                imported: true,
                metadata: Some(metadata.to_owned()),
            });
        let text = printed(&vec![listed.clone()], false);
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[5..7], ["active", "(imported)"], "{text}");
        assert_eq!(row.last(), Some(&"1970-01-01T00:02:00Z"), "{text}");
        let json = printed(&vec![listed.clone()], true);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value[0]["last_used_at"], "1970-01-01T00:02:00Z");
        assert_eq!(value[0]["imported"], true);
        assert_eq!(value[0]["metadata"], serde_json::json!({"z": 1, "a": [2]}));
        // As given, key order and spacing kept, in JSON and in text.
        assert!(json.contains(metadata), "{json}");
        let one = printed(&listed, false);
        assert!(one.contains(&format!("\nmetadata: {metadata}\n")), "{one}");
        assert!(one.contains("\nimported: true\n"), "{one}");
    }

    #[test]
    fn revocations_are_one_sentence() {
        let key_id = Uuid::nil();
        let mut text = Vec::new();
        for revocation in [Revocation::Revoked, Revocation::AlreadyRevoked] {
            RevokedKey { key_id, revocation }.text(&mut text).unwrap();
        }
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "revoked key 00000000-0000-0000-0000-000000000000\n\
             key 00000000-0000-0000-0000-000000000000 was already revoked\n"
        );
    }

    #[test]
    fn the_env_argument_names_both_environments() {
        let names: Vec<String> = KeyEnvironment::value_variants()
            .iter()
            .filter_map(|environment| environment.to_possible_value())
            .map(|value| value.get_name().to_owned())
            .collect();
        assert_eq!(names, ["live", "test"]);
    }

    fn created(expires_at: Option<Timestamp>) -> CreatedKey {
        let key = KeySecret::generate(KeyEnvironment::Test);
        CreatedKey {
            key_id: Uuid::from_u128(1),
            org_id: Uuid::from_u128(2),
            name: "ci".to_owned(),
            prefix: key.prefix().to_owned(),
            expires_at,
            scopes: Vec::new(),
            allowed_networks: Vec::new(),
            metadata: None,
            key,
        }
    }

    #[test]
    fn a_new_key_is_a_line_per_field_then_the_warning() {
        let key = created(None);
        let secret = key.key.secret().to_owned();
        assert_eq!(
            printed(&key, false),
            format!(
                "key: {secret}\n\
                 key_id: 00000000-0000-0000-0000-000000000001\n\
                 org_id: 00000000-0000-0000-0000-000000000002\n\
                 name: ci\n\
                 prefix: {}\n\
                 expires_at: never\n\
                 metadata: none\n\
                 {SHOWN_ONCE}\n",
                &secret[..12]
            )
        );
        let json: serde_json::Value = serde_json::from_str(&printed(&key, true)).unwrap();
        assert_eq!(json["key"], secret.as_str());
        assert_eq!(json["expires_at"], serde_json::Value::Null);
        assert_eq!(json["metadata"], serde_json::Value::Null);
    }

    #[test]
    fn a_rotation_adds_the_old_key_and_its_end() {
        let at = Timestamp(DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        let mut rotated = RotatedKey {
            new_key: created(Some(at)),
            old_key_id: Uuid::from_u128(3),
            old_key_expires_at: at,
            old_key_revoked: false,
        };
        let text = printed(&rotated, false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[5..],
            [
                "expires_at: 2023-11-14T22:13:20Z",
                "metadata: none",
                "old_key_id: 00000000-0000-0000-0000-000000000003",
                "old_key_expires_at: 2023-11-14T22:13:20Z",
                "The old key keeps working until 2023-11-14T22:13:20Z.",
                SHOWN_ONCE,
            ]
        );
        rotated.old_key_revoked = true;
        assert!(printed(&rotated, false).contains("\nThe old key is revoked.\n"));
        let json: serde_json::Value = serde_json::from_str(&printed(&rotated, true)).unwrap();
        assert_eq!(json["old_key_id"], "00000000-0000-0000-0000-000000000003");
        assert_eq!(json.get("old_key_revoked"), None, "text only");
    }
}
