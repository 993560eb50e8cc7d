//! The rate limit a key record carries: requests per one-minute window plus a burst,
//! taken from the key's own override when it has one (counted for that key alone) or
//! else from its organization's limit (one budget shared by all the org's keys).
//!
//! The same resolution serves the loader (what the gateway enforces) and the operator
//! listings (what `keys list` shows), so the two cannot disagree.

use std::fmt;

use serde::Serialize;

/// Largest `requests_per_minute` or `burst` the schema stores (PostgreSQL `integer`).
pub const MAX_LIMIT_VALUE: u32 = i32::MAX as u32;

/// A request budget per fixed one-minute window: `requests_per_minute + burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RateLimit {
    pub requests_per_minute: u32,
    pub burst: u32,
    /// The key's own override, counted per key; otherwise the organization's limit,
    /// whose budget all the organization's keys share.
    pub per_key: bool,
}

impl RateLimit {
    /// Requests allowed in one window.
    pub fn budget(&self) -> u64 {
        u64::from(self.requests_per_minute) + u64::from(self.burst)
    }

    /// Who shares the budget: `key` or `org`.
    pub fn scope(&self) -> &'static str {
        if self.per_key {
            "key"
        } else {
            "org"
        }
    }
}

/// `100/min+20`, as the operator listings show a limit.
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/min+{}", self.requests_per_minute, self.burst)
    }
}

/// A stored limit column outside what the schema's checks allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{column} is {value}")]
pub struct InvalidLimit {
    pub column: &'static str,
    pub value: i32,
}

/// The rate-limit columns of one key and its organization, as read from the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct LimitColumns {
    /// `api_keys.rate_limit_rpm`: set when the key has its own limit.
    pub key_rpm: Option<i32>,
    /// `api_keys.rate_limit_burst`: NULL means 0 when `key_rpm` is set.
    pub key_burst: Option<i32>,
    /// `rate_limit_configs.requests_per_minute` of the key's organization.
    pub org_rpm: Option<i32>,
    /// `rate_limit_configs.burst` of the key's organization.
    pub org_burst: Option<i32>,
}

impl LimitColumns {
    /// The key's override when it has one, else the organization's limit, else none.
    pub fn resolve(&self) -> Result<Option<RateLimit>, InvalidLimit> {
        if let Some(rpm) = self.key_rpm {
            return Ok(Some(RateLimit {
                requests_per_minute: positive("api_keys.rate_limit_rpm", rpm)?,
                burst: non_negative("api_keys.rate_limit_burst", self.key_burst.unwrap_or(0))?,
                per_key: true,
            }));
        }
        match (self.org_rpm, self.org_burst) {
            (Some(rpm), Some(burst)) => Ok(Some(RateLimit {
                requests_per_minute: positive("rate_limit_configs.requests_per_minute", rpm)?,
                burst: non_negative("rate_limit_configs.burst", burst)?,
                per_key: false,
            })),
            _ => Ok(None),
        }
    }
}

fn positive(column: &'static str, value: i32) -> Result<u32, InvalidLimit> {
    u32::try_from(value)
        .ok()
        .filter(|&value| value > 0)
        .ok_or(InvalidLimit { column, value })
}

fn non_negative(column: &'static str, value: i32) -> Result<u32, InvalidLimit> {
    u32::try_from(value).map_err(|_| InvalidLimit { column, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(key: (Option<i32>, Option<i32>), org: (Option<i32>, Option<i32>)) -> LimitColumns {
        LimitColumns {
            key_rpm: key.0,
            key_burst: key.1,
            org_rpm: org.0,
            org_burst: org.1,
        }
    }

    #[test]
    fn the_key_override_wins_and_is_counted_per_key() {
        let limit = columns((Some(10), Some(2)), (Some(100), Some(20)))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(
            limit,
            RateLimit {
                requests_per_minute: 10,
                burst: 2,
                per_key: true
            }
        );
        assert_eq!(limit.budget(), 12);
        assert_eq!(limit.scope(), "key");
    }

    #[test]
    fn an_override_without_burst_has_burst_zero() {
        let limit = columns((Some(10), None), (None, None))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!((limit.burst, limit.per_key), (0, true));
    }

    #[test]
    fn without_override_the_org_limit_applies_shared() {
        let limit = columns((None, None), (Some(100), Some(20)))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(
            limit,
            RateLimit {
                requests_per_minute: 100,
                burst: 20,
                per_key: false
            }
        );
        assert_eq!(limit.scope(), "org");
        assert_eq!(limit.to_string(), "100/min+20");
    }

    #[test]
    fn no_override_and_no_org_limit_is_none() {
        assert_eq!(LimitColumns::default().resolve().unwrap(), None);
    }

    #[test]
    fn impossible_values_are_errors() {
        let error = columns((Some(0), None), (None, None))
            .resolve()
            .unwrap_err();
        assert_eq!(error.to_string(), "api_keys.rate_limit_rpm is 0");
        assert!(columns((Some(5), Some(-1)), (None, None))
            .resolve()
            .is_err());
        assert!(columns((None, None), (Some(-3), Some(0)))
            .resolve()
            .is_err());
        assert!(columns((None, None), (Some(3), Some(-1)))
            .resolve()
            .is_err());
    }

    #[test]
    fn the_largest_budget_fits() {
        let limit = columns((Some(i32::MAX), Some(i32::MAX)), (None, None))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(limit.budget(), 2 * u64::from(MAX_LIMIT_VALUE));
    }
}
