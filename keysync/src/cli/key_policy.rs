//! Key policies on the command line: the `--scope` and `--allow-cidr` arguments of
//! `keys create`, `keys set-scopes` and `keys set-allowlist` (with `--clear`), and how
//! text output shows scopes and allowlists.

use std::io::{self, Write};

use clap::Args;

use super::limits::unchanged_note;
use super::render::Render;
use super::CommandError;
use crate::operations::key_policy::{
    Allowlist, InvalidPolicy, KeyAllowlistOutcome, KeyScopesOutcome, Scopes,
};

/// `--scope` as `keys create` and `keys set-scopes` take it.
pub const SCOPE_FLAG: &str = "--scope";
/// `--allow-cidr` as `keys create` and `keys set-allowlist` take it.
pub const ALLOW_CIDR_FLAG: &str = "--allow-cidr";

/// The arguments of `keys set-scopes`. Checked by the command, so misuse is one error
/// line rather than clap's usage message.
#[derive(Debug, Clone, Args)]
pub struct ScopeArgs {
    /// A scope the key grants, such as orders:read (1 to 64 of a-z 0-9 : . _ -); repeat
    /// for more, at most 32. The given list replaces the key's scopes
    #[arg(long = "scope", value_name = "SCOPE", allow_hyphen_values = true)]
    pub scopes: Vec<String>,
    /// Remove all of the key's scopes instead
    #[arg(long)]
    pub clear: bool,
}

impl ScopeArgs {
    /// `--scope S ...` or `--clear`, checked before anything is written.
    pub fn scopes(&self) -> Result<Scopes, CommandError> {
        match (self.clear, self.scopes.is_empty()) {
            (true, true) => Ok(Scopes::default()),
            (true, false) => Err(CommandError::Usage(
                "--clear cannot be combined with --scope",
            )),
            (false, true) => Err(CommandError::Usage(
                "give --scope SCOPE (repeat for more), or --clear",
            )),
            (false, false) => checked_scopes(&self.scopes),
        }
    }
}

/// The arguments of `keys set-allowlist`.
#[derive(Debug, Clone, Args)]
pub struct AllowlistArgs {
    /// A network the key may be used from, such as 203.0.113.0/24 or 2001:db8::/32 (an
    /// address alone means itself); repeat for more, at most 16. The given list replaces
    /// the key's allowlist
    #[arg(long = "allow-cidr", value_name = "CIDR", allow_hyphen_values = true)]
    pub networks: Vec<String>,
    /// Remove the allowlist instead: the key may be used from anywhere
    #[arg(long)]
    pub clear: bool,
}

impl AllowlistArgs {
    /// `--allow-cidr C ...` or `--clear`, checked before anything is written.
    pub fn allowlist(&self) -> Result<Allowlist, CommandError> {
        match (self.clear, self.networks.is_empty()) {
            (true, true) => Ok(Allowlist::default()),
            (true, false) => Err(CommandError::Usage(
                "--clear cannot be combined with --allow-cidr",
            )),
            (false, true) => Err(CommandError::Usage(
                "give --allow-cidr CIDR (repeat for more), or --clear",
            )),
            (false, false) => checked_allowlist(&self.networks),
        }
    }
}

/// `--scope` values (possibly none), checked.
pub fn checked_scopes(scopes: &[String]) -> Result<Scopes, CommandError> {
    Scopes::parse(scopes).map_err(|error| invalid(SCOPE_FLAG, error))
}

/// `--allow-cidr` values (possibly none), checked.
pub fn checked_allowlist(networks: &[String]) -> Result<Allowlist, CommandError> {
    Allowlist::parse(networks).map_err(|error| invalid(ALLOW_CIDR_FLAG, error))
}

fn invalid(flag: &'static str, error: InvalidPolicy) -> CommandError {
    CommandError::InvalidPolicy { flag, error }
}

/// Scopes in a table cell: `orders:read,orders:write`, or `-` for none.
pub fn scopes_cell(scopes: &[String]) -> String {
    if scopes.is_empty() {
        "-".to_owned()
    } else {
        scopes.join(",")
    }
}

/// An allowlist in a table cell: `203.0.113.0/24,2001:db8::/32`, or `any`.
pub fn allowlist_cell(networks: &[String]) -> String {
    if networks.is_empty() {
        "any".to_owned()
    } else {
        networks.join(",")
    }
}

