//! A subject's standing in a window, and how long its Redis counter lives. The windows
//! themselves (fixed minutes aligned to the clock) are the contract's, shared with the
//! filter's local mode: `keysync_contract::rate_window`.
//!
//! A subject may use its whole budget (`requests_per_minute + burst`) in any window;
//! the count starts again from zero when the clock enters the next minute.

pub use keysync_contract::rate_window::Window;
use keysync_contract::rate_window::WINDOW_SECS;

/// How long a window's counter lives in Redis after its first hit: two windows, so it
/// outlasts its own window whatever second that hit came in, and then goes by itself.
pub const COUNTER_TTL_SECONDS: u64 = 2 * WINDOW_SECS;

/// One subject's standing in a window, after the current request was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Requests allowed in the window: `requests_per_minute + burst`.
    pub budget: u64,
    /// Hits counted in the window so far, this request's included.
    pub count: u64,
}

impl Usage {
    /// The request that brought the count past the budget, and every one after it, is
    /// over the limit: a budget of 100 lets exactly 100 through.
    pub fn over_limit(&self) -> bool {
        self.count > self.budget
    }

    /// Requests still allowed in this window.
    pub fn remaining(&self) -> u64 {
        self.budget.saturating_sub(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_budget_is_allowed() {
        let budget = 100 + 20;
        let at = |count| Usage { budget, count };
        assert!(!at(1).over_limit());
        assert_eq!(at(1).remaining(), 119);
        assert!(!at(120).over_limit());
        assert_eq!(at(120).remaining(), 0);
        assert!(at(121).over_limit());
        assert_eq!(at(121).remaining(), 0);
        assert_eq!(at(u64::MAX).remaining(), 0);
    }

    // A counter outlives its window, and not by much.
    const _: () = assert!(COUNTER_TTL_SECONDS > WINDOW_SECS);
    const _: () = assert!(COUNTER_TTL_SECONDS <= 3 * WINDOW_SECS);
}
