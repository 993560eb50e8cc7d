//! Settings of `keysync serve`, read from `KEYSYNC_*` environment variables into typed
//! values; a bad value is a typed error naming the variable (never showing a secret).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keysync_contract::credential_sources::{CredentialSources, RawSource};

use crate::admin_api::idempotency_secret::{IdempotencySecret, SECRET_FILE_VARIABLE};
use crate::admin_api::ApiSettings;
use crate::anomaly::settings::AnomalySettings;
use crate::ca_file::CaFile;
use crate::fleet::FleetSettings;
use crate::global_limit::failure_mode::FailureMode;
use crate::global_limit::redis_url::RedisUrl;
use crate::grpc::tls::TlsFiles;
use crate::grpc::tokens::{AcceptedTokens, TokenSettings};
use crate::leak_reports::signature::PublicKeys;
use crate::leak_reports::LeakSettings;
use crate::operations::leaks::LeakAction;
use crate::usage::export::ExportSettings;
use crate::webhooks::settings::DeliverySettings;

mod anomaly_variables;
mod export_variables;
mod webhook_variables;

use anomaly_variables::read_anomaly;
pub use anomaly_variables::*;
use export_variables::read_usage_export;
pub use export_variables::*;
use webhook_variables::read_webhooks;
pub use webhook_variables::*;

pub const GRPC_ADDR: &str = "KEYSYNC_GRPC_ADDR";
pub const HTTP_ADDR: &str = "KEYSYNC_HTTP_ADDR";
pub const API_ADDR: &str = "KEYSYNC_API_ADDR";
pub const POLL_INTERVAL: &str = "KEYSYNC_POLL_INTERVAL";
pub const FULL_RELOAD_INTERVAL: &str = "KEYSYNC_FULL_RELOAD_INTERVAL";
pub const MAX_PAGE_SIZE: &str = "KEYSYNC_MAX_PAGE_SIZE";
pub const CHANGELOG_RECORDS: &str = "KEYSYNC_CHANGELOG_RECORDS";
pub const WATCH_CHUNK: &str = "KEYSYNC_WATCH_CHUNK";
pub const WATCH_HEARTBEAT: &str = "KEYSYNC_WATCH_HEARTBEAT";
pub const REDIS_URL: &str = "REDIS_URL";
pub const REDIS_TLS_CA: &str = "KEYSYNC_REDIS_TLS_CA";
pub const RATELIMIT_FAILURE_MODE: &str = "KEYSYNC_RATELIMIT_FAILURE_MODE";
pub const CONFIRM_INTERVAL: &str = "KEYSYNC_CONFIRM_INTERVAL";
pub const DB_TIMEOUT: &str = "KEYSYNC_DB_TIMEOUT";
pub const MAX_UNCONFIRMED: &str = "KEYSYNC_MAX_UNCONFIRMED";
pub const MAX_STALENESS: &str = "KEYSYNC_MAX_STALENESS";
// Declared where the files are read: an unusable file is reported by its variable.
pub use crate::grpc::tls::{GRPC_TLS_CERT, GRPC_TLS_CLIENT_CA, GRPC_TLS_KEY};
pub use crate::grpc::tokens::{GRPC_TOKEN, GRPC_TOKENS_FILE, GRPC_TOKEN_FILE};
pub const GATEWAY_MAX_RATE: &str = "KEYSYNC_GATEWAY_MAX_RATE";
pub const MAX_WATCH_STREAMS: &str = "KEYSYNC_MAX_WATCH_STREAMS";
pub const GRPC_MAX_IN_FLIGHT: &str = "KEYSYNC_GRPC_MAX_IN_FLIGHT";
pub const API_MAX_BODY_BYTES: &str = "KEYSYNC_API_MAX_BODY_BYTES";
pub const API_MAX_IMPORT_BYTES: &str = "KEYSYNC_API_MAX_IMPORT_BYTES";
pub const IDEMPOTENCY_TTL: &str = "KEYSYNC_IDEMPOTENCY_TTL";
pub const IDEMPOTENCY_SECRET_FILE: &str = SECRET_FILE_VARIABLE;
pub const ACCEPT_LEGACY_KEYS: &str = "KEYSYNC_ACCEPT_LEGACY_KEYS";
pub const CREDENTIALS: &str = "KEYSYNC_CREDENTIALS";
pub use crate::leak_reports::public_keys_file::LEAK_PUBLIC_KEYS_FILE;
pub const LEAK_ACTION: &str = "KEYSYNC_LEAK_ACTION";
pub const LEAK_MAX_BODY_BYTES: &str = "KEYSYNC_LEAK_MAX_BODY_BYTES";
pub const LEAK_RELOAD_INTERVAL: &str = "KEYSYNC_LEAK_RELOAD_INTERVAL";
pub const USAGE_RETENTION: &str = "KEYSYNC_USAGE_RETENTION";
pub const GATEWAY_LIVE_WINDOW: &str = "KEYSYNC_GATEWAY_LIVE_WINDOW";

