//! Who makes a change: the CLI (acting with the database's own credentials) or an admin
//! token of the HTTP API. Every write an operation makes records it in the row's
//! `changed_by_token` column (NULL for the CLI), where a later audit trail can pick it up.

use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// `keysync` on the command line.
    Cli,
    /// The HTTP API, on behalf of this admin token.
    AdminToken(Uuid),
}

impl Actor {
    /// The value of a `changed_by_token` column.
    pub fn token_id(self) -> Option<Uuid> {
        match self {
            Actor::Cli => None,
            Actor::AdminToken(id) => Some(id),
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Cli => f.write_str("cli"),
            Actor::AdminToken(id) => write!(f, "admin token {id}"),
        }
    }
}
