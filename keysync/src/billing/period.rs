//! A billing period: a calendar month in UTC, `[first of the month, first of the next)`,
//! named `2026-12`. Invoices follow calendar months whatever an organization's quota
//! reset day is (a quota limits use; a plan prices it).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};

use crate::quota::period::Period;

/// One month, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BillingPeriod {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Text that is not a month.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {name} '{value}': expected a month such as 2026-12")]
pub struct InvalidPeriod {
    pub name: &'static str,
    pub value: String,
}

impl BillingPeriod {
    /// The month that contains `at`.
    pub fn containing(at: DateTime<Utc>) -> BillingPeriod {
        // A quota period with reset day 1 is the calendar month.
        let month = Period::containing(1, at);
        BillingPeriod {
            start: month.start,
            end: month.end,
        }
    }

    /// The month `text` names (`2026-12`); `name` is the parameter's in the error.
    pub fn parse(name: &'static str, text: &str) -> Result<BillingPeriod, InvalidPeriod> {
        let invalid = || InvalidPeriod {
            name,
            value: text.to_owned(),
        };
        let (year, month) = text.trim().split_once('-').ok_or_else(invalid)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(invalid());
        }
        let year: i32 = year.parse().map_err(|_| invalid())?;
        let month: u32 = month.parse().map_err(|_| invalid())?;
        let first = NaiveDate::from_ymd_opt(year, month, 1)
            .and_then(|day| day.and_hms_opt(0, 0, 0))
            .ok_or_else(invalid)?;
        Ok(BillingPeriod::containing(first.and_utc()))
    }

    /// The month after this one.
    pub fn next(self) -> BillingPeriod {
        BillingPeriod::containing(self.end)
    }

    /// The month before this one.
    pub fn previous(self) -> BillingPeriod {
        BillingPeriod::containing(self.start - TimeDelta::hours(1))
    }

    /// Hours in the month (672 to 744): the denominator of a part-month's share.
    pub fn hours(self) -> i64 {
        (self.end - self.start).num_hours()
    }
}

impl fmt::Display for BillingPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.start.year(), self.start.month())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn a_period_is_a_calendar_month_in_utc() {
        let december = BillingPeriod::parse("--period", "2026-12").unwrap();
        assert_eq!(december.start, at("2026-12-01T00:00:00Z"));
        assert_eq!(december.end, at("2027-01-01T00:00:00Z"));
        assert_eq!(december.to_string(), "2026-12");
        assert_eq!(december.hours(), 744);
        assert_eq!(december.next().to_string(), "2027-01");
        assert_eq!(december.previous().to_string(), "2026-11");
        assert_eq!(BillingPeriod::parse("p", "2027-02").unwrap().hours(), 672);
        assert_eq!(
            BillingPeriod::containing(at("2026-12-31T23:59:59Z")),
            december
        );
        assert_eq!(
            BillingPeriod::containing(at("2027-01-01T00:00:00Z")),
            december.next()
        );
    }

    #[test]
    fn anything_but_a_month_is_refused() {
        for bad in [
            "2026-13",
            "2026-1",
            "26-12",
            "2026-12-01",
            "december",
            "",
            "2026-00",
        ] {
            assert_eq!(
                BillingPeriod::parse("--period", bad)
                    .unwrap_err()
                    .to_string(),
                format!("invalid --period '{bad}': expected a month such as 2026-12")
            );
        }
    }
}
