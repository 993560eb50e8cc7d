//! Keeps a complaint that may repeat on every request (Redis down, a malformed
//! descriptor) to one log line per period, counting the ones it held back so the next
//! line can say how many there were.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a repeated complaint may be logged.
pub const LOG_PERIOD: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct LogThrottle {
    period: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_logged: Option<Instant>,
    held_back: u64,
}

impl LogThrottle {
    pub fn new(period: Duration) -> Self {
        LogThrottle {
            period,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether to log an occurrence at `now`: `Some(n)` with the number of occurrences
    /// held back since the last logged one, or `None` to stay quiet.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = state
            .last_logged
            .is_none_or(|last| now.saturating_duration_since(last) >= self.period);
        if due {
            state.last_logged = Some(now);
            Some(std::mem::take(&mut state.held_back))
        } else {
            state.held_back += 1;
            None
        }
    }

    /// Starts over: the next occurrence is logged at once (after a recovery, a new
    /// failure is news).
    pub fn reset(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = State::default();
    }
}

/// `; N more since the last report` for a log line, or nothing.
pub fn held_back_note(held_back: u64) -> String {
    if held_back == 0 {
        String::new()
    } else {
        format!("; {held_back} more since the last report")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_then_the_count_of_the_rest() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.admit(start), Some(0));
        assert_eq!(throttle.admit(start + Duration::from_secs(1)), None);
        assert_eq!(throttle.admit(start + Duration::from_secs(9)), None);
        assert_eq!(throttle.admit(start + Duration::from_secs(10)), Some(2));
        assert_eq!(throttle.admit(start + Duration::from_secs(11)), None);
        throttle.reset();
        assert_eq!(throttle.admit(start + Duration::from_secs(12)), Some(0));
    }

    #[test]
    fn the_note_says_how_many_were_held_back() {
        assert_eq!(held_back_note(0), "");
        assert_eq!(held_back_note(3), "; 3 more since the last report");
    }
}