/// A leak report's body limit unless `KEYSYNC_LEAK_MAX_BODY_BYTES` says otherwise: a
/// scanner may send many matches at once.
const DEFAULT_LEAK_MAX_BODY_BYTES: usize = 1 << 20;
/// How often the leak-report public keys are read again unless
/// `KEYSYNC_LEAK_RELOAD_INTERVAL` says otherwise (a report signed by an unlisted key
/// also has them read again at once).
const DEFAULT_LEAK_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// What one gateway is taken to serve at most, unless `KEYSYNC_GATEWAY_MAX_RATE` says
/// otherwise: about ten Envoy workers at the filter's full speed on these machines
/// (DESIGN.md: 20-30k requests a second each).
pub const DEFAULT_GATEWAY_MAX_RATE: u32 = 250_000;

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
    /// The operator API (`/v1/`, its OpenAPI document, the leak-report endpoint) on a
    /// listener of its own; `None` (`off`): not served.
    pub api_addr: Option<SocketAddr>,
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
    /// Period of the revision counter read that confirms the key set against
    /// PostgreSQL (and of the change listener's ping).
    pub confirm_interval: Duration,
    /// Bound on every wait for PostgreSQL: a query step (client side, and
    /// `statement_timeout` server side), a pooled connection, a ping.
    pub db_timeout: Duration,
    /// Unconfirmed longer than this: `/readyz` 503, gRPC health NOT_SERVING, WatchKeys
    /// streams closed.
    pub max_unconfirmed: Duration,
    /// Unconfirmed longer than this: ext_authz checks of keys answer unavailable.
    pub max_staleness: Duration,
    /// The tokens gRPC calls may carry (`authorization: Bearer <token>`), with their
    /// rights; none configured: calls need none.
    pub grpc_tokens: TokenSettings,
    /// Requests a second one gateway is taken to serve at most: what its usage flushes
    /// may add and its quota claims may ask for are bounded by it.
    pub gateway_max_rate: u32,
    /// TLS (and with a client CA, mutual TLS) on the gRPC port.
    pub grpc_tls: Option<TlsFiles>,
    /// Most WatchKeys streams open at once; more are refused `RESOURCE_EXHAUSTED`.
    pub max_watch_streams: usize,
    /// Most gRPC calls in progress at once (streams count while they open); more are
    /// refused `RESOURCE_EXHAUSTED`.
    pub grpc_max_in_flight: usize,
    /// The operator API's body limit and idempotency window.
    pub api: ApiSettings,
    /// ext_authz accepts keys issued before checksums (the filter's
    /// `accept_legacy_keys`); a checksummed key with a wrong checksum never is.
    pub accept_legacy_keys: bool,
    /// Where ext_authz reads a request's key (the filter's `credentials`, as JSON).
    pub credentials: CredentialSources,
    /// The leak-report endpoint, served when public keys are configured.
    pub leak_reports: Option<LeakSettings>,
    /// Months of usage kept before the current one (`KEYSYNC_USAGE_RETENTION`); older
    /// monthly partitions are dropped.
    pub usage_retention_months: u32,
    /// The usage export to Kafka; `None` (no brokers set): no export.
    pub usage_export: Option<ExportSettings>,
    /// Anomaly detection on the usage rollup; `None` (`KEYSYNC_ANOMALY_INTERVAL=off`):
    /// none.
    pub anomaly: Option<AnomalySettings>,
    /// How webhooks are delivered (`KEYSYNC_WEBHOOK_*`).
    pub webhooks: DeliverySettings,
    /// When a gateway counts as live (revocation receipts, `keysync gateways`).
    pub fleet: FleetSettings,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
            api_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9091))),
            poll_interval: Duration::from_secs(10),
            full_reload_interval: Duration::from_secs(15 * 60),
            max_page_size: 10_000,
            changelog_records: 200_000,
            watch_chunk: 5_000,
            // Every heartbeat carries the confirmation's age: frequent ones let a filter
            // notice within a second or two that this keysync stopped confirming.
            watch_heartbeat: Duration::from_secs(1),
            redis_url: None,
            ratelimit_failure_mode: FailureMode::Open,
            confirm_interval: Duration::from_secs(2),
            db_timeout: Duration::from_secs(5),
            max_unconfirmed: Duration::from_secs(10),
            max_staleness: Duration::from_secs(15 * 60),
            grpc_tokens: TokenSettings::default(),
            gateway_max_rate: DEFAULT_GATEWAY_MAX_RATE,
            grpc_tls: None,
            max_watch_streams: 1024,
            grpc_max_in_flight: 1024,
            api: ApiSettings::default(),
            accept_legacy_keys: true,
            credentials: CredentialSources::default(),
            leak_reports: None,
            usage_retention_months: crate::usage::partitions::DEFAULT_RETENTION_MONTHS,
            usage_export: None,
            anomaly: Some(AnomalySettings::default()),
            webhooks: DeliverySettings::default(),
            fleet: FleetSettings::default(),
        }
    }
}

impl ServeConfig {
    /// Reads the settings, keeping the default for each variable that is unset.
    pub fn from_env(env: &impl Environment) -> Result<Self, ConfigError> {
        let defaults = ServeConfig::default();
        let config = ServeConfig {
            grpc_addr: read(env, GRPC_ADDR, defaults.grpc_addr, parse_addr)?,
            http_addr: read(env, HTTP_ADDR, defaults.http_addr, parse_addr)?,
            api_addr: read(env, API_ADDR, defaults.api_addr, parse_optional_addr)?,
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
            confirm_interval: read(
                env,
                CONFIRM_INTERVAL,
                defaults.confirm_interval,
                parse_interval,
            )?,
            db_timeout: read(env, DB_TIMEOUT, defaults.db_timeout, parse_interval)?,
            max_unconfirmed: read(
                env,
                MAX_UNCONFIRMED,
                defaults.max_unconfirmed,
                parse_interval,
            )?,
            max_staleness: read(env, MAX_STALENESS, defaults.max_staleness, parse_interval)?,
            grpc_tokens: read_tokens(env)?,
            gateway_max_rate: read(env, GATEWAY_MAX_RATE, defaults.gateway_max_rate, parse_rate)?,
            grpc_tls: read_tls(env)?,
            max_watch_streams: read(
                env,
                MAX_WATCH_STREAMS,
                defaults.max_watch_streams,
                parse_count,
            )?,
            grpc_max_in_flight: read(
                env,
                GRPC_MAX_IN_FLIGHT,
                defaults.grpc_max_in_flight,
                parse_count,
            )?,
            api: ApiSettings {
                max_body_bytes: read(
                    env,
                    API_MAX_BODY_BYTES,
                    defaults.api.max_body_bytes,
                    parse_body_limit,
                )?,
                max_import_bytes: read(
                    env,
                    API_MAX_IMPORT_BYTES,
                    defaults.api.max_import_bytes,
                    parse_import_limit,
                )?,
                idempotency_ttl: read(
                    env,
                    IDEMPOTENCY_TTL,
                    defaults.api.idempotency_ttl,
                    parse_interval,
                )?,
                idempotency_secret: read_idempotency_secret(env)?,
            },
            accept_legacy_keys: read(
                env,
                ACCEPT_LEGACY_KEYS,
                defaults.accept_legacy_keys,
                parse_switch,
            )?,
            credentials: read(env, CREDENTIALS, defaults.credentials, parse_credentials)?,
            leak_reports: read_leak_settings(env)?,
            usage_retention_months: read(
                env,
                USAGE_RETENTION,
                defaults.usage_retention_months,
                parse_months,
            )?,
            usage_export: read_usage_export(env)?,
            anomaly: read_anomaly(env)?,
            webhooks: read_webhooks(env)?,
            fleet: read_fleet(env)?,
        };
        config.check()?;
        Ok(config)
    }

