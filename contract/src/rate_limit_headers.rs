//! The rate-limit response headers, one form for local and global mode, as in the IETF
//! draft's dictionary form (draft-ietf-httpapi-ratelimit-headers-07): a single
//! `RateLimit` field carries the limit, what is left and when the window resets, so an
//! allowed response pays for one header (each response header the filter sets is a host
//! call, microseconds each); the 429 adds `RateLimit-Policy` and `Retry-After`.

use crate::rate_window::WINDOW_SECS;

/// On every response of a request counted against a limit.
pub const RATELIMIT_HEADER: &str = "ratelimit";
/// On the 429 only: the quota policies that applied.
pub const POLICY_HEADER: &str = "ratelimit-policy";
/// On the 429 only: seconds until the window ends.
pub const RETRY_AFTER_HEADER: &str = "retry-after";

/// `limit=100, remaining=42, reset=17`: the budget of the window, what is left of it and
/// the seconds until it ends.
pub fn ratelimit(limit: u64, remaining: u64, reset_secs: u64) -> String {
    format!("limit={limit}, remaining={remaining}, reset={reset_secs}")
}

/// `100;w=60`: one item of `RateLimit-Policy` (several are joined with ", ").
pub fn policy_item(limit: u64) -> String {
    format!("{limit};w={WINDOW_SECS}")
}

/// `10000;w=2592000`: a policy item with its own window (a monthly quota's period).
pub fn policy_item_over(limit: u64, window_secs: u64) -> String {
    format!("{limit};w={window_secs}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_forms() {
        assert_eq!(ratelimit(100, 42, 17), "limit=100, remaining=42, reset=17");
        assert_eq!(ratelimit(3, 0, 60), "limit=3, remaining=0, reset=60");
        assert_eq!(policy_item(120), "120;w=60");
        assert_eq!(policy_item_over(10_000, 2_678_400), "10000;w=2678400");
    }
}
