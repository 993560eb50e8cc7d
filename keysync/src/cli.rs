//! The command line: subcommands and their arguments (clap derive).
//!
//! Ids are taken as plain strings and validated by the commands, so a malformed one
//! gives a one-line error instead of clap's multi-line usage message.

use clap::{Args, Parser, Subcommand};

use crate::api_key::KeyEnvironment;

#[derive(Debug, Parser)]
#[command(
    name = "keysync",
    version,
    about = "API-key sidecar for the Envoy gateway, and the operator CLI for its keys"
)]
pub struct Cli {
    /// PostgreSQL URL, e.g. postgres://keysync@127.0.0.1:5432/keysync
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
    /// Create and list organizations
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// Create, list, rotate and revoke API keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run the sidecar: gRPC for the gateway filter, admin HTTP for health and metrics
    #[command(after_help = SERVE_ENVIRONMENT)]
    Serve,
}

const SERVE_ENVIRONMENT: &str = "\
Environment:
  KEYSYNC_GRPC_ADDR               gRPC listen address (default 127.0.0.1:50051): the
                                  KeySync API and Envoy's RateLimitService
  KEYSYNC_HTTP_ADDR               admin HTTP listen address (default 127.0.0.1:9090)
  KEYSYNC_POLL_INTERVAL           fallback catch-up period; PostgreSQL notifications
                                  trigger catch-ups at once (default 10s)
  KEYSYNC_FULL_RELOAD_INTERVAL    full reload period, the safety net (default 15m)
  KEYSYNC_MAX_PAGE_SIZE           largest ListKeys page (default 10000)
  KEYSYNC_CHANGELOG_RECORDS       changes kept for WatchKeys clients to catch up on
                                  (default 200000)
  KEYSYNC_WATCH_CHUNK             most changes in one WatchKeys message (default 5000)
  KEYSYNC_WATCH_HEARTBEAT         quiet time before a WatchKeys heartbeat (default 5s)
  REDIS_URL                       where the rate-limit counters live, such as
                                  redis://127.0.0.1:6379/0; unset: RateLimitService
                                  answers every call OK
  KEYSYNC_RATELIMIT_FAILURE_MODE  while Redis cannot be reached: open (default) allows
                                  requests, closed refuses them (OVER_LIMIT)
  RUST_LOG                        log filter (default info)";

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Create an organization
    Create {
        /// Display name (1 to 200 characters)
        #[arg(long)]
        name: String,
        /// Use this id instead of a random one
        #[arg(long, value_name = "UUID")]
        id: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List organizations, oldest first, with their rate limits
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Set or clear an organization's rate limit, shared by all its keys
    ///
    /// The budget is --rpm + --burst requests in each clock-aligned one-minute window,
    /// counted across all the organization's keys (keys with a limit of their own are
    /// counted apart). Gateways get the change within moments, without a restart.
    #[command(after_help = ORG_LIMIT_EXAMPLES)]
    SetLimit {
        /// The organization's id
        #[arg(value_name = "ORG_ID")]
        org_id: String,
        #[command(flatten)]
        limit: LimitArgs,
        #[command(flatten)]
        output: Output,
    },
}

const ORG_LIMIT_EXAMPLES: &str = "\
Examples:
  keysync orgs set-limit ORG_ID --rpm 100 --burst 20   120 requests a minute
  keysync orgs set-limit ORG_ID --clear                no limit";

/// The limit arguments of the `set-limit` commands. Taken as text and checked by the
/// command, so misuse is one error line rather than clap's usage message.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Requests per minute, 1 to 2147483647
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub rpm: Option<String>,
    /// Extra requests allowed on top of --rpm in each minute, 0 to 2147483647
    /// (default 0)
    #[arg(long, value_name = "B", allow_hyphen_values = true)]
    pub burst: Option<String>,
    /// Remove the limit instead
    #[arg(long)]
    pub clear: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it; it is shown only this once
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
        #[command(flatten)]
        output: Output,
    },
    /// List an organization's keys (prefixes only, never the keys) and their limits
    List {
        /// The organization whose keys to list
        #[arg(long, value_name = "UUID")]
        org_id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Replace a key with a new one and print it; it is shown only this once
    ///
    /// The new key gets the old key's organization, name and environment (sk_live_ or
    /// sk_test_) and records which key it replaced. The old key keeps working for the
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
    Revoke {
        /// The key's id (not the key itself)
        #[arg(value_name = "KEY_ID")]
        key_id: String,
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
}

const KEY_LIMIT_EXAMPLES: &str = "\
Examples:
  keysync keys set-limit KEY_ID --rpm 10               10 requests a minute, this key only
  keysync keys set-limit KEY_ID --clear                back to the organization's limit";

const ROTATE_EXAMPLES: &str = "\
Examples:
  keysync keys rotate KEY_ID                   old key works 24 more hours
  keysync keys rotate KEY_ID --grace 1h --expires-in 90d
  keysync keys rotate KEY_ID --grace 0s        leaked key: revoke it now";

/// Output format shared by the commands that print records.
#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
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
    fn serve_help_names_the_rate_limit_variables() {
        let mut command = Cli::command();
        let serve = command.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        assert!(help.contains("REDIS_URL"), "{help}");
        assert!(help.contains("KEYSYNC_RATELIMIT_FAILURE_MODE"), "{help}");
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
