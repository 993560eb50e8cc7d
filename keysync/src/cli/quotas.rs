//! Monthly quotas on the command line: the `--monthly`/`--reset-day`/`--clear`
//! arguments of the `set-quota` commands, their one-sentence results, and how a listing
//! shows a quota's use (`1234/10000`, `-` for none).

use std::io::{self, Write};

use clap::Args;

use super::limits::unchanged_note;
use super::render::Render;
use super::CommandError;
use crate::operations::quotas::{
    InvalidQuota, KeyQuotaChange, KeyQuotaOutcome, Monthly, OrgQuotaChange, OrgQuotaOutcome,
    QuotaUse, ResetDay,
};

/// The arguments of `orgs set-quota`. Taken as text and checked by the command, so
/// misuse is one error line rather than clap's usage message.
#[derive(Debug, Clone, Args)]
pub struct OrgQuotaArgs {
    /// Requests a month, 1 to 1000000000000000
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub monthly: Option<String>,
    /// The day of the month (UTC midnight) each period starts, 1 to 28 (default: the
    /// quota's current day, else 1); the organization's keys' quotas follow it
    #[arg(long, value_name = "DAY", allow_hyphen_values = true)]
    pub reset_day: Option<String>,
    /// Remove the quota instead
    #[arg(long)]
    pub clear: bool,
}

/// The arguments of `keys set-quota`.
#[derive(Debug, Clone, Args)]
pub struct KeyQuotaArgs {
    /// Requests a month, 1 to 1000000000000000, counted for this key alone
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub monthly: Option<String>,
    /// Remove the key's quota instead
    #[arg(long)]
    pub clear: bool,
    /// Accepted only to be refused in one line: a key's period is its organization's.
    #[arg(
        long,
        hide = true,
        num_args = 0..=1,
        default_missing_value = "",
        allow_hyphen_values = true
    )]
    pub reset_day: Option<String>,
}

impl OrgQuotaArgs {
    /// `--monthly N [--reset-day D]` or `--clear`, checked before anything is written.
    pub fn change(&self) -> Result<OrgQuotaChange, CommandError> {
        match (
            self.clear,
            self.monthly.as_deref(),
            self.reset_day.as_deref(),
        ) {
            (true, None, None) => Ok(OrgQuotaChange::Clear),
            (true, _, _) => Err(CommandError::Usage(
                "--clear cannot be combined with --monthly or --reset-day",
            )),
            (false, None, None) => Err(CommandError::Usage(
                "give --monthly N (and optionally --reset-day D), or --clear",
            )),
            (false, None, Some(_)) => Err(CommandError::Usage("--reset-day needs --monthly")),
            (false, Some(monthly), reset_day) => Ok(OrgQuotaChange::Set {
                monthly: monthly_value(monthly)?,
                reset_day: reset_day.map(reset_day_value).transpose()?,
            }),
        }
    }
}

impl KeyQuotaArgs {
    /// `--monthly N` or `--clear`, checked before anything is written.
    pub fn change(&self) -> Result<KeyQuotaChange, CommandError> {
        if self.reset_day.is_some() {
            return Err(CommandError::Usage(
                "a key's quota follows its organization's reset day; set the day with \
                 `orgs set-quota ORG_ID --monthly N --reset-day D`",
            ));
        }
        match (self.clear, self.monthly.as_deref()) {
            (true, None) => Ok(KeyQuotaChange::Clear),
            (true, Some(_)) => Err(CommandError::Usage(
                "--clear cannot be combined with --monthly",
            )),
            (false, None) => Err(CommandError::Usage("give --monthly N, or --clear")),
            (false, Some(monthly)) => Ok(KeyQuotaChange::Set(monthly_value(monthly)?)),
        }
    }
}

/// A whole number within the schema's range; digits only, so `+5`, `1e3` and `-1` are
/// refused rather than read some other way.
fn whole_number(value: &str) -> Option<i64> {
    let text = value.trim();
    text.bytes()
        .all(|byte| byte.is_ascii_digit())
        .then(|| text.parse::<i64>().ok())
        .flatten()
}

