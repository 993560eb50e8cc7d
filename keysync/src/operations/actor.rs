//! Who makes a change: the CLI (acting with the database's own credentials) or an admin
//! token of the HTTP API. Every write an operation makes records it in the row's
//! `changed_by_token` column (NULL for the CLI), and every change in the audit trail
//! ([`super::audit`]) names it.

use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// `keysync` on the command line.
    Cli,
    /// The HTTP API, on behalf of this admin token.
    AdminToken(Uuid),
    /// A signed leak report from a secret scanner ([`crate::leak_reports`]).
    LeakReport,
}

impl Actor {
    /// The value of a `changed_by_token` column.
    pub fn token_id(self) -> Option<Uuid> {
        match self {
            Actor::Cli | Actor::LeakReport => None,
            Actor::AdminToken(id) => Some(id),
        }
    }

    /// How the audit trail names it (`audit_events.actor`); an admin token's id goes
    /// beside it ([`Actor::token_id`]).
    pub fn kind(self) -> &'static str {
        match self {
            Actor::Cli => "cli",
            Actor::AdminToken(_) => "admin_token",
            Actor::LeakReport => "leak_report",
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Cli => f.write_str("cli"),
            Actor::AdminToken(id) => write!(f, "admin token {id}"),
            Actor::LeakReport => f.write_str("leak report"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_trail_names_the_cli_and_tokens_by_kind_and_id() {
        let id = Uuid::from_u128(7);
        assert_eq!((Actor::Cli.kind(), Actor::Cli.token_id()), ("cli", None));
        assert_eq!(
            (
                Actor::AdminToken(id).kind(),
                Actor::AdminToken(id).token_id()
            ),
            ("admin_token", Some(id))
        );
    }
}
