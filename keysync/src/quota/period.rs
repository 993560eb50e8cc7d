//! A quota's month: from its reset day (1 to 28, UTC midnight) to the same day of the
//! next month. Days past 28 are refused so that every month has the day.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// The earliest and latest reset days.
pub const RESET_DAYS: std::ops::RangeInclusive<u8> = 1..=28;

/// One quota period, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Period {
    /// The period with reset day `reset_day` that contains `now`. A day out of range is
    /// taken as the nearest valid one (callers check it first; this never panics).
    pub fn containing(reset_day: u8, now: DateTime<Utc>) -> Period {
        let day = u32::from(reset_day.clamp(*RESET_DAYS.start(), *RESET_DAYS.end()));
        let (year, month) = (now.year(), now.month());
        let this_month = midnight(year, month, day);
        let start = if this_month <= now {
            this_month
        } else {
            let (year, month) = previous_month(year, month);
            midnight(year, month, day)
        };
        let (next_year, next_month) = next_month(start.year(), start.month());
        Period {
            start,
            end: midnight(next_year, next_month, day),
        }
    }

    /// Whole seconds from `now` until the period ends (at least 1 while it has not).
    pub fn seconds_left(&self, now: DateTime<Utc>) -> u64 {
        u64::try_from((self.end - now).num_seconds().max(1)).unwrap_or(1)
    }
}

fn previous_month(year: i32, month: u32) -> (i32, u32) {
    if month == 1 {
        (year - 1, 12)
    } else {
        (year, month - 1)
    }
}

fn next_month(year: i32, month: u32) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

/// Midnight UTC of a date that exists (days 1 to 28 exist in every month).
fn midnight(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|naive| Utc.from_utc_datetime(&naive))
        .unwrap_or(DateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_first_of_the_month_by_default() {
        let period = Period::containing(1, at("2026-12-01T13:45:00Z"));
        assert_eq!(period.start, at("2026-12-01T00:00:00Z"));
        assert_eq!(period.end, at("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn before_the_reset_day_the_period_began_last_month() {
        let period = Period::containing(15, at("2026-01-14T23:59:59Z"));
        assert_eq!(period.start, at("2025-12-15T00:00:00Z"));
        assert_eq!(period.end, at("2026-01-15T00:00:00Z"));
        let period = Period::containing(15, at("2026-01-15T00:00:00Z"));
        assert_eq!(period.start, at("2026-01-15T00:00:00Z"));
        assert_eq!(period.end, at("2026-02-15T00:00:00Z"));
    }

    #[test]
    fn day_28_exists_in_february_and_days_out_of_range_are_clamped() {
        let period = Period::containing(28, at("2027-02-28T00:00:01Z"));
        assert_eq!(period.end, at("2027-03-28T00:00:00Z"));
        assert_eq!(
            Period::containing(31, at("2027-02-28T12:00:00Z")),
            Period::containing(28, at("2027-02-28T12:00:00Z"))
        );
        assert_eq!(
            Period::containing(0, at("2027-02-28T12:00:00Z")).start,
            at("2027-02-01T00:00:00Z")
        );
    }

    #[test]
    fn seconds_left_counts_down_to_the_end() {
        let period = Period::containing(1, at("2026-12-31T23:59:00Z"));
        assert_eq!(period.seconds_left(at("2026-12-31T23:59:00Z")), 60);
        assert_eq!(period.seconds_left(at("2027-01-01T00:00:00Z")), 1);
    }
}
