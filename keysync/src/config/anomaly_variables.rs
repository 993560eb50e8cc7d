//! The `KEYSYNC_ANOMALY_*` variables: whether `serve` judges usage for anomalies, and
//! with which thresholds.

use crate::anomaly::settings::{self as anomaly, AnomalySettings, Thresholds};

use super::{read, ConfigError, Environment};

pub const ANOMALY_INTERVAL: &str = "KEYSYNC_ANOMALY_INTERVAL";
pub const ANOMALY_CLOSE_DELAY: &str = "KEYSYNC_ANOMALY_CLOSE_DELAY";
pub const ANOMALY_BASELINE_WEEKS: &str = "KEYSYNC_ANOMALY_BASELINE_WEEKS";
pub const ANOMALY_SPIKE_FACTOR: &str = "KEYSYNC_ANOMALY_SPIKE_FACTOR";
pub const ANOMALY_SPIKE_FLOOR: &str = "KEYSYNC_ANOMALY_SPIKE_FLOOR";
pub const ANOMALY_DROP_BUSY_FLOOR: &str = "KEYSYNC_ANOMALY_DROP_BUSY_FLOOR";
pub const ANOMALY_DROP_RATIO: &str = "KEYSYNC_ANOMALY_DROP_RATIO";
pub const ANOMALY_SHARE_FACTOR: &str = "KEYSYNC_ANOMALY_SHARE_FACTOR";
pub const ANOMALY_SHARE_MIN: &str = "KEYSYNC_ANOMALY_SHARE_MIN";
pub const ANOMALY_SHARE_FLOOR: &str = "KEYSYNC_ANOMALY_SHARE_FLOOR";

/// `KEYSYNC_ANOMALY_INTERVAL` (`off`: no detection), with the close delay and the
/// thresholds, which need detection on.
pub(super) fn read_anomaly(env: &impl Environment) -> Result<Option<AnomalySettings>, ConfigError> {
    let defaults = AnomalySettings::default();
    let interval = read(
        env,
        ANOMALY_INTERVAL,
        Some(defaults.interval),
        anomaly::parse_interval,
    )?;
    let close_delay = read(
        env,
        ANOMALY_CLOSE_DELAY,
        defaults.close_delay,
        anomaly::parse_close_delay,
    )?;
    let fallback = defaults.thresholds;
    let thresholds = Thresholds {
        baseline_weeks: read(
            env,
            ANOMALY_BASELINE_WEEKS,
            fallback.baseline_weeks,
            anomaly::parse_weeks,
        )?,
        spike_factor: read(
            env,
            ANOMALY_SPIKE_FACTOR,
            fallback.spike_factor,
            anomaly::parse_factor,
        )?,
        spike_floor: read(
            env,
            ANOMALY_SPIKE_FLOOR,
            fallback.spike_floor,
            anomaly::parse_floor,
        )?,
        drop_busy_floor: read(
            env,
            ANOMALY_DROP_BUSY_FLOOR,
            fallback.drop_busy_floor,
            anomaly::parse_floor,
        )?,
        drop_ratio: read(
            env,
            ANOMALY_DROP_RATIO,
            fallback.drop_ratio,
            anomaly::parse_share,
        )?,
        share_factor: read(
            env,
            ANOMALY_SHARE_FACTOR,
            fallback.share_factor,
            anomaly::parse_factor,
        )?,
        share_min: read(
            env,
            ANOMALY_SHARE_MIN,
            fallback.share_min,
            anomaly::parse_share,
        )?,
        share_floor: read(
            env,
            ANOMALY_SHARE_FLOOR,
            fallback.share_floor,
            anomaly::parse_floor,
        )?,
    };
    let Some(interval) = interval else {
        for name in ANOMALY_SETTINGS {
            if let Some(value) = env.get(name) {
                return Err(ConfigError {
                    name,
                    value,
                    reason: format!("needs {ANOMALY_INTERVAL} on (detection is off)"),
                });
            }
        }
        return Ok(None);
    };
    Ok(Some(AnomalySettings {
        interval,
        close_delay,
        thresholds,
    }))
}

/// The anomaly settings besides the interval.
const ANOMALY_SETTINGS: [&str; 9] = [
    ANOMALY_CLOSE_DELAY,
    ANOMALY_BASELINE_WEEKS,
    ANOMALY_SPIKE_FACTOR,
    ANOMALY_SPIKE_FLOOR,
    ANOMALY_DROP_BUSY_FLOOR,
    ANOMALY_DROP_RATIO,
    ANOMALY_SHARE_FACTOR,
    ANOMALY_SHARE_MIN,
    ANOMALY_SHARE_FLOOR,
];
