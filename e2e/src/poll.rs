//! Waiting for something to happen, bounded by a deadline: the harness and the tests look
//! again and again until a condition holds, and on timeout report what they saw last,
//! instead of sleeping for a while and hoping it happened meanwhile.

use std::fmt::Debug;
use std::thread;
use std::time::{Duration, Instant};

/// How long a test waits for something that should happen within a few seconds.
/// Generous: the test machines have 2 shared, noisy cores.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// How long to wait between two looks, unless the caller says otherwise.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// Calls `look` until it returns `Ok` and returns that. `look` answers `Err` with what it
/// saw while the wait goes on; once `deadline` has passed, that last `Err` is returned.
/// `look` runs at least once, and once more at the deadline, with `interval` (or less)
/// between two calls; it may also panic to end the wait at once (a process that exited).
pub fn until<T, S>(
    deadline: Instant,
    interval: Duration,
    mut look: impl FnMut() -> Result<T, S>,
) -> Result<T, S> {
    loop {
        let seen = match look() {
            Ok(done) => return Ok(done),
            Err(seen) => seen,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(seen);
        }
        thread::sleep(interval.min(deadline - now));
    }
}

/// [`until`] `timeout` from now.
pub fn within<T, S>(
    timeout: Duration,
    interval: Duration,
    look: impl FnMut() -> Result<T, S>,
) -> Result<T, S> {
    until(Instant::now() + timeout, interval, look)
}

/// Calls `look` every [`INTERVAL`] until what it returns satisfies `done`, and returns
/// that value. Panics after `timeout`, naming `what` was awaited and the last value seen.
pub fn eventually<V: Debug>(
    what: &str,
    timeout: Duration,
    mut look: impl FnMut() -> V,
    done: impl Fn(&V) -> bool,
) -> V {
    within(timeout, INTERVAL, || {
        let value = look();
        if done(&value) {
            Ok(value)
        } else {
            Err(value)
        }
    })
    .unwrap_or_else(|last| panic!("{what}: not within {timeout:?}; last saw {last:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_success() {
        let mut calls = 0;
        let found = within(DEADLINE, Duration::ZERO, || {
            calls += 1;
            if calls == 3 {
                Ok("third")
            } else {
                Err(calls)
            }
        });
        assert_eq!(found, Ok("third"));
        assert_eq!(calls, 3);
    }

    #[test]
    fn reports_the_last_thing_seen_after_the_deadline() {
        let started = Instant::now();
        let mut calls = 0;
        let outcome: Result<(), u32> = within(Duration::from_millis(120), INTERVAL, || {
            calls += 1;
            Err(calls)
        });
        assert!(started.elapsed() >= Duration::from_millis(120));
        assert_eq!(outcome, Err(calls));
        assert!(calls >= 3, "looked {calls} times");
    }

    #[test]
    fn looks_once_even_when_the_deadline_has_passed() {
        let mut calls = 0;
        let outcome: Result<(), ()> = until(Instant::now(), INTERVAL, || {
            calls += 1;
            Err(())
        });
        assert_eq!(outcome, Err(()));
        assert_eq!(calls, 1);
    }

    #[test]
    fn eventually_returns_the_value_that_satisfied_it() {
        let mut n = 0;
        let value = eventually(
            "n to reach 2",
            DEADLINE,
            || {
                n += 1;
                n
            },
            |&n| n >= 2,
        );
        assert_eq!(value, 2);
    }

    #[test]
    #[should_panic(expected = "the answer: not within 50ms; last saw 41")]
    fn eventually_panics_with_what_it_last_saw() {
        eventually("the answer", Duration::from_millis(50), || 41, |&n| n == 42);
    }
}