    /// Whether the gRPC port authenticates its callers: a token, or client certificates.
    pub fn grpc_authenticated(&self) -> bool {
        self.grpc_tokens.any()
            || self
                .grpc_tls
                .as_ref()
                .is_some_and(|tls| tls.client_ca.is_some())
    }

    /// Settings that are fine one by one but not together.
    fn check(&self) -> Result<(), ConfigError> {
        if !self.grpc_addr.ip().is_loopback() && !self.grpc_authenticated() {
            return Err(ConfigError {
                name: GRPC_ADDR,
                value: self.grpc_addr.to_string(),
                reason: format!(
                    "not a loopback address, so anyone who can reach it could read every key \
                     hash and spend any rate-limit budget: set {GRPC_TOKEN} (or \
                     {GRPC_TOKEN_FILE}, or {GRPC_TOKENS_FILE}) for a token that Envoy sends, \
                     or mutual TLS with {GRPC_TLS_CERT}, {GRPC_TLS_KEY} and \
                     {GRPC_TLS_CLIENT_CA}"
                ),
            });
        }
        if let (Some(leaks), None) = (&self.leak_reports, self.api_addr) {
            return Err(ConfigError {
                name: LEAK_PUBLIC_KEYS_FILE,
                value: leaks.public_keys_file.display().to_string(),
                reason: format!(
                    "the leak-report endpoint is served on the operator API's listener, and \
                     {API_ADDR} is off"
                ),
            });
        }
        if let Some(anomaly) = &self.anomaly {
            // The baseline's weeks must still be in the rollup: a month holds four.
            let weeks = anomaly.thresholds.baseline_weeks;
            if u32::from(weeks) > self.usage_retention_months.saturating_mul(4) {
                return Err(ConfigError {
                    name: ANOMALY_BASELINE_WEEKS,
                    value: weeks.to_string(),
                    reason: format!(
                        "the usage kept ({USAGE_RETENTION}={} months) holds at most {} weeks",
                        self.usage_retention_months,
                        self.usage_retention_months.saturating_mul(4)
                    ),
                });
            }
        }
        if self.max_unconfirmed <= self.confirm_interval {
            return Err(ConfigError {
                name: MAX_UNCONFIRMED,
                value: humantime::format_duration(self.max_unconfirmed).to_string(),
                reason: format!("must be longer than {CONFIRM_INTERVAL}"),
            });
        }
        Ok(())
    }
}

/// `KEYSYNC_GRPC_TOKEN` or the contents of `KEYSYNC_GRPC_TOKEN_FILE` (not both), and
/// the tokens of `KEYSYNC_GRPC_TOKENS_FILE`. Errors never show a token.
fn read_tokens(env: &impl Environment) -> Result<TokenSettings, ConfigError> {
    let inline = env.get(GRPC_TOKEN).filter(|value| !value.is_empty());
    let path = |name| {
        env.get(name)
            .filter(|value: &String| !value.trim().is_empty())
    };
    let (file, list) = (path(GRPC_TOKEN_FILE), path(GRPC_TOKENS_FILE));
    let failed = |name: &'static str, value: &str, reason: String| ConfigError {
        name,
        value: value.to_owned(),
        reason,
    };
    let read_file = |name: &'static str, path: &str| {
        std::fs::read(path.trim())
            .map_err(|error| failed(name, path, format!("cannot read it: {error}")))
    };
    let mut settings = TokenSettings::default();
    match (inline, &file) {
        (Some(_), Some(path)) => {
            return Err(failed(
                GRPC_TOKEN_FILE,
                path,
                format!("{GRPC_TOKEN} is set too: set one of them"),
            ))
        }
        (Some(token), None) => {
            settings.token = Some(
                crate::grpc::token::GrpcToken::new(&token)
                    .map_err(|reason| failed(GRPC_TOKEN, "***", reason))?,
            );
        }
        (None, Some(path)) => {
            let token = crate::grpc::tokens::parse_token_file(&read_file(GRPC_TOKEN_FILE, path)?)
                .map_err(|reason| {
                failed(GRPC_TOKEN_FILE, path, format!("its contents: {reason}"))
            })?;
            settings.token_file = Some((PathBuf::from(path.trim()), token));
        }
        (None, None) => {}
    }
    if let Some(path) = list {
        let may_be_empty = settings.any();
        let contents = match std::fs::read(path.trim()) {
            // Beside another token, a list not there yet is an empty one: a Kubernetes
            // Secret key added later appears in its volume, and is read then.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && may_be_empty => {
                Vec::new()
            }
            _ => read_file(GRPC_TOKENS_FILE, &path)?,
        };
        let tokens = std::str::from_utf8(&contents)
            .map_err(|_| "not UTF-8".to_owned())
            .and_then(|text| AcceptedTokens::parse(text, may_be_empty))
            .map_err(|reason| failed(GRPC_TOKENS_FILE, &path, format!("its contents: {reason}")))?;
        settings.tokens_file = Some((PathBuf::from(path.trim()), tokens));
    }
    Ok(settings)
}

/// The contents of `KEYSYNC_IDEMPOTENCY_SECRET_FILE`. Errors never show the secret.
fn read_idempotency_secret(
    env: &impl Environment,
) -> Result<Option<IdempotencySecret>, ConfigError> {
    let Some(path) = env
        .get(IDEMPOTENCY_SECRET_FILE)
        .filter(|value| !value.trim().is_empty())
    else {
        return Ok(None);
    };
    let failed = |reason: String| ConfigError {
        name: IDEMPOTENCY_SECRET_FILE,
        value: path.clone(),
        reason,
    };
    let contents =
        std::fs::read(path.trim()).map_err(|error| failed(format!("cannot read it: {error}")))?;
    IdempotencySecret::from_file_contents(&contents)
        .map(Some)
        .map_err(failed)
}

