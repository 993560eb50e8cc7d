//! The command line: the `keysync` command and its subcommands (clap derive), one file
//! per noun ([`orgs`], [`keys`], [`plans`], [`admin_tokens`], [`audit`], [`usage`],
//! [`alerts`], [`webhooks`], [`migrate`], [`serve`], [`receipts`] for the fleet; the arguments several nouns share in [`limits`], [`quotas`],
//! [`key_policy`] and [`list_limit`]), and running the command.
//!
//! A command parses its arguments, calls one operation ([`crate::operations`]) and
//! prints the result ([`render`]). Arguments are checked before connecting, so misuse
//! fails fast and the same way with or without a database. Ids are taken as plain
//! strings and checked here, so a malformed one gives a one-line error instead of
//! clap's multi-line usage message. Output goes to a writer the caller flushes only on
//! success, so a failed command prints nothing but its error.

pub mod admin_tokens;
pub mod alerts;
pub mod audit;
pub mod invoice;
pub mod key_check;
pub mod key_policy;
pub mod keys;
pub mod limits;
pub mod list_limit;
pub mod metadata_args;
pub mod migrate;
pub mod orgs;
pub mod plans;
pub mod quotas;
pub mod receipts;
pub mod render;
pub mod serve;
pub mod text_table;
pub mod usage;
pub mod webhooks;

use std::io::{self, Write};

use clap::{Parser, Subcommand};
use sqlx::PgPool;
use uuid::Uuid;

use crate::billing::currency::UnknownCurrency;
use crate::billing::period::InvalidPeriod;
use crate::billing::plan::InvalidPlan;
use crate::config::ConfigError;
use crate::database::{self, DatabaseError};
use crate::fleet::revocation::RevocationError;
use crate::fleet::FleetError;
use crate::key_set::limit_columns::MAX_LIMIT_VALUE;
use crate::operations::admin_tokens::AdminTokenError;
use crate::operations::alerts::InvalidAlertQuery;
use crate::operations::audit::AuditError;
use crate::operations::durations::InvalidDuration;
use crate::operations::external_id::InvalidExternalId;
use crate::operations::invoices::CostError;
use crate::operations::key_import::ImportError;
use crate::operations::key_metadata::KeyMetadataError;
use crate::operations::key_policy::{InvalidPolicy, PolicyOpError};
use crate::operations::keys::KeyError;
use crate::operations::limits::LimitError;
use crate::operations::metadata::InvalidMetadata;
use crate::operations::name::InvalidName;
use crate::operations::org_plans::OrgPlanError;
use crate::operations::orgs::OrgError;
use crate::operations::plans::PlanError;
use crate::operations::quotas::{InvalidQuota, QuotaError};
use crate::operations::usage::InvalidUsageQuery;
use crate::operations::webhooks::WebhookError;
use crate::server::ServerError;

