//! What operators do to organizations, keys and rate limits: the database operations,
//! each with its validation and its transaction, returning a typed result that
//! serializes (serde) to what `--json` prints.
//!
//! The CLI ([`crate::cli`]) only parses arguments, calls one of these and renders the
//! result; an HTTP API is meant to call the same functions and serialize the same
//! results. Inputs that need checking arrive as checked types ([`name::Name`],
//! [`limits::LimitChange`]), so every caller validates the same way, and can do so
//! before it connects.

pub mod key_secret;
pub mod keys;
pub mod limit_json;
pub mod limits;
pub mod name;
pub mod orgs;
pub mod sql_state;
pub mod timestamp;
