//! A rate limit: `requests_per_minute + burst` requests in each fixed one-minute window
//! (see `rate_window`). Written `<requests_per_minute>+<burst>` (`100+20`) where it
//! travels as text: the global rate-limit descriptor the gateway sends keysync.

use crate::id::Id;
use crate::subject::Subject;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Limit {
    /// At least 1: a limit of no requests is no limit at all.
    pub requests_per_minute: u32,
    pub burst: u32,
}

/// Text that is not `<requests_per_minute>+<burst>` with `requests_per_minute` at least
/// 1 and a budget that fits 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLimit;

impl fmt::Display for BadLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "not <requests_per_minute>+<burst> with requests_per_minute at least 1 and a sum below 2^32",
        )
    }
}

impl Limit {
    /// Requests allowed in one window. Parsing makes sure it fits a `u32` (what Envoy's
    /// `requests_per_unit` takes); limits built by hand saturate.
    pub fn budget(&self) -> u32 {
        self.requests_per_minute.saturating_add(self.burst)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}+{}", self.requests_per_minute, self.burst)
    }
}

impl FromStr for Limit {
    type Err = BadLimit;

    /// ASCII digits only on both sides: no sign, no spaces, no exponent.
    fn from_str(text: &str) -> Result<Self, BadLimit> {
        let (rpm, burst) = text.split_once('+').ok_or(BadLimit)?;
        let requests_per_minute = number(rpm).filter(|&rpm| rpm > 0).ok_or(BadLimit)?;
        let burst = number(burst).ok_or(BadLimit)?;
        requests_per_minute.checked_add(burst).ok_or(BadLimit)?;
        Ok(Limit {
            requests_per_minute,
            burst,
        })
    }
}

fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The limit a key runs under, and whose budget it draws on: its own (`per_key`, set
/// with `keys set-limit`) or its organization's, shared by all the org's keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KeyLimit {
    pub limit: Limit,
    pub per_key: bool,
}

impl KeyLimit {
    /// Who a request with this key is counted against.
    pub fn subject(&self, key_id: Id, org_id: Id) -> Subject {
        if self.per_key {
            Subject::Key(key_id)
        } else {
            Subject::Org(org_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests_per_minute: u32, burst: u32) -> Limit {
        Limit {
            requests_per_minute,
            burst,
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!("100+20".parse(), Ok(limit(100, 20)));
        assert_eq!(limit(100, 20).to_string(), "100+20");
        assert_eq!(limit(100, 20).budget(), 120);
        assert_eq!("5+0".parse::<Limit>().map(|l| l.budget()), Ok(5));
    }

    #[test]
    fn refuses_garbage() {
        for text in [
            "100+", "+5", "100", "", "0+5", "-1+0", "1+-1", "+1+0", "1++0", "1+0+0", " 1+0",
            "1+0 ", "1.5+0", "ten+0", "1e3+0",
        ] {
            assert_eq!(text.parse::<Limit>(), Err(BadLimit), "{text:?}");
        }
    }

    #[test]
    fn the_budget_must_fit_32_bits() {
        for text in [
            "4294967296+0",
            "99999999999999999999+0",
            "4294967295+1",
            "2147483648+2147483648",
        ] {
            assert_eq!(text.parse::<Limit>(), Err(BadLimit), "{text:?}");
        }
        assert_eq!(
            "2147483647+2147483648".parse::<Limit>().map(|l| l.budget()),
            Ok(u32::MAX)
        );
        assert_eq!(limit(u32::MAX, 5).budget(), u32::MAX, "saturates");
    }

    #[test]
    fn a_key_limit_names_its_subject() {
        let (key, org) = (Id([1; 16]), Id([2; 16]));
        let own = KeyLimit {
            limit: limit(5, 0),
            per_key: true,
        };
        assert_eq!(own.subject(key, org), Subject::Key(key));
        let shared = KeyLimit {
            per_key: false,
            ..own
        };
        assert_eq!(shared.subject(key, org), Subject::Org(org));
    }
}
