//! The one-minute windows rate limits count in, for tests that must not straddle two.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Waits until the current one-minute window has at least `room` seconds left, so the
/// requests that follow land in one window. Scheduling, not an assertion: the checks
/// that follow are on counts and headers.
pub fn enough_of_the_window_left(room: u64) {
    while 60 - unix_secs() % 60 < room {
        std::thread::sleep(Duration::from_millis(100));
    }
}