/// `KEYSYNC_GRPC_TLS_CERT` and `..._KEY` (both or neither), and `..._CLIENT_CA`, which
/// needs them.
fn read_tls(env: &impl Environment) -> Result<Option<TlsFiles>, ConfigError> {
    let path = |name| env.get(name).filter(|value| !value.trim().is_empty());
    let (cert, key, client_ca) = (
        path(GRPC_TLS_CERT),
        path(GRPC_TLS_KEY),
        path(GRPC_TLS_CLIENT_CA),
    );
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: PathBuf::from(cert.trim()),
            key: PathBuf::from(key.trim()),
            client_ca: client_ca.map(|ca| PathBuf::from(ca.trim())),
        })),
        (None, None) => match client_ca {
            None => Ok(None),
            Some(ca) => Err(ConfigError {
                name: GRPC_TLS_CLIENT_CA,
                value: ca,
                reason: format!("needs {GRPC_TLS_CERT} and {GRPC_TLS_KEY} too"),
            }),
        },
        (Some(cert), None) => Err(ConfigError {
            name: GRPC_TLS_CERT,
            value: cert,
            reason: format!("needs {GRPC_TLS_KEY} too"),
        }),
        (None, Some(key)) => Err(ConfigError {
            name: GRPC_TLS_KEY,
            value: key,
            reason: format!("needs {GRPC_TLS_CERT} too"),
        }),
    }
}

/// `KEYSYNC_LEAK_PUBLIC_KEYS_FILE` (GitHub's key list format, which must be good at
/// start), with the action, body limit and reload period, which need it.
fn read_leak_settings(env: &impl Environment) -> Result<Option<LeakSettings>, ConfigError> {
    let action = read(env, LEAK_ACTION, LeakAction::Revoke, |value| value.parse())?;
    let max_body_bytes = read(
        env,
        LEAK_MAX_BODY_BYTES,
        DEFAULT_LEAK_MAX_BODY_BYTES,
        parse_body_limit,
    )?;
    let reload_interval = read(
        env,
        LEAK_RELOAD_INTERVAL,
        DEFAULT_LEAK_RELOAD_INTERVAL,
        parse_interval,
    )?;
    let Some(path) = env
        .get(LEAK_PUBLIC_KEYS_FILE)
        .filter(|value| !value.trim().is_empty())
    else {
        for name in [LEAK_ACTION, LEAK_MAX_BODY_BYTES, LEAK_RELOAD_INTERVAL] {
            if let Some(value) = env.get(name) {
                return Err(ConfigError {
                    name,
                    value,
                    reason: format!(
                        "needs {LEAK_PUBLIC_KEYS_FILE} (the endpoint is off without it)"
                    ),
                });
            }
        }
        return Ok(None);
    };
    let failed = |reason: String| ConfigError {
        name: LEAK_PUBLIC_KEYS_FILE,
        value: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path.trim())
        .map_err(|error| failed(format!("cannot read it: {error}")))?;
    let public_keys = PublicKeys::from_json(&text).map_err(|error| failed(error.to_string()))?;
    Ok(Some(LeakSettings {
        public_keys,
        public_keys_file: PathBuf::from(path.trim()),
        reload_interval,
        action,
        max_body_bytes,
    }))
}

/// `REDIS_URL`, with the CA of `KEYSYNC_REDIS_TLS_CA` for a `rediss://` one; an error
/// shows the URL without its password.
fn read_redis_url(env: &impl Environment) -> Result<Option<RedisUrl>, ConfigError> {
    let Some(value) = env.get(REDIS_URL).filter(|value| !value.trim().is_empty()) else {
        return Ok(None);
    };
    let url = RedisUrl::parse(&value).map_err(|reason| ConfigError {
        name: REDIS_URL,
        value: crate::global_limit::redis_url::redacted(&value),
        reason,
    })?;
    let Some(path) = env.get(REDIS_TLS_CA).filter(|path| !path.trim().is_empty()) else {
        return Ok(Some(url));
    };
    let ca_error = |reason: String| ConfigError {
        name: REDIS_TLS_CA,
        value: path.clone(),
        reason,
    };
    let ca = CaFile::read(Path::new(path.trim())).map_err(ca_error)?;
    url.with_ca(ca).map(Some).map_err(ca_error)
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

/// An address, or `off`.
fn parse_optional_addr(value: &str) -> Result<Option<SocketAddr>, String> {
    if value == "off" {
        return Ok(None);
    }
    parse_addr(value)
        .map(Some)
        .map_err(|_| "expected IP:PORT, such as 127.0.0.1:9091, or off".to_owned())
}

/// Requests a second: 1 to 100,000,000.
fn parse_rate(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(rate) if (1..=100_000_000).contains(&rate) => Ok(rate),
        _ => Err("expected a whole number of requests a second from 1 to 100000000".to_owned()),
    }
}

fn parse_addr(value: &str) -> Result<SocketAddr, String> {
    value
        .parse()
        .map_err(|_| "expected IP:PORT, such as 127.0.0.1:50051".to_owned())
}

/// The fleet's settings (`KEYSYNC_GATEWAY_LIVE_WINDOW`): read by `serve` and by the
/// commands that wait for or list gateways, which must judge liveness alike.
pub fn read_fleet(env: &impl Environment) -> Result<FleetSettings, ConfigError> {
    let defaults = FleetSettings::default();
    Ok(FleetSettings {
        live_window: read(
            env,
            GATEWAY_LIVE_WINDOW,
            defaults.live_window,
            parse_interval,
        )?,
    })
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

/// A request body limit: at least 1 KiB (the API's requests are small), at most 16 MiB.
fn parse_body_limit(value: &str) -> Result<usize, String> {
    parse_bytes_up_to(value, 16 << 20)
}

/// A key import's body may be far larger than other requests: one transaction for a whole
/// file is the point of the API's import.
fn parse_import_limit(value: &str) -> Result<usize, String> {
    parse_bytes_up_to(value, 256 << 20)
}

/// A size in bytes from 1 KiB to `max`.
fn parse_bytes_up_to(value: &str, max: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(bytes) if (1024..=max).contains(&bytes) => Ok(bytes),
        Ok(_) => Err(format!("expected 1024 to {max} bytes")),
        Err(_) => Err("expected a whole number of bytes".to_owned()),
    }
}

/// The filter's `credentials` list, as JSON: `[{"header": "x-api-key"}, {"query": "api_key"}]`.
fn parse_credentials(value: &str) -> Result<CredentialSources, String> {
    let raw: Vec<RawSource> = serde_json::from_str(value).map_err(|e| e.to_string())?;
    CredentialSources::new(&raw)
}

fn parse_switch(value: &str) -> Result<bool, String> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