#[derive(Debug, Parser)]
#[command(
    name = "keysync",
    version,
    about = "API-key sidecar for the Envoy gateway, and the operator CLI for its keys"
)]
pub struct Cli {
    /// PostgreSQL URL, e.g. postgres://keysync@127.0.0.1:5432/keysync; TLS as libpq
    /// reads it: ?sslmode=verify-full&sslrootcert=/etc/keysync/db-ca.pem (or PGSSLMODE,
    /// PGSSLROOTCERT)
    // hide_env_values: `--help` must never print a password taken from the environment.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations (already applied ones are skipped)
    Migrate,
    /// Create, list and update organizations (external id, metadata), and set their
    /// rate limits, monthly quotas and price plans
    #[command(subcommand)]
    Orgs(orgs::OrgsCommand),
    /// Create, list, rotate, revoke and import API keys, and set their limits, quotas,
    /// scopes, allowlists and metadata
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Create, list and revoke the tokens of the HTTP API (`/v1/` on the admin port)
    #[command(subcommand)]
    AdminTokens(admin_tokens::AdminTokensCommand),
    /// List the audit trail, newest first: every change operators made, who made it,
    /// and the values before and after (never a key or a token)
    Audit(audit::AuditArgs),
    /// Create, list, show and archive price plans (a fee, included units, graduated
    /// tiers, endpoint weights)
    #[command(subcommand)]
    Plans(plans::PlansCommand),
    /// What the gateways metered for an organization: requests by hour, day, month, key
    /// or outcome, with the total; or what a month costs on its plans (--cost)
    Usage(usage::UsageArgs),
    /// The anomaly alerts `serve` raised, newest first: spikes, drops, jumps in
    /// refusals or upstream 5xx of an organization's traffic, by hour
    Alerts(alerts::AlertsArgs),
    /// Register, list and delete the endpoints told of key changes and quota
    /// thresholds (signed webhooks), send one a test event, and list deliveries
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
    /// Run the sidecar: gRPC for the gateway filter, admin HTTP for health, metrics and
    /// the operator API
    #[command(after_help = serve::SERVE_ENVIRONMENT)]
    Serve,
    /// The gateways that report to keysync (Envoys with the filter, keysync replicas
    /// answering ext_authz): the revision each serves, its lag, last seen, mode, version
    Gateways {
        #[command(flatten)]
        output: render::Output,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no database URL: set DATABASE_URL or pass --database-url")]
    NoDatabaseUrl,
    #[error("invalid {what} '{value}': not a UUID")]
    InvalidId { what: &'static str, value: String },
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error(transparent)]
    InvalidDuration(#[from] InvalidDuration),
    #[error("invalid {flag} '{value}': expected a whole number from {min} to {MAX_LIMIT_VALUE}")]
    InvalidLimitValue {
        flag: &'static str,
        value: String,
        min: u32,
    },
    #[error("{0}")]
    LimitUsage(&'static str),
    #[error("invalid {flag} '{value}': {error}")]
    InvalidQuotaValue {
        flag: &'static str,
        value: String,
        error: InvalidQuota,
    },
    /// Arguments that contradict each other or are missing (`--clear` with values).
    #[error("{0}")]
    Usage(&'static str),
    #[error("invalid {flag}: {error}")]
    InvalidPolicy {
        flag: &'static str,
        error: InvalidPolicy,
    },
    #[error("invalid --limit '{value}': expected a whole number from 1 to {max}")]
    InvalidListLimit { value: String, max: u32 },
    #[error(transparent)]
    InvalidUsageQuery(#[from] InvalidUsageQuery),
    #[error(transparent)]
    InvalidAlertQuery(#[from] InvalidAlertQuery),
    #[error(transparent)]
    InvalidPeriod(#[from] InvalidPeriod),
    #[error(transparent)]
    UnknownCurrency(#[from] UnknownCurrency),
    #[error(transparent)]
    InvalidPlan(#[from] InvalidPlan),
    /// A plan's flag that does not read (`--tier`, `--weight`, an amount).
    #[error("invalid {flag} '{value}': {reason}")]
    InvalidPlanFlag {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(transparent)]
    Org(#[from] OrgError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error(transparent)]
    Policy(#[from] PolicyOpError),
    #[error(transparent)]
    AdminToken(#[from] AdminTokenError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    OrgPlan(#[from] OrgPlanError),
    #[error(transparent)]
    Cost(#[from] CostError),
    #[error(transparent)]
    KeyCheck(#[from] key_check::KeyCheckError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen for {what} on {addr}: {cause}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        cause: io::Error,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    InvalidMetadata(#[from] InvalidMetadata),
    #[error(transparent)]
    InvalidExternalId(#[from] InvalidExternalId),
    #[error(transparent)]
    KeyMetadata(#[from] KeyMetadataError),
    #[error(transparent)]
    Import(#[from] ImportError),
    /// A file named on the command line that cannot be read (`keys import --file`).
    #[error("cannot read {path}: {cause}")]
    ReadFile { path: String, cause: io::Error },
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Revocation(#[from] RevocationError),
    /// `keys revoke --wait` timed out: the key is revoked, some live gateways did not
    /// confirm (exit status [`receipts::UNCONFIRMED_EXIT`]).
    #[error(
        "key {key_id} is revoked, but {missing} of {gateways} live gateways did not confirm \
         in time"
    )]
    Unconfirmed {
        key_id: Uuid,
        missing: usize,
        gateways: u32,
    },
}

impl CommandError {
    /// The process's exit status for this error: 1, or [`receipts::UNCONFIRMED_EXIT`].
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Unconfirmed { .. } => receipts::UNCONFIRMED_EXIT,
            _ => 1,
        }
    }

    /// Whether what the command printed before failing is shown (a receipt with the
    /// gateways missing); otherwise a failed command prints nothing but its error.
    pub fn keeps_output(&self) -> bool {
        matches!(self, CommandError::Unconfirmed { .. })
    }
}

/// Runs one command. `out` receives what the command prints on success.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CommandError> {
    let url = cli.database_url;
    match cli.command {
        Command::Migrate => migrate::run(url, out).await,
        Command::Orgs(command) => orgs::run(command, url, out).await,
        Command::Keys(command) => keys::run(command, url, out).await,
        Command::Plans(command) => plans::run(command, url, out).await,
        Command::AdminTokens(command) => admin_tokens::run(command, url, out).await,
        Command::Audit(args) => audit::run(args, url, out).await,
        Command::Usage(args) => usage::run(args, url, out).await,
        Command::Alerts(args) => alerts::run(args, url, out).await,
        Command::Webhooks(command) => webhooks::run(command, url, out).await,
        Command::Serve => serve::run(url).await,
        Command::Gateways { output } => receipts::gateways(output, url, out).await,
    }
}

/// Connects to the database the command line or `DATABASE_URL` names.
async fn connect(url: Option<String>) -> Result<PgPool, CommandError> {
    Ok(database::connect(&database_url(url)?).await?)
}

/// The database URL the command line or `DATABASE_URL` names.
fn database_url(url: Option<String>) -> Result<String, CommandError> {
    url.filter(|url| !url.trim().is_empty())
        .ok_or(CommandError::NoDatabaseUrl)
}

/// An id argument; `what` names it in the error (`org id`, `key id`).
fn parse_id(what: &'static str, value: &str) -> Result<Uuid, CommandError> {
    Uuid::parse_str(value.trim()).map_err(|_| CommandError::InvalidId {
        what,
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::keys::KeysCommand;
    use super::orgs::OrgsCommand;
    use super::*;
    use crate::operations::key_secret::KeyEnvironment;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ids_must_be_uuids() {
        let error = parse_id("org id", "abc").unwrap_err();
        assert_eq!(error.to_string(), "invalid org id 'abc': not a UUID");
        let id = Uuid::new_v4();
        assert_eq!(parse_id("key id", &id.to_string()).unwrap(), id);
    }

    #[test]
    fn keys_create_defaults_to_live() {
        let cli =
            Cli::try_parse_from(["keysync", "keys", "create", "--org-id", "x", "--name", "n"])
                .unwrap();
        match cli.command {
            Command::Keys(KeysCommand::Create {
                env, expires_in, ..
            }) => {
                assert_eq!(env, KeyEnvironment::Live);
                assert_eq!(expires_in, None);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn keys_create_takes_the_test_environment() {
        let cli = Cli::try_parse_from([
            "keysync", "keys", "create", "--org-id", "x", "--name", "n", "--env", "test",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Keys(KeysCommand::Create {
                env: KeyEnvironment::Test,
                ..
            })
        ));
        assert!(Cli::try_parse_from([
            "keysync", "keys", "create", "--org-id", "x", "--name", "n", "--env", "prod",
        ])
        .is_err());
    }

    #[test]
    fn keys_rotate_defaults_to_a_day_of_grace_and_takes_negative_text() {
        let cli = Cli::try_parse_from(["keysync", "keys", "rotate", "abc"]).unwrap();
        match cli.command {
            Command::Keys(KeysCommand::Rotate {
                key_id,
                grace,
                expires_in,
                output,
            }) => {
                assert_eq!(key_id, "abc");
                assert_eq!(grace, "24h");
                assert_eq!(expires_in, None);
                assert!(!output.json);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Passed on to be refused with a one-line error, not as an unknown flag.
        let cli =
            Cli::try_parse_from(["keysync", "keys", "rotate", "abc", "--grace", "-1h"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Keys(KeysCommand::Rotate { grace, .. }) if grace == "-1h"
        ));
    }

    #[test]
    fn set_limit_takes_text_values_and_clear() {
        let cli = Cli::try_parse_from([
            "keysync",
            "orgs",
            "set-limit",
            "o",
            "--rpm",
            "-5",
            "--burst",
            "2",
            "--json",
        ])
        .unwrap();
        match cli.command {
            Command::Orgs(OrgsCommand::SetLimit {
                org_id,
                limit,
                output,
            }) => {
                assert_eq!(org_id, "o");
                assert_eq!(limit.rpm.as_deref(), Some("-5"));
                assert_eq!(limit.burst.as_deref(), Some("2"));
                assert!(!limit.clear);
                assert!(output.json);
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["keysync", "keys", "set-limit", "k", "--clear"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Keys(KeysCommand::SetLimit { limit, .. })
                if limit.clear && limit.rpm.is_none() && limit.burst.is_none()
        ));
    }

    #[test]
    fn set_quota_takes_text_values_and_clear() {
        let cli = Cli::try_parse_from([
            "keysync",
            "orgs",
            "set-quota",
            "o",
            "--monthly",
            "-5",
            "--reset-day",
            "31",
            "--json",
        ])
        .unwrap();
        match cli.command {
            Command::Orgs(OrgsCommand::SetQuota {
                org_id,
                quota,
                output,
            }) => {
                assert_eq!(org_id, "o");
                // Passed on to be refused with a one-line error, not as an unknown flag.
                assert_eq!(quota.monthly.as_deref(), Some("-5"));
                assert_eq!(quota.reset_day.as_deref(), Some("31"));
                assert!(!quota.clear);
                assert!(output.json);
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["keysync", "keys", "set-quota", "k", "--clear"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Keys(KeysCommand::SetQuota { quota, .. })
                if quota.clear && quota.monthly.is_none() && quota.reset_day.is_none()
        ));
        // A key has no reset day; the flag is parsed only to be refused in one line.
        let cli = Cli::try_parse_from([
            "keysync",
            "keys",
            "set-quota",
            "k",
            "--monthly",
            "5",
            "--reset-day",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Keys(KeysCommand::SetQuota { quota, .. })
                if quota.reset_day.as_deref() == Some("")
        ));
    }

    #[test]
    fn audit_takes_its_filters_as_text() {
        let cli = Cli::try_parse_from([
            "keysync", "audit", "--org-id", "o", "--since", "-7d", "--limit", "0", "--json",
        ])
        .unwrap();
        match cli.command {
            Command::Audit(args) => {
                assert_eq!(args.org_id.as_deref(), Some("o"));
                // Passed on to be refused with a one-line error, not as an unknown flag.
                assert_eq!(args.since.as_deref(), Some("-7d"));
                assert_eq!(args.limit.as_deref(), Some("0"));
                assert!(args.output.json);
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["keysync", "audit"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Audit(audit::AuditArgs {
                org_id: None,
                since: None,
                limit: None,
                ..
            })
        ));
    }

    #[test]
    fn serve_help_names_the_rate_limit_variables() {
        let mut command = Cli::command();
        let serve = command.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        assert!(help.contains("REDIS_URL"), "{help}");
        assert!(help.contains("KEYSYNC_RATELIMIT_FAILURE_MODE"), "{help}");
        assert!(help.contains("KEYSYNC_REDIS_TLS_CA"), "{help}");
    }

    #[test]
    fn database_url_is_global() {
        let cli = Cli::try_parse_from([
            "keysync",
            "orgs",
            "list",
            "--database-url",
            "postgres://h/db",
        ])
        .unwrap();
        assert_eq!(cli.database_url.as_deref(), Some("postgres://h/db"));
    }

    #[test]
    fn help_names_the_database_url_variable() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("DATABASE_URL"), "{help}");
    }
}
