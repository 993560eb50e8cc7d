//! The fixed one-minute windows rate limits are counted in, in both modes: aligned to the
//! clock (window number = unix seconds / 60), so every worker, every Envoy and every
//! keysync process agrees on where a window starts and ends without talking to the others.

/// Length of a window in seconds.
pub const WINDOW_SECS: u64 = 60;

/// The window a moment falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `unix_seconds / 60`: names the window's counters.
    pub number: u64,
    /// Whole seconds until the next window starts, 1 to 60: what `Retry-After` and the
    /// `reset` of the `RateLimit` header say.
    pub seconds_left: u64,
}

impl Window {
    pub fn at(unix_seconds: u64) -> Window {
        Window {
            number: unix_seconds / WINDOW_SECS,
            seconds_left: WINDOW_SECS - unix_seconds % WINDOW_SECS,
        }
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
}
