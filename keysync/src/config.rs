//! Settings of `keysync serve`, read from `KEYSYNC_*` environment variables into typed
//! values; a bad value is a typed error naming the variable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::global_limit::failure_mode::FailureMode;
use crate::global_limit::redis_url::RedisUrl;

pub const GRPC_ADDR: &str = "KEYSYNC_GRPC_ADDR";
pub const HTTP_ADDR: &str = "KEYSYNC_HTTP_ADDR";
pub const POLL_INTERVAL: &str = "KEYSYNC_POLL_INTERVAL";
pub const FULL_RELOAD_INTERVAL: &str = "KEYSYNC_FULL_RELOAD_INTERVAL";
pub const MAX_PAGE_SIZE: &str = "KEYSYNC_MAX_PAGE_SIZE";
pub const CHANGELOG_RECORDS: &str = "KEYSYNC_CHANGELOG_RECORDS";
pub const WATCH_CHUNK: &str = "KEYSYNC_WATCH_CHUNK";
pub const WATCH_HEARTBEAT: &str = "KEYSYNC_WATCH_HEARTBEAT";
pub const REDIS_URL: &str = "REDIS_URL";
pub const RATELIMIT_FAILURE_MODE: &str = "KEYSYNC_RATELIMIT_FAILURE_MODE";

/// Where settings come from: the process environment, or a map in tests.
pub trait Environment {
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn get(&self, name: &str) -> Option<String> {
        // A value that is not UTF-8 is passed on lossily so it fails parsing loudly
        // instead of silently falling back to the default.
        std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
    }
}

impl Environment for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// A setting that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {name}='{value}': {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// Everything `serve` needs besides the database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// Where the filter's gRPC calls arrive; port 0 picks a free one.
    pub grpc_addr: SocketAddr,
    /// Admin HTTP (`/healthz`, `/readyz`, `/metrics`); port 0 picks a free one.
    pub http_addr: SocketAddr,
    /// Period of the incremental catch-up. Change notifications trigger catch-ups at
    /// once; this is the fallback when notifications are lost.
    pub poll_interval: Duration,
    /// Period of the full reload, the safety net under the incremental catch-up.
    pub full_reload_interval: Duration,
    /// Upper bound on a `ListKeys` page, whatever the client asks for.
    pub max_page_size: u32,
    /// Bound on the records (upserts plus removals) the changelog keeps for WatchKeys
    /// clients that reconnect; older batches are dropped first.
    pub changelog_records: usize,
    /// Most records in one `KeyChanges` message; larger batches are split.
    pub watch_chunk: usize,
    /// Silence after which a WatchKeys stream gets a heartbeat.
    pub watch_heartbeat: Duration,
    /// Where the global rate-limit counters live; `None` (unset or empty) turns global
    /// rate limiting off: `ShouldRateLimit` then answers `OK`.
    pub redis_url: Option<RedisUrl>,
    /// What `ShouldRateLimit` answers when Redis cannot be reached.
    pub ratelimit_failure_mode: FailureMode,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            poll_interval: Duration::from_secs(10),
            full_reload_interval: Duration::from_secs(15 * 60),
            max_page_size: 10_000,
            changelog_records: 200_000,
            watch_chunk: 5_000,
            watch_heartbeat: Duration::from_secs(5),
            redis_url: None,
            ratelimit_failure_mode: FailureMode::Open,
        }
    }
}

impl ServeConfig {
    /// Reads the settings, keeping the default for each variable that is unset.
    pub fn from_env(env: &impl Environment) -> Result<Self, ConfigError> {
        let defaults = ServeConfig::default();
        Ok(ServeConfig {
            grpc_addr: read(env, GRPC_ADDR, defaults.grpc_addr, parse_addr)?,
            http_addr: read(env, HTTP_ADDR, defaults.http_addr, parse_addr)?,
            poll_interval: read(env, POLL_INTERVAL, defaults.poll_interval, parse_interval)?,
            full_reload_interval: read(
                env,
                FULL_RELOAD_INTERVAL,
                defaults.full_reload_interval,
                parse_interval,
            )?,
            max_page_size: read(env, MAX_PAGE_SIZE, defaults.max_page_size, parse_page_size)?,
            changelog_records: read(
                env,
                CHANGELOG_RECORDS,
                defaults.changelog_records,
                parse_count,
            )?,
            watch_chunk: read(env, WATCH_CHUNK, defaults.watch_chunk, parse_count)?,
            watch_heartbeat: read(
                env,
                WATCH_HEARTBEAT,
                defaults.watch_heartbeat,
                parse_interval,
            )?,
            redis_url: read_redis_url(env)?,
            ratelimit_failure_mode: read(
                env,
                RATELIMIT_FAILURE_MODE,
                defaults.ratelimit_failure_mode,
                |value| value.parse(),
            )?,
        })
    }
}

/// `REDIS_URL`; an error shows the URL without its password.
fn read_redis_url(env: &impl Environment) -> Result<Option<RedisUrl>, ConfigError> {
    let Some(value) = env.get(REDIS_URL).filter(|value| !value.trim().is_empty()) else {
        return Ok(None);
    };
    RedisUrl::parse(&value)
        .map(Some)
        .map_err(|reason| ConfigError {
            name: REDIS_URL,
            value: crate::global_limit::redis_url::redacted(&value),
            reason,
        })
}

fn read<T>(
    env: &impl Environment,
    name: &'static str,
    default: T,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match env.get(name) {
        None => Ok(default),
        Some(value) => parse(value.trim()).map_err(|reason| ConfigError {
            name,
            value,
            reason,
        }),
    }
}

fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| "expected IP:PORT, such as 127.0.0.1:50051".to_owned())
}

