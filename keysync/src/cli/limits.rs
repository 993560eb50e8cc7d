//! Rate limits on the command line: the `--rpm`/`--burst`/`--clear` arguments of the
//! `set-limit` commands, and how text output shows a limit (`100/min+20`, `-` for
//! none).

use clap::Args;
use keysync_contract::limit::{KeyLimit, Limit};

use super::CommandError;
use crate::key_set::limit_columns::MAX_LIMIT_VALUE;
use crate::operations::limits::LimitChange;

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

impl LimitArgs {
    /// `--rpm N [--burst B]` or `--clear`, checked before anything is written.
    pub fn change(&self) -> Result<LimitChange, CommandError> {
        match (self.clear, self.rpm.as_deref(), self.burst.as_deref()) {
            (true, None, None) => Ok(LimitChange::Clear),
            (true, _, _) => Err(CommandError::LimitUsage(
                "--clear cannot be combined with --rpm or --burst",
            )),
            (false, None, None) => Err(CommandError::LimitUsage(
                "give --rpm N (and optionally --burst B), or --clear",
            )),
            (false, None, Some(_)) => Err(CommandError::LimitUsage("--burst needs --rpm")),
            (false, Some(rpm), burst) => Ok(LimitChange::Set(Limit {
                requests_per_minute: limit_value("--rpm", rpm, 1)?,
                burst: burst
                    .map(|burst| limit_value("--burst", burst, 0))
                    .transpose()?
                    .unwrap_or(0),
            })),
        }
    }
}

/// A whole number from `min` to [`MAX_LIMIT_VALUE`] (what the schema stores); digits
/// only, so `+5`, `1e3` and `-1` are refused rather than read some other way.
fn limit_value(flag: &'static str, value: &str, min: u32) -> Result<u32, CommandError> {
    let text = value.trim();
    text.bytes()
        .all(|byte| byte.is_ascii_digit())
        .then(|| text.parse::<u32>().ok())
        .flatten()
        .filter(|number| (min..=MAX_LIMIT_VALUE).contains(number))
        .ok_or_else(|| CommandError::InvalidLimitValue {
            flag,
            value: value.to_owned(),
            min,
        })
}

/// A limit as text output shows it: `100/min+20`.
pub fn per_minute(limit: Limit) -> String {
    format!("{}/min+{}", limit.requests_per_minute, limit.burst)
}

/// A limit in a table cell: `100/min+20`, or `-` for none.
pub fn limit_cell(limit: Option<Limit>) -> String {
    limit.map_or_else(|| "-".to_owned(), per_minute)
}

/// What ends a `set-limit` sentence when the limit already was what was asked for.
pub fn unchanged_note(changed: bool) -> &'static str {
    if changed {
        ""
    } else {
        " (unchanged)"
    }
}

/// Whose budget a key's limit is, in a table cell: `key` (its own), `org` (shared with
/// its organization's keys), or `-` for none.
pub fn scope_cell(limit: Option<KeyLimit>) -> String {
    match limit {
        Some(KeyLimit { per_key: true, .. }) => "key",
        Some(KeyLimit { per_key: false, .. }) => "org",
        None => "-",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_args(rpm: Option<&str>, burst: Option<&str>, clear: bool) -> LimitArgs {
        LimitArgs {
            rpm: rpm.map(str::to_owned),
            burst: burst.map(str::to_owned),
            clear,
        }
    }

    fn set(requests_per_minute: u32, burst: u32) -> LimitChange {
        LimitChange::Set(Limit {
            requests_per_minute,
            burst,
        })
    }

    #[test]
    fn limit_changes_are_set_or_clear() {
        assert_eq!(
            limit_args(Some("100"), Some("20"), false).change().unwrap(),
            set(100, 20)
        );
        assert_eq!(
            limit_args(Some(" 7 "), None, false).change().unwrap(),
            set(7, 0)
        );
        assert_eq!(
            limit_args(Some("2147483647"), Some("2147483647"), false)
                .change()
                .unwrap(),
            set(MAX_LIMIT_VALUE, MAX_LIMIT_VALUE)
        );
        assert_eq!(
            limit_args(None, None, true).change().unwrap(),
            LimitChange::Clear
        );
    }

    #[test]
    fn limit_misuse_is_one_clear_error() {
        for (args, expected) in [
            (
                limit_args(Some("10"), None, true),
                "--clear cannot be combined with --rpm or --burst",
            ),
            (
                limit_args(None, Some("1"), true),
                "--clear cannot be combined with --rpm or --burst",
            ),
            (
                limit_args(None, None, false),
                "give --rpm N (and optionally --burst B), or --clear",
            ),
            (limit_args(None, Some("5"), false), "--burst needs --rpm"),
            (
                limit_args(Some("0"), None, false),
                "invalid --rpm '0': expected a whole number from 1 to 2147483647",
            ),
            (
                limit_args(Some("10"), Some("-1"), false),
                "invalid --burst '-1': expected a whole number from 0 to 2147483647",
            ),
        ] {
            let message = args.change().unwrap_err().to_string();
            assert_eq!(message, expected, "{args:?}");
        }
        for rpm in [
            "2147483648",
            "4294967296",
            "-5",
            "+5",
            "1e3",
            "ten",
            "",
            "1.5",
        ] {
            let message = limit_args(Some(rpm), None, false)
                .change()
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with(&format!("invalid --rpm '{rpm}': ")),
                "{message}"
            );
        }
        assert!(limit_args(Some("1"), Some("2147483648"), false)
            .change()
            .is_err());
    }

    #[test]
    fn limits_are_shown_as_rate_plus_burst_or_a_dash() {
        let limit = Limit {
            requests_per_minute: 100,
            burst: 20,
        };
        assert_eq!(per_minute(limit), "100/min+20");
        assert_eq!(limit_cell(Some(limit)), "100/min+20");
        assert_eq!(limit_cell(None), "-");
    }

    #[test]
    fn the_scope_says_whose_budget_it_is() {
        let limit = Limit {
            requests_per_minute: 10,
            burst: 2,
        };
        let own = KeyLimit {
            limit,
            per_key: true,
        };
        assert_eq!(scope_cell(Some(own)), "key");
        assert_eq!(
            scope_cell(Some(KeyLimit {
                per_key: false,
                ..own
            })),
            "org"
        );
        assert_eq!(scope_cell(None), "-");
    }
}