/// A number of months (`13`, or `13mo`): 1 to 1200.
fn parse_months(value: &str) -> Result<u32, String> {
    let digits = value
        .strip_suffix("months")
        .or_else(|| value.strip_suffix("mo"))
        .unwrap_or(value)
        .trim();
    match digits.parse::<u32>() {
        Ok(months) if (1..=1200).contains(&months) => Ok(months),
        _ => Err("expected a whole number of months from 1 to 1200, such as 13".to_owned()),
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
    use crate::anomaly::settings::Thresholds;

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
        assert_eq!(config.watch_heartbeat, Duration::from_secs(1));
        assert_eq!(config.redis_url, None);
        assert_eq!(config.ratelimit_failure_mode, FailureMode::Open);
        assert_eq!(config.confirm_interval, Duration::from_secs(2));
        assert_eq!(config.db_timeout, Duration::from_secs(5));
        assert_eq!(config.max_unconfirmed, Duration::from_secs(10));
        assert_eq!(config.max_staleness, Duration::from_secs(900));
        assert_eq!(config.grpc_tokens, TokenSettings::default());
        assert_eq!(config.api_addr, Some("127.0.0.1:9091".parse().unwrap()));
        assert_eq!(config.gateway_max_rate, 250_000);
        assert_eq!(config.grpc_tls, None);
        assert_eq!(config.max_watch_streams, 1024);
        assert_eq!(config.grpc_max_in_flight, 1024);
        assert_eq!(config.api.max_body_bytes, 65536);
        assert_eq!(config.api.max_import_bytes, 16 << 20);
        assert_eq!(config.api.idempotency_ttl, Duration::from_secs(86_400));
        assert!(config.accept_legacy_keys);
    }

    #[test]
    fn the_api_settings_are_read_and_checked() {
        let config = ServeConfig::from_env(&env(&[
            (API_MAX_BODY_BYTES, "4096"),
            (API_MAX_IMPORT_BYTES, "104857600"),
            (IDEMPOTENCY_TTL, "1h"),
        ]))
        .unwrap();
        assert_eq!(config.api.max_body_bytes, 4096);
        assert_eq!(config.api.max_import_bytes, 100 << 20);
        assert_eq!(config.api.idempotency_ttl, Duration::from_secs(3600));
        for (name, value) in [
            (API_MAX_BODY_BYTES, "10"),
            (API_MAX_BODY_BYTES, "lots"),
            (API_MAX_IMPORT_BYTES, "300000000"),
            (IDEMPOTENCY_TTL, "0s"),
        ] {
            let error = ServeConfig::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(error.name, name);
        }
    }

    #[test]
    fn the_idempotency_secret_comes_from_a_file_of_32_bytes_and_is_never_shown() {
        assert_eq!(ServeConfig::default().api.idempotency_secret, None);
        let path = std::env::temp_dir().join(format!("keysync-idempotency-{}", std::process::id()));
        let path_text = path.to_string_lossy().into_owned();
        std::fs::write(&path, "0123456789abcdef0123456789abcdef-secret\n").unwrap();
        let config = ServeConfig::from_env(&env(&[(IDEMPOTENCY_SECRET_FILE, &path_text)])).unwrap();
        let secret = config.api.idempotency_secret.clone().unwrap();
        assert!(secret.from_file());
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
        std::fs::write(&path, "too short, not secret\n").unwrap();
        let error =
            ServeConfig::from_env(&env(&[(IDEMPOTENCY_SECRET_FILE, &path_text)])).unwrap_err();
        assert_eq!(error.name, IDEMPOTENCY_SECRET_FILE);
        assert!(error.reason.contains("at least 32"), "{error}");
        assert!(!error.to_string().contains("not secret"), "{error}");
        std::fs::remove_file(&path).unwrap();
        let error =
            ServeConfig::from_env(&env(&[(IDEMPOTENCY_SECRET_FILE, &path_text)])).unwrap_err();
        assert!(error.reason.starts_with("cannot read it: "), "{error}");
    }

    #[test]
    fn the_leak_reload_interval_needs_the_key_file() {
        let error = ServeConfig::from_env(&env(&[(LEAK_RELOAD_INTERVAL, "10s")])).unwrap_err();
        assert_eq!(error.name, LEAK_RELOAD_INTERVAL);
        assert!(error.reason.contains(LEAK_PUBLIC_KEYS_FILE), "{error}");
    }

    #[test]
    fn beyond_loopback_the_grpc_port_needs_a_token_or_mutual_tls() {
        for addr in ["0.0.0.0:50051", "[::]:50051", "10.0.0.5:50051"] {
            let error = ServeConfig::from_env(&env(&[(GRPC_ADDR, addr)])).unwrap_err();
            assert_eq!(error.name, GRPC_ADDR, "{addr}");
            for needed in [GRPC_TOKEN, GRPC_TOKEN_FILE, GRPC_TLS_CLIENT_CA] {
                assert!(error.reason.contains(needed), "{error}");
            }
            // Server TLS alone authenticates nobody.
            let error = ServeConfig::from_env(&env(&[
                (GRPC_ADDR, addr),
                (GRPC_TLS_CERT, "c.pem"),
                (GRPC_TLS_KEY, "k.pem"),
            ]))
            .unwrap_err();
            assert_eq!(error.name, GRPC_ADDR);
            let token = ServeConfig::from_env(&env(&[
                (GRPC_ADDR, addr),
                (GRPC_TOKEN, "0123456789abcdef-token"),
            ]))
            .unwrap();
            assert!(token.grpc_authenticated());
            let mutual = ServeConfig::from_env(&env(&[
                (GRPC_ADDR, addr),
                (GRPC_TLS_CERT, "c.pem"),
                (GRPC_TLS_KEY, "k.pem"),
                (GRPC_TLS_CLIENT_CA, "ca.pem"),
            ]))
            .unwrap();
            assert!(mutual.grpc_authenticated());
        }
        for addr in ["127.0.0.1:50051", "127.1.2.3:0", "[::1]:50051"] {
            assert!(
                ServeConfig::from_env(&env(&[(GRPC_ADDR, addr)])).is_ok(),
                "{addr}"
            );
        }
    }

    #[test]
    fn the_token_comes_from_a_file_without_its_newline() {
        use crate::grpc::token::GrpcToken;
        let path = std::env::temp_dir().join(format!("keysync-token-{}", std::process::id()));
        std::fs::write(&path, "0123456789abcdef-from-a-file\n").unwrap();
        let path_text = path.to_string_lossy().into_owned();
        let config = ServeConfig::from_env(&env(&[(GRPC_TOKEN_FILE, &path_text)])).unwrap();
        assert_eq!(
            config.grpc_tokens.token_file,
            Some((
                path.clone(),
                GrpcToken::new("0123456789abcdef-from-a-file").unwrap()
            ))
        );
        // Both at once is a mistake.
        let error = ServeConfig::from_env(&env(&[
            (GRPC_TOKEN_FILE, &path_text),
            (GRPC_TOKEN, "0123456789abcdef-token"),
        ]))
        .unwrap_err();
        assert_eq!(error.name, GRPC_TOKEN_FILE);
        std::fs::remove_file(&path).unwrap();
        let error = ServeConfig::from_env(&env(&[(GRPC_TOKEN_FILE, &path_text)])).unwrap_err();
        assert!(error.reason.starts_with("cannot read it: "), "{error}");
    }

    #[test]
    fn a_tokens_file_adds_tokens_and_is_checked_at_start() {
        let dir = std::env::temp_dir().join(format!("keysync-tokens-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (single, list) = (dir.join("token"), dir.join("accepted-tokens"));
        std::fs::write(&single, "0123456789abcdef-gateway\n").unwrap();
        std::fs::write(&list, "").unwrap();
        let text = |path: &Path| path.to_string_lossy().into_owned();
        // Beside the token the gateways send, an empty list is fine (nothing to add yet).
        let config = ServeConfig::from_env(&env(&[
            (GRPC_TOKEN_FILE, &text(&single)),
            (GRPC_TOKENS_FILE, &text(&list)),
            (GRPC_ADDR, "0.0.0.0:50051"),
        ]))
        .unwrap();
        assert_eq!(config.grpc_tokens.count(), (1, 0));
        assert!(config.grpc_authenticated());
        // Beside it, a list not there yet is empty (a Secret key added later); alone,
        // it must be there.
        let missing = dir.join("not-yet");
        let config = ServeConfig::from_env(&env(&[
            (GRPC_TOKEN_FILE, &text(&single)),
            (GRPC_TOKENS_FILE, &text(&missing)),
        ]))
        .unwrap();
        assert_eq!(config.grpc_tokens.count(), (1, 0));
        let error =
            ServeConfig::from_env(&env(&[(GRPC_TOKENS_FILE, &text(&missing))])).unwrap_err();
        assert!(error.reason.starts_with("cannot read it: "), "{error}");
        // Alone, it must list a token: an empty one would refuse every gateway.
        let error = ServeConfig::from_env(&env(&[(GRPC_TOKENS_FILE, &text(&list))])).unwrap_err();
        assert_eq!(error.name, GRPC_TOKENS_FILE);
        assert!(error.reason.contains("no token in it"), "{error}");
        std::fs::write(
            &list,
            "0123456789abcdef-next\n0123456789abcdef-reader read-only\n",
        )
        .unwrap();
        let config = ServeConfig::from_env(&env(&[
            (GRPC_TOKENS_FILE, &text(&list)),
            (GRPC_ADDR, "0.0.0.0:50051"),
        ]))
        .unwrap();
        assert_eq!(config.grpc_tokens.count(), (2, 1));
        // A bad line is named, its token never shown.
        std::fs::write(&list, "0123456789abcdef-next\nhunter2-hunter2 rw\n").unwrap();
        let error = ServeConfig::from_env(&env(&[(GRPC_TOKENS_FILE, &text(&list))])).unwrap_err();
        assert!(
            error.reason.starts_with("its contents: line 2: "),
            "{error}"
        );
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(!error.to_string().contains("abcdef-next"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_operator_api_listens_apart_or_not_at_all() {
        let config = ServeConfig::from_env(&env(&[(API_ADDR, "0.0.0.0:8443")])).unwrap();
        assert_eq!(config.api_addr, Some("0.0.0.0:8443".parse().unwrap()));
        let config = ServeConfig::from_env(&env(&[(API_ADDR, " off ")])).unwrap();
        assert_eq!(config.api_addr, None);
        for bad in ["", "9091", "on", "localhost:9091"] {
            let error = ServeConfig::from_env(&env(&[(API_ADDR, bad)])).unwrap_err();
            assert_eq!(error.name, API_ADDR, "{bad}");
        }
    }

    #[test]
    fn leak_reports_need_the_operator_api() {
        let dir = std::env::temp_dir().join(format!("keysync-leak-off-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        let signer = keysync_e2e::leak_signer::Signer::generate("k");
        std::fs::write(&path, keysync_e2e::leak_signer::key_list(&[&signer])).unwrap();
        let path = path.to_string_lossy().into_owned();
        assert!(ServeConfig::from_env(&env(&[(LEAK_PUBLIC_KEYS_FILE, &path)])).is_ok());
        let error =
            ServeConfig::from_env(&env(&[(LEAK_PUBLIC_KEYS_FILE, &path), (API_ADDR, "off")]))
                .unwrap_err();
        assert_eq!(error.name, LEAK_PUBLIC_KEYS_FILE);
        assert!(error.reason.contains("KEYSYNC_API_ADDR is off"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_gateway_rate_is_a_positive_whole_number() {
        for bad in ["0", "-1", "fast", "100000001", "1.5"] {
            let error = ServeConfig::from_env(&env(&[(GATEWAY_MAX_RATE, bad)])).unwrap_err();
            assert_eq!(error.name, GATEWAY_MAX_RATE, "{bad}");
        }
    }

    #[test]
    fn bad_tokens_are_refused_without_being_shown() {
        let error = ServeConfig::from_env(&env(&[(GRPC_TOKEN, "hunter2")])).unwrap_err();
        assert_eq!(error.name, GRPC_TOKEN);
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("invalid KEYSYNC_GRPC_TOKEN='***': "),
            "{error}"
        );
    }

    #[test]
    fn tls_files_come_in_pairs() {
        for (pairs, name) in [
            (vec![(GRPC_TLS_CERT, "c.pem")], GRPC_TLS_CERT),
            (vec![(GRPC_TLS_KEY, "k.pem")], GRPC_TLS_KEY),
            (vec![(GRPC_TLS_CLIENT_CA, "ca.pem")], GRPC_TLS_CLIENT_CA),
        ] {
            let error = ServeConfig::from_env(&env(&pairs)).unwrap_err();
            assert_eq!(error.name, name);
        }
    }

    #[test]
    fn the_unready_bound_must_exceed_the_confirmation_period() {
        let error =
            ServeConfig::from_env(&env(&[(CONFIRM_INTERVAL, "10s"), (MAX_UNCONFIRMED, "10s")]))
                .unwrap_err();
        assert_eq!(error.name, MAX_UNCONFIRMED);
        for (name, value) in [
            (CONFIRM_INTERVAL, "0s"),
            (DB_TIMEOUT, "never"),
            (MAX_STALENESS, "0s"),
            (MAX_WATCH_STREAMS, "0"),
            (GRPC_MAX_IN_FLIGHT, "lots"),
            (ACCEPT_LEGACY_KEYS, "no"),
            (CREDENTIALS, "[]"),
            (CREDENTIALS, r#"[{"query":"a b"}]"#),
            (CREDENTIALS, "api_key"),
            (GATEWAY_LIVE_WINDOW, "0s"),
        ] {
            let error = ServeConfig::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(error.name, name, "{value}");
        }
    }

    #[test]
    fn credentials_are_the_contracts_headers_unless_listed() {
        let config = ServeConfig::from_env(&env(&[])).unwrap();
        assert_eq!(config.credentials, CredentialSources::default());
        let listed = r#"[{"header":"authorization","scheme":"Bearer"},{"query":"api_key"}]"#;
        let config = ServeConfig::from_env(&env(&[(CREDENTIALS, listed)])).unwrap();
        assert!(config.credentials.beyond_headers());
        assert_eq!(config.credentials.sources().len(), 2);
    }

    #[test]
    fn every_variable_is_read() {
        use crate::grpc::token::GrpcToken;
        let config = ServeConfig::from_env(&env(&[
            (GRPC_ADDR, "[::1]:0"),
            (HTTP_ADDR, "[::1]:8081"),
            (POLL_INTERVAL, "250ms"),
            (FULL_RELOAD_INTERVAL, "1h"),
            (MAX_PAGE_SIZE, "500"),
            (CHANGELOG_RECORDS, "1000"),
            (WATCH_CHUNK, "7"),
            (WATCH_HEARTBEAT, "500ms"),
            (REDIS_URL, "redis://127.0.0.1:6390/1"),
            (RATELIMIT_FAILURE_MODE, "closed"),
            (CONFIRM_INTERVAL, "1s"),
            (DB_TIMEOUT, "3s"),
            (MAX_UNCONFIRMED, "20s"),
            (MAX_STALENESS, "5m"),
            (GRPC_TOKEN, "0123456789abcdef-token"),
            (API_ADDR, "off"),
            (GATEWAY_MAX_RATE, "5000"),
            (GRPC_TLS_CERT, "/etc/keysync/cert.pem"),
            (GRPC_TLS_KEY, " /etc/keysync/key.pem "),
            (GRPC_TLS_CLIENT_CA, "/etc/keysync/ca.pem"),
            (MAX_WATCH_STREAMS, "10"),
            (GRPC_MAX_IN_FLIGHT, "20"),
            (ACCEPT_LEGACY_KEYS, "false"),
            (USAGE_RETENTION, "25"),
            (GATEWAY_LIVE_WINDOW, "5s"),
        ]))
        .unwrap();
        assert_eq!(config.usage_retention_months, 25);
        assert_eq!(config.fleet.live_window, Duration::from_secs(5));
        assert!(!config.accept_legacy_keys);
        assert_eq!(config.confirm_interval, Duration::from_secs(1));
        assert_eq!(config.db_timeout, Duration::from_secs(3));
        assert_eq!(config.max_unconfirmed, Duration::from_secs(20));
        assert_eq!(config.max_staleness, Duration::from_secs(300));
        assert_eq!(
            config.grpc_tokens.token,
            Some(GrpcToken::new("0123456789abcdef-token").unwrap())
        );
        assert_eq!(config.api_addr, None);
        assert_eq!(config.gateway_max_rate, 5000);
        assert_eq!(
            config.grpc_tls,
            Some(TlsFiles {
                cert: "/etc/keysync/cert.pem".into(),
                key: "/etc/keysync/key.pem".into(),
                client_ca: Some("/etc/keysync/ca.pem".into()),
            })
        );
        assert_eq!(config.max_watch_streams, 10);
        assert_eq!(config.grpc_max_in_flight, 20);
        assert!(!format!("{config:?}").contains("0123456789abcdef-token"));
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
    fn usage_retention_is_whole_months() {
        assert_eq!(ServeConfig::default().usage_retention_months, 13);
        for (text, months) in [("1", 1), ("13mo", 13), ("24 months", 24), ("1200", 1200)] {
            let config = ServeConfig::from_env(&env(&[(USAGE_RETENTION, text)])).unwrap();
            assert_eq!(config.usage_retention_months, months, "{text}");
        }
        for text in ["0", "1201", "13d", "-1", "many"] {
            let error = ServeConfig::from_env(&env(&[(USAGE_RETENTION, text)])).unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("invalid KEYSYNC_USAGE_RETENTION='{text}': ")),
                "{error}"
            );
        }
    }

    #[test]
    fn the_usage_export_needs_brokers_and_checks_its_values() {
        assert_eq!(ServeConfig::default().usage_export, None);
        let config = ServeConfig::from_env(&env(&[(
            USAGE_EXPORT_KAFKA_BROKERS,
            "kafka-1:9092, 10.0.0.7:9093,[::1]:9094",
        )]))
        .unwrap();
        assert_eq!(
            config.usage_export,
            Some(ExportSettings {
                brokers: vec![
                    "kafka-1:9092".into(),
                    "10.0.0.7:9093".into(),
                    "[::1]:9094".into()
                ],
                topic: "keysync.usage".into(),
                backlog: 100_000,
            })
        );
        let config = ServeConfig::from_env(&env(&[
            (USAGE_EXPORT_KAFKA_BROKERS, "127.0.0.1:9092"),
            (USAGE_EXPORT_TOPIC, "billing.usage-v1"),
            (USAGE_EXPORT_BACKLOG, "500"),
        ]))
        .unwrap();
        let export = config.usage_export.unwrap();
        assert_eq!(export.topic, "billing.usage-v1");
        assert_eq!(export.backlog, 500);
        for (name, value) in [
            (USAGE_EXPORT_KAFKA_BROKERS, "kafka-1"),
            (USAGE_EXPORT_KAFKA_BROKERS, "kafka-1:0"),
            (USAGE_EXPORT_KAFKA_BROKERS, "kafka-1:9092,"),
            (USAGE_EXPORT_KAFKA_BROKERS, "kafka://kafka-1:9092"),
            (USAGE_EXPORT_KAFKA_BROKERS, "bad host:9092"),
        ] {
            let error = ServeConfig::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(error.name, name, "{value}");
        }
        for (name, value) in [
            (USAGE_EXPORT_TOPIC, "a topic"),
            (USAGE_EXPORT_TOPIC, ".."),
            (USAGE_EXPORT_TOPIC, ""),
            (USAGE_EXPORT_BACKLOG, "0"),
            (USAGE_EXPORT_BACKLOG, "lots"),
        ] {
            let error = ServeConfig::from_env(&env(&[
                (USAGE_EXPORT_KAFKA_BROKERS, "127.0.0.1:9092"),
                (name, value),
            ]))
            .unwrap_err();
            assert_eq!(error.name, name, "{value}");
        }
        // Settings of an export that is off are a mistake, not ignored.
        let error = ServeConfig::from_env(&env(&[(USAGE_EXPORT_TOPIC, "usage")])).unwrap_err();
        assert!(error.reason.contains(USAGE_EXPORT_KAFKA_BROKERS), "{error}");
        // Credentials are refused without being shown.
        let error = ServeConfig::from_env(&env(&[(
            USAGE_EXPORT_KAFKA_BROKERS,
            "user:s3cret@kafka-1:9092",
        )]))
        .unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
    }

    #[test]
    fn anomaly_detection_is_on_by_default_and_its_settings_are_checked() {
        let defaults = ServeConfig::from_env(&env(&[])).unwrap().anomaly.unwrap();
        assert_eq!(defaults.interval, Duration::from_secs(60));
        assert_eq!(defaults.close_delay, Duration::from_secs(60));
        assert_eq!(defaults.thresholds, Thresholds::default());
        let config = ServeConfig::from_env(&env(&[
            (ANOMALY_INTERVAL, "5m"),
            (ANOMALY_CLOSE_DELAY, "30s"),
            (ANOMALY_BASELINE_WEEKS, "6"),
            (ANOMALY_SPIKE_FACTOR, "4"),
            (ANOMALY_SPIKE_FLOOR, "500"),
            (ANOMALY_DROP_BUSY_FLOOR, "2000"),
            (ANOMALY_DROP_RATIO, "10%"),
            (ANOMALY_SHARE_FACTOR, "2.5"),
            (ANOMALY_SHARE_MIN, "0.02"),
            (ANOMALY_SHARE_FLOOR, "50"),
        ]))
        .unwrap();
        assert_eq!(
            config.anomaly,
            Some(AnomalySettings {
                interval: Duration::from_secs(300),
                close_delay: Duration::from_secs(30),
                thresholds: Thresholds {
                    baseline_weeks: 6,
                    spike_factor: 4.0,
                    spike_floor: 500,
                    drop_busy_floor: 2000,
                    drop_ratio: 0.1,
                    share_factor: 2.5,
                    share_min: 0.02,
                    share_floor: 50,
                },
            })
        );
        assert_eq!(
            ServeConfig::from_env(&env(&[(ANOMALY_INTERVAL, "off")]))
                .unwrap()
                .anomaly,
            None
        );
        // Thresholds of a detection that is off are a mistake, not ignored.
        let error = ServeConfig::from_env(&env(&[
            (ANOMALY_INTERVAL, "off"),
            (ANOMALY_SPIKE_FACTOR, "4"),
        ]))
        .unwrap_err();
        assert_eq!(error.name, ANOMALY_SPIKE_FACTOR);
        assert!(error.reason.contains(ANOMALY_INTERVAL), "{error}");
        for (name, value) in [
            (ANOMALY_INTERVAL, "0s"),
            (ANOMALY_CLOSE_DELAY, "2h"),
            (ANOMALY_BASELINE_WEEKS, "0"),
            (ANOMALY_SPIKE_FACTOR, "1"),
            (ANOMALY_SPIKE_FLOOR, "0"),
            (ANOMALY_DROP_BUSY_FLOOR, "-5"),
            (ANOMALY_DROP_RATIO, "100%"),
            (ANOMALY_SHARE_FACTOR, "many"),
            (ANOMALY_SHARE_MIN, "2"),
            (ANOMALY_SHARE_FLOOR, "1.5"),
        ] {
            let error = ServeConfig::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(error.name, name, "{value}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("invalid {name}='{value}': ")),
                "{error}"
            );
        }
        // The baseline must be within the usage kept.
        let error = ServeConfig::from_env(&env(&[
            (USAGE_RETENTION, "1"),
            (ANOMALY_BASELINE_WEEKS, "5"),
        ]))
        .unwrap_err();
        assert_eq!(error.name, ANOMALY_BASELINE_WEEKS);
        assert!(error.reason.contains(USAGE_RETENTION), "{error}");
        assert!(ServeConfig::from_env(&env(&[
            (USAGE_RETENTION, "1"),
            (ANOMALY_BASELINE_WEEKS, "4"),
        ]))
        .is_ok());
    }

    #[test]
    fn a_redis_ca_goes_with_a_tls_url_only() {
        let dir = std::env::temp_dir().join(format!("keysync-config-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        let path = path.display().to_string();

        let config = ServeConfig::from_env(&env(&[
            (REDIS_URL, "rediss://127.0.0.1:6380/0"),
            (REDIS_TLS_CA, &path),
        ]))
        .unwrap();
        let url = config.redis_url.unwrap();
        assert_eq!(url.ca().unwrap().path(), Path::new(&path));

        let error = ServeConfig::from_env(&env(&[
            (REDIS_URL, "redis://127.0.0.1:6379/0"),
            (REDIS_TLS_CA, &path),
        ]))
        .unwrap_err();
        assert_eq!(error.name, REDIS_TLS_CA);
        assert!(error.reason.contains("not a TLS URL"), "{error}");

        let missing = dir.join("missing.pem").display().to_string();
        let error = ServeConfig::from_env(&env(&[
            (REDIS_URL, "rediss://127.0.0.1:6380/0"),
            (REDIS_TLS_CA, &missing),
        ]))
        .unwrap_err();
        assert_eq!(error.name, REDIS_TLS_CA);
        assert!(error
            .to_string()
            .starts_with(&format!("invalid KEYSYNC_REDIS_TLS_CA='{missing}': ")));
        // Without REDIS_URL there is nothing to check Redis with.
        let config = ServeConfig::from_env(&env(&[(REDIS_TLS_CA, &missing)])).unwrap();
        assert_eq!(config.redis_url, None);
        std::fs::remove_dir_all(&dir).unwrap();
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
