//! What the anomaly evaluator judges with (`KEYSYNC_ANOMALY_*`, read by
//! [`crate::config`]): how often it runs, when an hour counts as whole, how many weeks
//! make a baseline, and the thresholds of each kind.

use std::time::Duration;

/// When and over what the evaluator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnomalySettings {
    /// How often an evaluation runs (`KEYSYNC_ANOMALY_INTERVAL`).
    pub interval: Duration,
    /// How long after an hour's end it is judged whole (`KEYSYNC_ANOMALY_CLOSE_DELAY`):
    /// the gateways' flush interval plus their clocks' skew, so that every flush cut in
    /// the hour has been stored.
    pub close_delay: Duration,
    pub thresholds: Thresholds,
}

/// The thresholds of the four kinds. Checked when read: factors above 1, shares and
/// ratios between 0 and 1, floors at least 1; never NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Weeks of the same hour of the week that make the baseline
    /// (`KEYSYNC_ANOMALY_BASELINE_WEEKS`); an organization with less history is not
    /// judged.
    pub baseline_weeks: u8,
    /// A spike is at least this many times the baseline's median
    /// (`KEYSYNC_ANOMALY_SPIKE_FACTOR`) ...
    pub spike_factor: f64,
    /// ... and at least this many requests in the hour (`KEYSYNC_ANOMALY_SPIKE_FLOOR`).
    pub spike_floor: i64,
    /// An hour whose median is at least this many requests is a busy one, whose drop
    /// is judged (`KEYSYNC_ANOMALY_DROP_BUSY_FLOOR`) ...
    pub drop_busy_floor: i64,
    /// ... and a drop is at most this share of the median (`KEYSYNC_ANOMALY_DROP_RATIO`).
    pub drop_ratio: f64,
    /// A jump of refusals or upstream 5xx is a share of the hour's requests at least
    /// this many times the baseline's share (`KEYSYNC_ANOMALY_SHARE_FACTOR`; capped at
    /// halfway from the baseline's share to all requests) ...
    pub share_factor: f64,
    /// ... and at least this share (`KEYSYNC_ANOMALY_SHARE_MIN`) ...
    pub share_min: f64,
    /// ... of at least this many requests (`KEYSYNC_ANOMALY_SHARE_FLOOR`).
    pub share_floor: i64,
}

// Never NaN (checked when read), so equality is total.
impl Eq for Thresholds {}

impl Default for AnomalySettings {
    fn default() -> Self {
        AnomalySettings {
            interval: Duration::from_secs(60),
            // The gateways flush every 10 s; the rest is for skewed clocks and retries.
            close_delay: Duration::from_secs(60),
            thresholds: Thresholds::default(),
        }
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            baseline_weeks: 4,
            spike_factor: 5.0,
            spike_floor: 1_000,
            drop_busy_floor: 1_000,
            drop_ratio: 0.05,
            share_factor: 3.0,
            share_min: 0.05,
            share_floor: 100,
        }
    }
}

/// The most baseline weeks (about three months of the rollup).
pub const MAX_BASELINE_WEEKS: u8 = 12;

/// A factor (`KEYSYNC_ANOMALY_*_FACTOR`): a decimal above 1, at most 1000.
pub fn parse_factor(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(factor) if factor > 1.0 && factor <= 1000.0 => Ok(factor),
        _ => Err("expected a number above 1 and at most 1000, such as 5 or 2.5".to_owned()),
    }
}

/// A share (`KEYSYNC_ANOMALY_DROP_RATIO`, `..._SHARE_MIN`): a percentage (`5%`) or a
/// fraction (`0.05`), above 0 and below 1.
pub fn parse_share(value: &str) -> Result<f64, String> {
    let share = match value.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|percent| percent / 100.0),
        None => value.parse::<f64>(),
    };
    match share {
        Ok(share) if share > 0.0 && share < 1.0 => Ok(share),
        _ => Err(
            "expected a percentage above 0% and below 100% (5%), or a fraction (0.05)".to_owned(),
        ),
    }
}

/// A floor of requests in an hour (`KEYSYNC_ANOMALY_*_FLOOR`): a whole number, at
/// least 1.
pub fn parse_floor(value: &str) -> Result<i64, String> {
    match value.parse::<i64>() {
        Ok(floor) if floor >= 1 => Ok(floor),
        _ => Err("expected a whole number of requests, at least 1".to_owned()),
    }
}

/// `KEYSYNC_ANOMALY_BASELINE_WEEKS`: 1 to [`MAX_BASELINE_WEEKS`].
pub fn parse_weeks(value: &str) -> Result<u8, String> {
    match value.parse::<u8>() {
        Ok(weeks) if (1..=MAX_BASELINE_WEEKS).contains(&weeks) => Ok(weeks),
        _ => Err(format!(
            "expected a whole number of weeks from 1 to {MAX_BASELINE_WEEKS}"
        )),
    }
}

/// `KEYSYNC_ANOMALY_CLOSE_DELAY`: a duration from 0s to under an hour.
pub fn parse_close_delay(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value) {
        Ok(delay) if delay < Duration::from_secs(3600) => Ok(delay),
        Ok(_) => Err("must be shorter than an hour".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

/// `KEYSYNC_ANOMALY_INTERVAL`: `off`, or a duration of at least a second.
pub fn parse_interval(value: &str) -> Result<Option<Duration>, String> {
    if value == "off" {
        return Ok(None);
    }
    match humantime::parse_duration(value) {
        Ok(interval) if interval >= Duration::from_secs(1) => Ok(Some(interval)),
        _ => Err("expected off, or a duration of at least 1s such as 1m".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_in_their_units_and_bounds() {
        assert_eq!(parse_factor("5"), Ok(5.0));
        assert_eq!(parse_factor("2.5"), Ok(2.5));
        for bad in ["1", "0.5", "-3", "1001", "NaN", "inf", "lots"] {
            assert!(parse_factor(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_share("5%"), Ok(0.05));
        assert_eq!(parse_share("0.05"), Ok(0.05));
        assert_eq!(parse_share("12.5 %"), Ok(0.125));
        for bad in ["0%", "100%", "1", "0", "5", "-1%", "NaN%", "half"] {
            assert!(parse_share(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_floor("1000"), Ok(1000));
        for bad in ["0", "-1", "1.5", "many"] {
            assert!(parse_floor(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_weeks("4"), Ok(4));
        for bad in ["0", "13", "four"] {
            assert!(parse_weeks(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_close_delay("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_close_delay("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_close_delay("1h").is_err());
        assert!(parse_close_delay("soon").is_err());
        assert_eq!(parse_interval("off"), Ok(None));
        assert_eq!(parse_interval("1m"), Ok(Some(Duration::from_secs(60))));
        for bad in ["0s", "500ms", "never", "OFF"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
