//! When keysync last confirmed its key set against PostgreSQL, seen from outside: a
//! thread reads `keysync_confirmed_age_seconds` from keysync's `/metrics` (computed when
//! it is read, and served while PostgreSQL is gone) every [`PERIOD`], and turns each
//! reading into the moment of the confirmation it shows. The promise counts
//! `max_staleness` from that moment ("fresh" means confirmed against PostgreSQL), so a
//! case can hold the gateway to it instead of to the start of a fault.
//!
//! A reading is stamped when its answer arrived, so the moment it gives is never earlier
//! than the real one (by the read's round trip at most): a bound counted from it is never
//! tighter than the promise.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between two readings.
pub const PERIOD: Duration = Duration::from_millis(100);

/// Reads keysync's confirmation age until [`ConfirmationWatch::finish`].
pub struct ConfirmationWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Reading>>,
}

/// One reading: when it arrived, and the confirmation it showed.
#[derive(Clone, Copy, Debug)]
struct Reading {
    at: Instant,
    confirmed: Instant,
}

impl ConfirmationWatch {
    /// Starts reading the `/metrics` of the keysync whose admin port is `http`.
    pub fn start(http: SocketAddr) -> ConfirmationWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("confirmations".into())
            .spawn(move || {
                let mut readings = Vec::new();
                while !stopped.load(Ordering::Relaxed) {
                    if let Some(reading) = read(http) {
                        readings.push(reading);
                    }
                    std::thread::sleep(PERIOD);
                }
                readings
            })
            .expect("start the confirmation reader");
        ConfirmationWatch { stop, thread }
    }

    /// Stops reading; what was read.
    pub fn finish(self) -> Confirmations {
        self.stop.store(true, Ordering::SeqCst);
        Confirmations {
            readings: self
                .thread
                .join()
                .expect("the confirmation reader panicked"),
        }
    }
}

/// What a [`ConfirmationWatch`] read.
pub struct Confirmations {
    readings: Vec<Reading>,
}

impl Confirmations {
    /// The latest confirmation shown by a reading taken in `[from, to)`: with PostgreSQL
    /// unreachable from `from` on, the last one keysync (and so any gateway) had.
    pub fn last_shown_between(&self, from: Instant, to: Instant) -> Option<Instant> {
        self.readings
            .iter()
            .filter(|reading| reading.at >= from && reading.at < to)
            .map(|reading| reading.confirmed)
            .max()
    }

    /// Readings taken in `[from, to)`.
    pub fn count_between(&self, from: Instant, to: Instant) -> usize {
        self.readings
            .iter()
            .filter(|reading| reading.at >= from && reading.at < to)
            .count()
    }
}

fn read(http: SocketAddr) -> Option<Reading> {
    let text = crate::http::get(http, "/metrics", &[]).ok()?.text();
    let at = Instant::now();
    let age = confirmed_age(&text)?;
    Some(Reading {
        at,
        confirmed: at.checked_sub(age)?,
    })
}

/// `keysync_confirmed_age_seconds` in a `/metrics` text.
fn confirmed_age(metrics: &str) -> Option<Duration> {
    let seconds: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("keysync_confirmed_age_seconds "))?
        .trim()
        .parse()
        .ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_age_is_read_from_the_metrics_text() {
        let text = "# TYPE keysync_confirmed_age_seconds gauge\n\
                    keysync_confirmed_age_seconds 1.25\n\
                    keysync_ready 1\n# EOF\n";
        assert_eq!(confirmed_age(text), Some(Duration::from_millis(1250)));
        assert_eq!(confirmed_age("keysync_ready 1\n"), None);
    }

    #[test]
    fn the_last_confirmation_is_taken_from_readings_in_the_window() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let confirmations = Confirmations {
            readings: vec![
                Reading {
                    at: at(1_000),
                    confirmed: at(900),
                },
                Reading {
                    at: at(2_000),
                    confirmed: at(1_900),
                },
                Reading {
                    at: at(3_000),
                    confirmed: at(1_900),
                },
                Reading {
                    at: at(9_000),
                    confirmed: at(8_950),
                },
            ],
        };
        assert_eq!(
            confirmations.last_shown_between(at(1_500), at(5_000)),
            Some(at(1_900))
        );
        assert_eq!(confirmations.count_between(at(1_500), at(5_000)), 2);
        assert_eq!(confirmations.last_shown_between(at(4_000), at(5_000)), None);
    }
}
