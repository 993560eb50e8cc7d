//! `keysync admin-tokens`: create, list and revoke the tokens that callers of the HTTP
//! API present (`Authorization: Bearer ksa_...`), each for every organization or for
//! one (`--org-id`). Only the command line manages them, with the database's own
//! credentials.

use std::io::{self, Write};

use clap::Subcommand;

use super::render::{field_lines, print, Output, Render};
use super::text_table::{table, Column};
use super::{connect, parse_id, CommandError};
use crate::operations::admin_tokens::{
    self, CreatedAdminToken, ListedAdminToken, RevokedAdminToken,
};
use crate::operations::keys::Revocation;
use crate::operations::name::Name;

#[derive(Debug, Subcommand)]
pub enum AdminTokensCommand {
    /// Create a token for the HTTP API and print it; it is shown only this once
    Create {
        /// What the token is for (1 to 200 characters), such as "signup backend"
        #[arg(long)]
        name: String,
        /// The token may read everything and change nothing (403 on a change)
        #[arg(long)]
        read_only: bool,
        /// The token sees and changes only this organization (its keys, limits,
        /// quotas, usage, alerts and audit trail), such as a customer's own dashboard
        #[arg(long, value_name = "ORG_ID")]
        org_id: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List the tokens (prefixes only, never the tokens), revoked ones included
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Revoke a token: it authenticates nothing from its next request on
    Revoke {
        /// The token's id (not the token itself)
        #[arg(value_name = "TOKEN_ID")]
        token_id: String,
    },
}

/// The last line of the text output that shows a new token.
const SHOWN_ONCE: &str =
    "This token is shown only once: store it now. keysync keeps only its hash.";

pub async fn run(
    command: AdminTokensCommand,
    database_url: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    match command {
        AdminTokensCommand::Create {
            name,
            read_only,
            org_id,
            output,
        } => {
            let name = Name::of_admin_token(&name)?;
            let org_id = org_id
                .map(|org_id| parse_id("org id", &org_id))
                .transpose()?;
            let pool = connect(database_url).await?;
            print(
                out,
                &admin_tokens::create(&pool, &name, read_only, org_id).await?,
                output,
            )?;
        }
        AdminTokensCommand::List { output } => {
            let pool = connect(database_url).await?;
            print(out, &admin_tokens::list(&pool).await?, output)?;
        }
        AdminTokensCommand::Revoke { token_id } => {
            let token_id = parse_id("admin token id", &token_id)?;
            let pool = connect(database_url).await?;
            admin_tokens::revoke(&pool, token_id).await?.text(out)?;
        }
    }
    Ok(())
}

impl Render for CreatedAdminToken {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        field_lines(out, self)?;
        writeln!(out, "{SHOWN_ONCE}")
    }
}

impl Render for Vec<ListedAdminToken> {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let columns: [Column<ListedAdminToken>; 7] = [
            Column::new("ID", |token| token.token_id.to_string()),
            Column::new("PREFIX", |token| token.prefix.clone()),
            Column::new("NAME", |token| token.name.clone()),
            Column::new("ACCESS", |token| {
                if token.read_only {
                    "read-only"
                } else {
                    "read-write"
                }
                .to_owned()
            }),
            Column::new("ORG", |token| {
                token
                    .org_id
                    .map_or_else(|| "all".to_owned(), |org_id| org_id.to_string())
            }),
            Column::new("CREATED", |token| token.created_at.to_string()),
            Column::new("STATUS", |token| token.status.as_str().to_owned()),
        ];
        out.write_all(table(&columns, self).as_bytes())
    }
}

impl Render for RevokedAdminToken {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        match self.revocation {
            Revocation::Revoked => writeln!(out, "revoked admin token {}", self.token_id),
            Revocation::AlreadyRevoked => {
                writeln!(out, "admin token {} was already revoked", self.token_id)
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
    use crate::operations::admin_tokens::{AdminTokenSecret, AdminTokenStatus};
    use crate::operations::timestamp::Timestamp;

    #[test]
    fn a_new_token_is_a_line_per_field_then_the_warning() {
        let token = AdminTokenSecret::generate();
        let secret = token.secret().to_owned();
        let created = CreatedAdminToken {
            token_id: Uuid::nil(),
            name: "signup".to_owned(),
            prefix: token.prefix().to_owned(),
            read_only: true,
            org_id: None,
            token,
        };
        assert_eq!(
            printed(&created, false),
            format!(
                "token: {secret}\n\
                 token_id: 00000000-0000-0000-0000-000000000000\n\
                 name: signup\n\
                 prefix: {}\n\
                 read_only: true\n\
                 {SHOWN_ONCE}\n",
                &secret[..12]
            )
        );
        let json: serde_json::Value = serde_json::from_str(&printed(&created, true)).unwrap();
        assert_eq!(json["token"], secret.as_str());
        let limited = CreatedAdminToken {
            org_id: Some(Uuid::from_u128(7)),
            token: AdminTokenSecret::generate(),
            ..created
        };
        assert!(
            printed(&limited, false)
                .contains("\nread_only: true\norg_id: 00000000-0000-0000-0000-000000000007\n"),
            "{}",
            printed(&limited, false)
        );
    }

    #[test]
    fn listed_tokens_show_prefix_access_and_status() {
        let backend = ListedAdminToken {
            token_id: Uuid::nil(),
            prefix: "ksa_AbCdEfGh".to_owned(),
            name: "backend".to_owned(),
            read_only: false,
            org_id: None,
            created_at: Timestamp(DateTime::from_timestamp(0, 0).unwrap()),
            revoked_at: None,
            status: AdminTokenStatus::Active,
        };
        let dashboard = ListedAdminToken {
            name: "dashboard".to_owned(),
            read_only: true,
            org_id: Some(Uuid::from_u128(7)),
            ..backend.clone()
        };
        let tokens = vec![backend, dashboard];
        let text = printed(&tokens, false);
        let row = |line: usize| -> Vec<String> {
            text.lines()
                .nth(line)
                .unwrap()
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            row(0),
            ["ID", "PREFIX", "NAME", "ACCESS", "ORG", "CREATED", "STATUS"]
        );
        assert_eq!(
            row(1),
            [
                "00000000-0000-0000-0000-000000000000",
                "ksa_AbCdEfGh",
                "backend",
                "read-write",
                "all",
                "1970-01-01T00:00:00Z",
                "active"
            ]
        );
        assert_eq!(
            row(2),
            [
                "00000000-0000-0000-0000-000000000000",
                "ksa_AbCdEfGh",
                "dashboard",
                "read-only",
                "00000000-0000-0000-0000-000000000007",
                "1970-01-01T00:00:00Z",
                "active"
            ]
        );
        let json: serde_json::Value = serde_json::from_str(&printed(&tokens, true)).unwrap();
        assert_eq!(json[1]["status"], "active");
        assert_eq!(json[1]["read_only"], true);
        assert_eq!(json[0]["org_id"], serde_json::Value::Null);
        assert_eq!(json[1]["org_id"], "00000000-0000-0000-0000-000000000007");
    }
}
