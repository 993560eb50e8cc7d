//! The rate-limit columns of a key and its organization, as read from the database, and
//! the limit they resolve to: the key's own override when it has one (counted for that
//! key alone), else its organization's limit (one budget shared by all the org's keys),
//! else none.
//!
//! The same resolution serves the loader (what the gateway enforces) and the operator
//! listings (what `keys list` shows), so the two cannot disagree.

use keysync_contract::limit::{KeyLimit, Limit};

/// Largest `requests_per_minute` or `burst` the schema stores (PostgreSQL `integer`).
pub const MAX_LIMIT_VALUE: u32 = i32::MAX as u32;

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
    pub fn resolve(&self) -> Result<Option<KeyLimit>, InvalidLimit> {
        if let Some(rpm) = self.key_rpm {
            return Ok(Some(KeyLimit {
                limit: Limit {
                    requests_per_minute: positive("api_keys.rate_limit_rpm", rpm)?,
                    burst: non_negative("api_keys.rate_limit_burst", self.key_burst.unwrap_or(0))?,
                },
                per_key: true,
            }));
        }
        match (self.org_rpm, self.org_burst) {
            (Some(rpm), Some(burst)) => Ok(Some(KeyLimit {
                limit: Limit {
                    requests_per_minute: positive("rate_limit_configs.requests_per_minute", rpm)?,
                    burst: non_negative("rate_limit_configs.burst", burst)?,
                },
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

    fn key_limit(requests_per_minute: u32, burst: u32, per_key: bool) -> KeyLimit {
        KeyLimit {
            limit: Limit {
                requests_per_minute,
                burst,
            },
            per_key,
        }
    }

    #[test]
    fn the_key_override_wins_and_is_counted_per_key() {
        let limit = columns((Some(10), Some(2)), (Some(100), Some(20)))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(limit, key_limit(10, 2, true));
        assert_eq!(limit.limit.budget(), 12);
    }

    #[test]
    fn an_override_without_burst_has_burst_zero() {
        let limit = columns((Some(10), None), (None, None))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!((limit.limit.burst, limit.per_key), (0, true));
    }

    #[test]
    fn without_override_the_org_limit_applies_shared() {
        let limit = columns((None, None), (Some(100), Some(20)))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(limit, key_limit(100, 20, false));
        assert_eq!(limit.limit.to_string(), "100+20");
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
        assert_eq!(
            u64::from(limit.limit.budget()),
            2 * u64::from(MAX_LIMIT_VALUE)
        );
    }
}
