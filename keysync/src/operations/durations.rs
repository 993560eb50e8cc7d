//! The durations of the key operations, a new key's lifetime (`--expires-in`,
//! `expires_in`) and a rotation's grace (`--grace`, `grace`): humantime durations
//! (`90d`, `24h`, `30m`, `0s`) turned into the instants they end at, cut to whole
//! seconds so what is printed is what is stored; and how far back a listing reaches
//! (`--since`, `since`), turned into the instant it starts at. The CLI and the HTTP API
//! parse them here alike, each naming the value as its caller wrote it (`FLAG` below).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// A duration that cannot be used, named as its caller wrote it (`--grace`, `grace`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} '{value}': {reason}")]
pub struct InvalidDuration {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

/// The names the CLI gives the two durations.
pub const EXPIRES_IN_FLAG: &str = "--expires-in";
pub const GRACE_FLAG: &str = "--grace";
pub const SINCE_FLAG: &str = "--since";

/// A lifetime (`--expires-in`): `now + duration`; zero is refused (a key that never
/// worked).
pub fn expiry(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, InvalidDuration> {
    expiry_named(EXPIRES_IN_FLAG, value, now)
}

/// As [`expiry`], naming the value `flag` in the error.
pub fn expiry_named(
    flag: &'static str,
    value: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, InvalidDuration> {
    let duration = parse_duration(flag, value)?;
    if duration.is_zero() {
        return Err(invalid_duration(flag, value, "must be longer than zero"));
    }
    after(flag, value, duration, now)
}

/// A rotation's grace (`--grace`): when the old key stops working; `None` (for `0s`)
/// means at once, by revocation.
pub fn grace(value: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, InvalidDuration> {
    grace_named(GRACE_FLAG, value, now)
}

/// As [`grace`], naming the value `flag` in the error.
pub fn grace_named(
    flag: &'static str,
    value: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, InvalidDuration> {
    let duration = parse_duration(flag, value)?;
    if duration.is_zero() {
        return Ok(None);
    }
    after(flag, value, duration, now).map(Some)
}

/// How far back a listing reaches (`--since 7d`): `now - duration`; `0s` is now.
pub fn since(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, InvalidDuration> {
    since_named(SINCE_FLAG, value, now)
}

/// As [`since`], naming the value `flag` in the error.
pub fn since_named(
    flag: &'static str,
    value: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, InvalidDuration> {
    let duration = parse_duration(flag, value)?;
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| now.checked_sub_signed(delta))
        // PostgreSQL timestamps begin in 4713 BC; stay at year 1 or later.
        .filter(|at| at.timestamp() >= -62_135_596_800)
        .ok_or_else(|| invalid_duration(flag, value, "too far in the past"))
}

fn invalid_duration(flag: &'static str, value: &str, reason: impl Into<String>) -> InvalidDuration {
    InvalidDuration {
        flag,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// A humantime duration such as `90d`, `24h`, `30m` or `0s`.
fn parse_duration(flag: &'static str, value: &str) -> Result<Duration, InvalidDuration> {
    let text = value.trim();
    if text.starts_with('-') {
        return Err(invalid_duration(flag, value, "must not be negative"));
    }
    humantime::parse_duration(text)
        .map_err(|error| invalid_duration(flag, value, error.to_string()))
}

/// `now + duration`, cut to whole seconds.
fn after(
    flag: &'static str,
    value: &str,
    duration: Duration,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, InvalidDuration> {
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|delta| now.checked_add_signed(delta))
        .and_then(|at| DateTime::from_timestamp(at.timestamp(), 0))
        // PostgreSQL timestamps end in year 294276; stay far below.
        .filter(|at| at.timestamp() < 253_402_300_800)
        .ok_or_else(|| invalid_duration(flag, value, "too far in the future"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_accepts_humantime_units() {
        let now = DateTime::from_timestamp(1_700_000_000, 123_000_000).unwrap();
        for (text, seconds) in [
            ("90d", 90 * 86_400),
            ("24h", 86_400),
            ("30m", 1800),
            ("45s", 45),
        ] {
            let at = expiry(text, now).unwrap();
            assert_eq!(at.timestamp(), 1_700_000_000 + seconds, "{text}");
            assert_eq!(at.timestamp_subsec_nanos(), 0);
        }
    }

    #[test]
    fn grace_is_a_duration_and_zero_means_at_once() {
        let now = DateTime::from_timestamp(1_700_000_000, 500_000_000).unwrap();
        let at = grace("24h", now).unwrap().unwrap();
        assert_eq!(at.timestamp(), 1_700_000_000 + 86_400);
        assert_eq!(at.timestamp_subsec_nanos(), 0);
        assert_eq!(grace("0s", now).unwrap(), None);
        assert_eq!(grace(" 0s ", now).unwrap(), None);
        for text in ["-1h", "-0s", "soon", "", "1 fortnight", "100000000y"] {
            let message = grace(text, now).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("invalid --grace '{text}': ")),
                "{message}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
        let message = grace("-1h", now).unwrap_err().to_string();
        assert_eq!(message, "invalid --grace '-1h': must not be negative");
    }

    #[test]
    fn since_reaches_back_from_now() {
        let now = DateTime::from_timestamp(1_700_000_000, 500_000_000).unwrap();
        let at = since("7d", now).unwrap();
        assert_eq!(now - at, TimeDelta::days(7));
        assert_eq!(since("0s", now).unwrap(), now);
        assert_eq!(
            since_named("since", "90m", now).unwrap(),
            now - TimeDelta::minutes(90)
        );
        for text in ["-1h", "soon", "", "7", "100000000y"] {
            let message = since(text, now).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("invalid --since '{text}': ")),
                "{message}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
        let message = since_named("since", "3000y", now).unwrap_err().to_string();
        assert_eq!(message, "invalid since '3000y': too far in the past");
    }

    #[test]
    fn bad_expiry_is_one_clear_error() {
        for text in ["soon", "0s", "", "10", "100000000y"] {
            let error = expiry(text, Utc::now()).unwrap_err();
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("invalid --expires-in '{text}': ")),
                "{message}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
    }
}