fn parse_interval(value: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(value).map_err(|error| error.to_string())?;
    if interval.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(interval)
}

fn parse_page_size(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(size) => Ok(size),
        Err(_) => Err("expected a whole number".to_owned()),
    }
}

fn parse_count(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(count) => Ok(count),
        Err(_) => Err("expected a whole number".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn empty_environment_gives_defaults() {
        let config = ServeConfig::from_env(&env(&[])).unwrap();
        assert_eq!(config, ServeConfig::default());
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:9090");
        assert_eq!(config.poll_interval, Duration::from_secs(10));
        assert_eq!(config.full_reload_interval, Duration::from_secs(900));
        assert_eq!(config.max_page_size, 10_000);
        assert_eq!(config.changelog_records, 200_000);
        assert_eq!(config.watch_chunk, 5_000);
        assert_eq!(config.watch_heartbeat, Duration::from_secs(5));
        assert_eq!(config.redis_url, None);
        assert_eq!(config.ratelimit_failure_mode, FailureMode::Open);
    }

    #[test]
    fn every_variable_is_read() {
        let config = ServeConfig::from_env(&env(&[
            (GRPC_ADDR, "0.0.0.0:0"),
            (HTTP_ADDR, "[::1]:8081"),
            (POLL_INTERVAL, "250ms"),
            (FULL_RELOAD_INTERVAL, "1h"),
            (MAX_PAGE_SIZE, "500"),
            (CHANGELOG_RECORDS, "1000"),
            (WATCH_CHUNK, "7"),
            (WATCH_HEARTBEAT, "500ms"),
            (REDIS_URL, "redis://127.0.0.1:6390/1"),
            (RATELIMIT_FAILURE_MODE, "closed"),
        ]))
        .unwrap();
        assert_eq!(config.grpc_addr.port(), 0);
        assert_eq!(config.http_addr.to_string(), "[::1]:8081");
        assert_eq!(config.poll_interval, Duration::from_millis(250));
        assert_eq!(config.full_reload_interval, Duration::from_secs(3600));
        assert_eq!(config.max_page_size, 500);
        assert_eq!(config.changelog_records, 1000);
        assert_eq!(config.watch_chunk, 7);
        assert_eq!(config.watch_heartbeat, Duration::from_millis(500));
        assert_eq!(
            config.redis_url.unwrap().expose(),
            "redis://127.0.0.1:6390/1"
        );
        assert_eq!(config.ratelimit_failure_mode, FailureMode::Closed);
    }

    #[test]
    fn empty_redis_url_is_unset() {
        let config = ServeConfig::from_env(&env(&[(REDIS_URL, " ")])).unwrap();
        assert_eq!(config.redis_url, None);
    }

    #[test]
    fn bad_redis_url_is_refused_without_its_password() {
        let error =
            ServeConfig::from_env(&env(&[(REDIS_URL, "http://:s3cret@h:6379")])).unwrap_err();
        assert_eq!(error.name, REDIS_URL);
        let message = error.to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(
            message.starts_with("invalid REDIS_URL='http://:***@h:6379/': "),
            "{message}"
        );
        // A good URL's password does not show in the settings' Debug either.
        let config =
            ServeConfig::from_env(&env(&[(REDIS_URL, "redis://:s3cret@h:6379/0")])).unwrap();
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn bad_failure_mode_is_refused() {
        for value in ["deny", "OPEN", "1"] {
            let error =
                ServeConfig::from_env(&env(&[(RATELIMIT_FAILURE_MODE, value)])).unwrap_err();
            assert_eq!(error.name, RATELIMIT_FAILURE_MODE, "{value}");
            assert!(error.reason.contains("open or closed"), "{error}");
        }
        let config = ServeConfig::from_env(&env(&[(RATELIMIT_FAILURE_MODE, " open ")])).unwrap();
        assert_eq!(config.ratelimit_failure_mode, FailureMode::Open);
    }

    #[test]
    fn bad_address_names_the_variable() {
        let error = ServeConfig::from_env(&env(&[(GRPC_ADDR, "localhost")])).unwrap_err();
        assert_eq!(error.name, GRPC_ADDR);
        assert_eq!(error.value, "localhost");
        assert!(
            error
                .to_string()
                .starts_with("invalid KEYSYNC_GRPC_ADDR='localhost': "),
            "{error}"
        );
    }

    #[test]
    fn bad_and_zero_intervals_are_refused() {
        let error = ServeConfig::from_env(&env(&[(POLL_INTERVAL, "soon")])).unwrap_err();
        assert_eq!(error.name, POLL_INTERVAL);
        let error = ServeConfig::from_env(&env(&[(FULL_RELOAD_INTERVAL, "0s")])).unwrap_err();
        assert_eq!(error.name, FULL_RELOAD_INTERVAL);
        assert!(error.reason.contains("longer than zero"), "{error}");
    }

    #[test]
    fn bad_and_zero_page_sizes_are_refused() {
        for value in ["0", "-1", "ten", "99999999999"] {
            let error = ServeConfig::from_env(&env(&[(MAX_PAGE_SIZE, value)])).unwrap_err();
            assert_eq!(error.name, MAX_PAGE_SIZE, "{value}");
        }
    }

    #[test]
    fn bad_watch_settings_are_refused() {
        for (name, value) in [
            (CHANGELOG_RECORDS, "0"),
            (CHANGELOG_RECORDS, "lots"),
            (WATCH_CHUNK, "0"),
            (WATCH_CHUNK, "-5"),
            (WATCH_HEARTBEAT, "0s"),
            (WATCH_HEARTBEAT, "often"),
        ] {
            let error = ServeConfig::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(error.name, name, "{value}");
        }
    }
}
