//! The `KEYSYNC_WEBHOOK_*` variables: how `serve` delivers webhooks (timeouts, retry
//! spacing and window, concurrency, and how often it looks for work).

use crate::webhooks::settings::DeliverySettings;

use super::{parse_count, parse_interval, read, ConfigError, Environment};

pub const WEBHOOK_POLL_INTERVAL: &str = "KEYSYNC_WEBHOOK_POLL_INTERVAL";
pub const WEBHOOK_TIMEOUT: &str = "KEYSYNC_WEBHOOK_TIMEOUT";
pub const WEBHOOK_RETRY_FIRST: &str = "KEYSYNC_WEBHOOK_RETRY_FIRST";
pub const WEBHOOK_RETRY_MAX: &str = "KEYSYNC_WEBHOOK_RETRY_MAX";
pub const WEBHOOK_RETRY_FOR: &str = "KEYSYNC_WEBHOOK_RETRY_FOR";
pub const WEBHOOK_ENDPOINT_CONCURRENCY: &str = "KEYSYNC_WEBHOOK_ENDPOINT_CONCURRENCY";
pub const WEBHOOK_MAX_IN_FLIGHT: &str = "KEYSYNC_WEBHOOK_MAX_IN_FLIGHT";
pub const WEBHOOK_EXPIRY_SCAN_INTERVAL: &str = "KEYSYNC_WEBHOOK_EXPIRY_SCAN_INTERVAL";

pub(super) fn read_webhooks(env: &impl Environment) -> Result<DeliverySettings, ConfigError> {
    let defaults = DeliverySettings::default();
    let settings = DeliverySettings {
        poll_interval: read(
            env,
            WEBHOOK_POLL_INTERVAL,
            defaults.poll_interval,
            parse_interval,
        )?,
        timeout: read(env, WEBHOOK_TIMEOUT, defaults.timeout, parse_interval)?,
        retry_first: read(
            env,
            WEBHOOK_RETRY_FIRST,
            defaults.retry_first,
            parse_interval,
        )?,
        retry_max: read(env, WEBHOOK_RETRY_MAX, defaults.retry_max, parse_interval)?,
        retry_for: read(env, WEBHOOK_RETRY_FOR, defaults.retry_for, parse_interval)?,
        endpoint_concurrency: read(
            env,
            WEBHOOK_ENDPOINT_CONCURRENCY,
            defaults.endpoint_concurrency,
            parse_count,
        )?,
        max_in_flight: read(
            env,
            WEBHOOK_MAX_IN_FLIGHT,
            defaults.max_in_flight,
            parse_count,
        )?,
        expiry_scan_interval: read(
            env,
            WEBHOOK_EXPIRY_SCAN_INTERVAL,
            defaults.expiry_scan_interval,
            parse_interval,
        )?,
    };
    if settings.retry_max < settings.retry_first {
        return Err(ConfigError {
            name: WEBHOOK_RETRY_MAX,
            value: humantime::format_duration(settings.retry_max).to_string(),
            reason: format!("must be at least {WEBHOOK_RETRY_FIRST}"),
        });
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let none: HashMap<String, String> = HashMap::new();
        assert_eq!(read_webhooks(&none).unwrap(), DeliverySettings::default());
        let env: HashMap<String, String> = [
            (WEBHOOK_RETRY_FIRST, "100ms"),
            (WEBHOOK_RETRY_MAX, "1s"),
            (WEBHOOK_RETRY_FOR, "1m"),
            (WEBHOOK_ENDPOINT_CONCURRENCY, "2"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let settings = read_webhooks(&env).unwrap();
        assert_eq!(settings.retry_first, Duration::from_millis(100));
        assert_eq!(settings.retry_max, Duration::from_secs(1));
        assert_eq!(settings.retry_for, Duration::from_secs(60));
        assert_eq!(settings.endpoint_concurrency, 2);
        let backwards: HashMap<String, String> = [(WEBHOOK_RETRY_MAX, "1s")]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        assert_eq!(
            read_webhooks(&backwards).unwrap_err().name,
            WEBHOOK_RETRY_MAX
        );
        let zero: HashMap<String, String> = [(WEBHOOK_ENDPOINT_CONCURRENCY, "0")]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        assert!(read_webhooks(&zero).is_err());
    }
}
