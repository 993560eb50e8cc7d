//! The fixed one-minute windows limits are counted in: aligned to the clock (window
//! number = unix seconds / 60), so every keysync process sharing a Redis, and every
//! gateway, agrees on where a window starts and ends without talking to the others.
//!
//! A subject may use its whole budget (`requests_per_minute + burst`) in any window;
//! the count starts again from zero when the clock enters the next minute.

/// Length of a window: the same as the filter's local mode.
pub const WINDOW_SECONDS: u64 = keysync_contract::rate_limit_headers::WINDOW_SECS;

/// How long a window's counter lives in Redis after its first hit: two windows, so it
/// outlasts its own window whatever second that hit came in, and then goes by itself.
pub const COUNTER_TTL_SECONDS: u64 = 2 * WINDOW_SECONDS;

/// The window a moment falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `unix_seconds / 60`: names the window's counters.
    pub number: u64,
    /// Whole seconds until the next window starts, 1 to 60: what `Retry-After` and the
    /// `t=` of the `RateLimit` header say.
    pub seconds_left: u64,
}

impl Window {
    pub fn at(unix_seconds: u64) -> Window {
        Window {
            number: unix_seconds / WINDOW_SECONDS,
            seconds_left: WINDOW_SECONDS - unix_seconds % WINDOW_SECONDS,
        }
    }
}

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
    fn windows_are_aligned_to_the_minute() {
        assert_eq!(
            Window::at(1_700_000_040),
            Window {
                number: 28_333_334,
                seconds_left: 60
            }
        );
        assert_eq!(Window::at(1_700_000_041).seconds_left, 59);
        assert_eq!(Window::at(1_700_000_099).seconds_left, 1);
        assert_eq!(Window::at(1_700_000_099).number, 28_333_334);
        assert_eq!(
            Window::at(0),
            Window {
                number: 0,
                seconds_left: 60
            }
        );
    }

    #[test]
    fn the_boundary_second_starts_a_new_window() {
        let last = Window::at(119);
        let first = Window::at(120);
        assert_eq!((last.number, last.seconds_left), (1, 1));
        assert_eq!((first.number, first.seconds_left), (2, 60));
    }

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
    const _: () = assert!(COUNTER_TTL_SECONDS > WINDOW_SECONDS);
    const _: () = assert!(COUNTER_TTL_SECONDS <= 3 * WINDOW_SECONDS);
}
