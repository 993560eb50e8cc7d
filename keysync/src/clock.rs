//! The clock keysync judges time-bound things against: key expiry (unix seconds, as key
//! records carry it) and the rate-limit windows. One reading of the system clock, so
//! every part agrees on what "now" is.

/// Unix seconds now.
pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}