fn monthly_value(value: &str) -> Result<Monthly, CommandError> {
    whole_number(value)
        .map_or(Err(InvalidQuota::Monthly), Monthly::new)
        .map_err(|error| CommandError::InvalidQuotaValue {
            flag: "--monthly",
            value: value.to_owned(),
            error,
        })
}

fn reset_day_value(value: &str) -> Result<ResetDay, CommandError> {
    whole_number(value)
        .map_or(Err(InvalidQuota::ResetDay), ResetDay::new)
        .map_err(|error| CommandError::InvalidQuotaValue {
            flag: "--reset-day",
            value: value.to_owned(),
            error,
        })
}

/// A quota in a table cell: `used/monthly` (`1234/10000`), or `-` for none.
pub fn quota_cell(quota: Option<QuotaUse>) -> String {
    quota.map_or_else(
        || "-".to_owned(),
        |quota| format!("{}/{}", quota.used, quota.monthly),
    )
}

impl Render for OrgQuotaOutcome {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let unchanged = unchanged_note(self.changed);
        match self.quota {
            Some(quota) => writeln!(
                out,
                "organization {}: quota {} requests a month, periods starting on day {} \
                 (UTC); {} used since {}, resets at {}{unchanged}",
                self.org_id,
                quota.monthly,
                quota.reset_day,
                quota.used,
                quota.period_start,
                quota.resets_at
            ),
            None => writeln!(out, "organization {}: no quota{unchanged}", self.org_id),
        }
    }
}