impl Render for KeyScopesOutcome {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let unchanged = unchanged_note(self.changed);
        if self.scopes.is_empty() {
            writeln!(
                out,
                "key {}: no scopes (routes that require a scope refuse it){unchanged}",
                self.key_id
            )
        } else {
            writeln!(
                out,
                "key {}: scopes {}{unchanged}",
                self.key_id,
                self.scopes.join(" ")
            )
        }
    }
}

impl Render for KeyAllowlistOutcome {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let unchanged = unchanged_note(self.changed);
        if self.allowed_networks.is_empty() {
            writeln!(
                out,
                "key {}: may be used from any address{unchanged}",
                self.key_id
            )
        } else {
            writeln!(
                out,
                "key {}: may be used only from {}{unchanged}",
                self.key_id,
                self.allowed_networks.join(" ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::cli::render::printed;

    fn scope_args(scopes: &[&str], clear: bool) -> ScopeArgs {
        ScopeArgs {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            clear,
        }
    }

    fn allowlist_args(networks: &[&str], clear: bool) -> AllowlistArgs {
        AllowlistArgs {
            networks: networks.iter().map(|s| (*s).to_owned()).collect(),
            clear,
        }
    }

    #[test]
    fn scopes_are_a_list_or_clear_never_both_or_neither() {
        let scopes = scope_args(&["b", "a"], false).scopes().unwrap();
        assert_eq!(scopes.as_slice(), ["a", "b"]);
        assert_eq!(scope_args(&[], true).scopes().unwrap(), Scopes::default());
        for (args, message) in [
            (
                scope_args(&["a"], true),
                "--clear cannot be combined with --scope",
            ),
            (
                scope_args(&[], false),
                "give --scope SCOPE (repeat for more), or --clear",
            ),
        ] {
            assert_eq!(args.scopes().unwrap_err().to_string(), message);
        }
        let error = scope_args(&["Orders"], false).scopes().unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid --scope: scope \"Orders\" must be 1 to 64 characters of [a-z0-9:._-]"
        );
    }

    #[test]
    fn allowlists_are_a_list_or_clear() {
        let list = allowlist_args(&["203.0.113.9/24"], false)
            .allowlist()
            .unwrap();
        assert_eq!(list.texts(), ["203.0.113.0/24"]);
        assert_eq!(
            allowlist_args(&[], true).allowlist().unwrap(),
            Allowlist::default()
        );
        assert!(allowlist_args(&["10.0.0.0/8"], true).allowlist().is_err());
        assert!(allowlist_args(&[], false).allowlist().is_err());
        let error = allowlist_args(&["10.0.0.0/33"], false)
            .allowlist()
            .unwrap_err();
        assert!(
            error.to_string().starts_with("invalid --allow-cidr: "),
            "{error}"
        );
        let error = allowlist_args(&["0.0.0.0/32"], false)
            .allowlist()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid --allow-cidr: the allowlist would admit no address at all"
        );
    }

    #[test]
    fn outcomes_are_one_sentence() {
        let key_id = Uuid::nil();
        let scopes = KeyScopesOutcome {
            key_id,
            org_id: key_id,
            scopes: vec!["orders:read".to_owned(), "orders:write".to_owned()],
            changed: true,
        };
        assert_eq!(
            printed(&scopes, false),
            format!("key {key_id}: scopes orders:read orders:write\n")
        );
        let cleared = KeyScopesOutcome {
            scopes: Vec::new(),
            changed: false,
            ..scopes
        };
        assert_eq!(
            printed(&cleared, false),
            format!(
                "key {key_id}: no scopes (routes that require a scope refuse it) (unchanged)\n"
            )
        );
        let allowlist = KeyAllowlistOutcome {
            key_id,
            org_id: key_id,
            allowed_networks: vec!["203.0.113.0/24".to_owned()],
            changed: true,
        };
        assert_eq!(
            printed(&allowlist, false),
            format!("key {key_id}: may be used only from 203.0.113.0/24\n")
        );
        let json: serde_json::Value = serde_json::from_str(&printed(&allowlist, true)).unwrap();
        assert_eq!(json["allowed_networks"][0], "203.0.113.0/24");
        assert_eq!(json["changed"], true);
    }

    #[test]
    fn cells_show_none_and_any() {
        assert_eq!(scopes_cell(&[]), "-");
        assert_eq!(scopes_cell(&["a".to_owned(), "b".to_owned()]), "a,b");
        assert_eq!(allowlist_cell(&[]), "any");
    }
}
