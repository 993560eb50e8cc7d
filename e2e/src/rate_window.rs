//! Where the clock stands in the contract's one-minute rate-limit windows
//! ([`keysync_contract::rate_window`]), for tests and benchmarks whose requests must land
//! in one window, or start on a fresh one.

use std::ops::RangeInclusive;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keysync_contract::rate_window::{Window, WINDOW_SECS};

use crate::poll;

/// Time since the epoch, by the clock the gateway counts windows with.
fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
}

/// The window the clock is in now.
fn current() -> Window {
    Window::at(since_epoch().as_secs())
}

/// Waits until the current window has a number of seconds left in `seconds_left`, and
/// returns it. Scheduling, not an assertion: it panics only if that never happens within
/// two windows, which can only mean a range nothing satisfies or a clock gone wrong.
pub fn wait_until_seconds_left(seconds_left: RangeInclusive<u64>) -> Window {
    poll::eventually(
        &format!("a rate-limit window with {seconds_left:?} seconds left"),
        Duration::from_secs(2 * WINDOW_SECS),
        current,
        |window| seconds_left.contains(&window.seconds_left),
    )
}

/// Waits until the current window has at least `room` seconds left, so the requests
/// that follow land in one window. The checks that follow are on counts and headers.
pub fn enough_of_the_window_left(room: u64) {
    wait_until_seconds_left(room..=WINDOW_SECS);
}

/// Sleeps into the next window, half a second past its start, so a load started now
/// begins on a full budget and has nearly the whole window to finish in.
pub fn sleep_into_the_next_window() {
    let now = since_epoch();
    let to_next = Duration::from_secs(Window::at(now.as_secs()).seconds_left)
        .saturating_sub(Duration::from_nanos(u64::from(now.subsec_nanos())));
    std::thread::sleep(to_next + Duration::from_millis(500));
}