impl Render for KeyQuotaOutcome {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        let unchanged = unchanged_note(self.changed);
        match self.quota {
            Some(quota) => writeln!(
                out,
                "key {}: quota {} requests a month of its own, periods starting on its \
                 organization's day {} (UTC); {} used since {}, resets at {}{unchanged}",
                self.key_id,
                quota.monthly,
                quota.reset_day,
                quota.used,
                quota.period_start,
                quota.resets_at
            ),
            None => writeln!(out, "key {}: no quota of its own{unchanged}", self.key_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use uuid::Uuid;

    use super::*;
    use crate::cli::render::printed;
    use crate::operations::timestamp::Timestamp;

    fn org_args(monthly: Option<&str>, reset_day: Option<&str>, clear: bool) -> OrgQuotaArgs {
        OrgQuotaArgs {
            monthly: monthly.map(str::to_owned),
            reset_day: reset_day.map(str::to_owned),
            clear,
        }
    }

    fn key_args(monthly: Option<&str>, reset_day: Option<&str>, clear: bool) -> KeyQuotaArgs {
        KeyQuotaArgs {
            monthly: monthly.map(str::to_owned),
            reset_day: reset_day.map(str::to_owned),
            clear,
        }
    }

    #[test]
    fn org_quota_changes_are_set_or_clear() {
        assert_eq!(
            org_args(Some("10000"), Some("15"), false).change().unwrap(),
            OrgQuotaChange::Set {
                monthly: Monthly::new(10_000).unwrap(),
                reset_day: Some(ResetDay::new(15).unwrap()),
            }
        );
        assert_eq!(
            org_args(Some(" 1000000000000000 "), None, false)
                .change()
                .unwrap(),
            OrgQuotaChange::Set {
                monthly: Monthly::new(1_000_000_000_000_000).unwrap(),
                reset_day: None,
            }
        );
        assert_eq!(
            org_args(None, None, true).change().unwrap(),
            OrgQuotaChange::Clear
        );
        assert_eq!(
            key_args(Some("7"), None, false).change().unwrap(),
            KeyQuotaChange::Set(Monthly::new(7).unwrap())
        );
        assert_eq!(
            key_args(None, None, true).change().unwrap(),
            KeyQuotaChange::Clear
        );
    }

    #[test]
    fn quota_misuse_is_one_clear_error() {
        for (args, expected) in [
            (
                org_args(Some("10"), None, true),
                "--clear cannot be combined with --monthly or --reset-day",
            ),
            (
                org_args(None, Some("3"), true),
                "--clear cannot be combined with --monthly or --reset-day",
            ),
            (
                org_args(None, None, false),
                "give --monthly N (and optionally --reset-day D), or --clear",
            ),
            (
                org_args(None, Some("3"), false),
                "--reset-day needs --monthly",
            ),
            (
                org_args(Some("0"), None, false),
                "invalid --monthly '0': expected a whole number from 1 to 1000000000000000",
            ),
            (
                org_args(Some("1000000000000001"), None, false),
                "invalid --monthly '1000000000000001': expected a whole number from 1 to \
                 1000000000000000",
            ),
            (
                org_args(Some("10"), Some("29"), false),
                "invalid --reset-day '29': expected a day of the month from 1 to 28",
            ),
            (
                org_args(Some("10"), Some("0"), false),
                "invalid --reset-day '0': expected a day of the month from 1 to 28",
            ),
        ] {
            assert_eq!(args.change().unwrap_err().to_string(), expected, "{args:?}");
        }
        for monthly in ["-5", "+5", "1e3", "ten", "", "1.5", "99999999999999999999"] {
            let message = org_args(Some(monthly), None, false)
                .change()
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with(&format!("invalid --monthly '{monthly}': ")),
                "{message}"
            );
        }
        for (args, expected) in [
            (
                key_args(Some("10"), None, true),
                "--clear cannot be combined with --monthly",
            ),
            (key_args(None, None, false), "give --monthly N, or --clear"),
            (
                key_args(Some("10"), Some("5"), false),
                "a key's quota follows its organization's reset day",
            ),
            (
                key_args(None, Some(""), true),
                "a key's quota follows its organization's reset day",
            ),
            (
                key_args(Some("-1"), None, false),
                "invalid --monthly '-1': expected a whole number",
            ),
        ] {
            let message = args.change().unwrap_err().to_string();
            assert!(message.starts_with(expected), "{args:?}: {message}");
        }
    }

    fn quota(used: i64) -> QuotaUse {
        let at = |seconds| Timestamp(DateTime::from_timestamp(seconds, 0).unwrap());
        QuotaUse {
            monthly: 10_000,
            used,
            reset_day: 1,
            period_start: at(1_796_083_200),
            resets_at: at(1_798_761_600),
        }
    }

    #[test]
    fn quotas_are_listed_as_used_over_monthly() {
        assert_eq!(quota_cell(Some(quota(1234))), "1234/10000");
        assert_eq!(quota_cell(None), "-");
    }

    #[test]
    fn set_quota_results_are_one_sentence() {
        let org = OrgQuotaOutcome {
            org_id: Uuid::nil(),
            quota: Some(quota(12)),
            changed: true,
        };
        assert_eq!(
            printed(&org, false),
            "organization 00000000-0000-0000-0000-000000000000: quota 10000 requests a \
             month, periods starting on day 1 (UTC); 12 used since 2026-12-01T00:00:00Z, \
             resets at 2027-01-01T00:00:00Z\n"
        );
        let cleared = OrgQuotaOutcome {
            quota: None,
            changed: false,
            ..org
        };
        assert_eq!(
            printed(&cleared, false),
            "organization 00000000-0000-0000-0000-000000000000: no quota (unchanged)\n"
        );
        let key = KeyQuotaOutcome {
            key_id: Uuid::nil(),
            org_id: Uuid::nil(),
            quota: Some(quota(0)),
            changed: false,
        };
        let text = printed(&key, false);
        assert!(
            text.starts_with("key 00000000-0000-0000-0000-000000000000: quota 10000 "),
            "{text}"
        );
        assert!(text.ends_with(" (unchanged)\n"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&printed(&key, true)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "key_id": "00000000-0000-0000-0000-000000000000",
                "org_id": "00000000-0000-0000-0000-000000000000",
                "quota": {
                    "monthly": 10000,
                    "used": 0,
                    "reset_day": 1,
                    "period_start": "2026-12-01T00:00:00Z",
                    "resets_at": "2027-01-01T00:00:00Z"
                },
                "changed": false
            })
        );
    }
}
