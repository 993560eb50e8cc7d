//! The plugin configuration: JSON in `plugin_config.configuration`, validated once when
//! Envoy loads the plugin. A bad configuration is refused whole, with a clear message.
//!
//! The same `.wasm` plays three roles, chosen by `role`: `"auth"` (the HTTP filter on every
//! worker), `"sync"` (the singleton bootstrap service that keeps the store current) and
//! `"ready"` (an HTTP filter on the probe listener's `/ready` route that answers 503 until
//! the store holds a complete sync: `readiness`).

use keysync_contract::credential_sources::{CredentialSources, RawSource};
use keysync_contract::public_path;
use keysync_contract::usage_endpoint::{DEFAULT_MAX_ENDPOINTS, MAX_ENDPOINTS};
use serde::Deserialize;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub enum PluginConfig {
    Auth(AuthConfig),
    Sync(SyncConfig),
    /// The readiness gate: no settings of its own.
    Ready,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Refuse requests with 503 when the key cannot be checked.
    Closed,
    /// Let them through, without identity headers.
    Open,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitMode {
    /// Counted in shared data: exact across this Envoy's workers.
    Local,
    /// Left to Envoy's rate-limit filter and a rate-limit service (keysync on Redis):
    /// the filter only sets the descriptor headers.
    Global,
    Off,
}

/// Which forwarded requests usage metering times (`usage_durations`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageDurations {
    /// A sample: each key's first few requests of every worker tick
    /// (`duration_sample`); every request of a key that sends few.
    Sampled,
    /// Every request: exact sums, for two more host calls a request.
    All,
}

/// Where usage metering learns the endpoint (the route's name) a request is counted
/// under (`usage_endpoints`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageEndpoints {
    /// Not at all: every request counts under the endpoint `-`, for no host call.
    Off,
    /// The request header [`keysync_contract::usage_endpoint::ENDPOINT_HEADER`], which
    /// a header-mutation filter removes from every request and its per-route
    /// configuration sets to the route's name (`envoy/render.py` renders both). One
    /// header read for each request of a recognized key; the configuration must remove
    /// a client's own value, or clients choose the endpoint they are counted under.
    Header,
    /// The route's name, read from Envoy (`xds.route_name`): works in any Envoy
    /// configuration; as a property it costs the wasm filter about 1 us a request more
    /// (bench/RESULTS.md), the native filter one call (its template's default).
    RouteName,
}

/// Where a route's required scopes are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteScopes {
    /// The route's metadata (`filter_metadata.keysync.scopes`), an Envoy property the
    /// filter reads on every authenticated request: works in any Envoy configuration,
    /// for about 1 us a request.
    Metadata,
    /// The request header [`keysync_contract::key_policy::ROUTE_SCOPES_HEADER`], which a
    /// header-mutation filter's per-route configuration sets on the routes that require
    /// scopes (`envoy/render.py` renders it from `BACKEND_SCOPES`, beside the metadata).
    /// A header read costs next to nothing, but a route whose metadata requires scopes
    /// without that per-route header requires none here: for generated configurations.
    Header,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AuthConfig {
    pub keysync_cluster: String,
    pub failure_mode: FailureMode,
    pub public_paths: Vec<PathRule>,
    /// Paths answered without a key like public ones once the store holds a complete
    /// sync, and 503 `auth_unavailable` before (`/health` unless set): the gateway's own
    /// readiness, for load balancers and `make run`.
    pub ready_paths: Vec<PathRule>,
    pub forward_credential: bool,
    /// Where a request's key may be, in order (`credentials`; the contract's two
    /// headers unless set).
    pub credentials: CredentialSources,
    /// Keys issued before checksums (see `keysync_contract::key_format`) are accepted.
    /// Turn off once every such key was rotated: a made-up key then never costs a
    /// lookup, whatever its form.
    pub accept_legacy_keys: bool,
    /// Status for unknown, revoked, expired and malformed keys: 403 (default) or 401.
    pub invalid_key_status: u32,
    pub miss_lookup: MissLookup,
    /// When the store's data was last confirmed against PostgreSQL longer ago than this,
    /// the store is not trusted: keys are asked of keysync (whose answers must be as
    /// fresh), or requests are treated as "cannot tell" (503, or forwarded without
    /// identity under `failure_mode: open`). 15 minutes unless set; `"off"` turns it off.
    pub max_staleness: Option<Duration>,
    pub rate_limit: RateLimitMode,
    pub route_scopes: RouteScopes,
    pub usage_durations: UsageDurations,
    pub usage_endpoints: UsageEndpoints,
    /// Distinct named endpoints this Envoy counts (shared by its workers); requests of
    /// further route names count under `(other)`.
    pub usage_max_endpoints: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MissLookup {
    pub enabled: bool,
    pub timeout: Duration,
    /// Per worker: lookups beyond this are answered from the store alone.
    pub max_in_flight: u32,
    /// How long a key keysync did not know is refused without asking again.
    pub negative_ttl: Duration,
    /// Per worker: bound on remembered unknown keys.
    pub negative_cache_entries: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SyncConfig {
    pub keysync_cluster: String,
    pub refresh_interval: Duration,
    pub request_timeout: Duration,
    pub page_size: u32,
    /// Ceiling of the retry backoff after failed refreshes and broken watch streams.
    pub max_retry_interval: Duration,
    /// Hold a `WatchKeys` stream open to keysync (the push path). Without it the store
    /// changes only at refreshes (and through the miss path).
    pub watch: bool,
    /// A watch stream silent for this long (keysync sends heartbeats) is presumed dead
    /// and reopened.
    pub watch_idle_timeout: Duration,
    /// A stream whose keysync says it last confirmed its keys against PostgreSQL longer
    /// ago than this (cut off from the database, while still heartbeating) is dropped
    /// and reopened, perhaps to a keysync that is not cut off. keysync confirms every
    /// 2 s and heartbeats every second.
    pub max_unconfirmed: Duration,
    /// How often the usage counters are reported to keysync (`ReportUsage`); `None`
    /// (`"off"` or `"0s"`) turns usage metering off, in the workers too.
    pub usage_flush_interval: Option<Duration>,
}

impl SyncConfig {
    /// Every default, for `keysync_cluster`: what a stand-by sync service in a worker
    /// uses when the singleton left no configuration. `None` only if the defaults
    /// themselves were invalid.
    pub fn defaults(keysync_cluster: &str) -> Option<SyncConfig> {
        let raw = RawConfig {
            keysync_cluster: Some(keysync_cluster.to_string()),
            ..RawConfig::default()
        };
        sync_config(raw, keysync_cluster.to_string()).ok()
    }
}

/// A path that passes without a key: exact (`/health`) or a prefix (`/public/*`).
/// A prefix covers only paths that every common backend reads as their bytes spell
/// (`keysync_contract::public_path`): `/public/%2e%2e;/api` is not under `/public/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathRule {
    Exact(String),
    Prefix(String),
}

impl PathRule {
    fn parse(setting: &str, rule: &str) -> Result<Self, ConfigError> {
        if !rule.starts_with('/') {
            return Err(ConfigError(format!(
                "{setting}: {rule:?} must start with '/'"
            )));
        }
        Ok(match rule.strip_suffix('*') {
            Some(prefix) => PathRule::Prefix(prefix.to_string()),
            None => PathRule::Exact(rule.to_string()),
        })
    }

    /// `path` is the request's `:path`; its query string is ignored.
    pub fn matches(&self, path: &[u8]) -> bool {
        let path = match path.iter().position(|&b| b == b'?') {
            Some(end) => path.get(..end).unwrap_or(path),
            None => path,
        };
        match self {
            PathRule::Exact(exact) => path == exact.as_bytes(),
            PathRule::Prefix(prefix) => {
                path.starts_with(prefix.as_bytes()) && public_path::is_unambiguous(path)
            }
        }
    }
}

fn path_rules(setting: &str, rules: Vec<String>) -> Result<Vec<PathRule>, ConfigError> {
    rules
        .iter()
        .map(|rule| PathRule::parse(setting, rule))
        .collect()
}

#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid keysync plugin configuration: {}", self.0)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    role: Option<String>,
    keysync_cluster: Option<String>,
    failure_mode: Option<FailureMode>,
    public_paths: Option<Vec<String>>,
    ready_paths: Option<Vec<String>>,
    forward_credential: Option<bool>,
    credentials: Option<Vec<RawSource>>,
    accept_legacy_keys: Option<bool>,
    invalid_key_status: Option<u32>,
    miss_lookup: Option<RawMissLookup>,
    max_staleness: Option<String>,
    rate_limit: Option<RateLimitMode>,
    route_scopes: Option<RouteScopes>,
    usage_durations: Option<UsageDurations>,
    usage_endpoints: Option<UsageEndpoints>,
    usage_max_endpoints: Option<usize>,
    refresh_interval: Option<String>,
    request_timeout: Option<String>,
    page_size: Option<u32>,
    max_retry_interval: Option<String>,
    watch: Option<bool>,
    watch_idle_timeout: Option<String>,
    max_unconfirmed: Option<String>,
    usage_flush_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMissLookup {
    enabled: Option<bool>,
    timeout: Option<String>,
    max_in_flight: Option<u32>,
    negative_ttl: Option<String>,
    negative_cache_entries: Option<usize>,
}

const DEFAULT_CLUSTER: &str = "keysync";

/// The contract's keyless health path, answered from the store's readiness.
const DEFAULT_READY_PATH: &str = "/health";

/// The old gateway's own worst case for a revoked key: its 15-minute refresh.
const DEFAULT_MAX_STALENESS: &str = "15m";

impl PluginConfig {
    /// Parses the plugin configuration; empty means an auth filter with every default.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = if bytes.iter().all(u8::is_ascii_whitespace) {
            RawConfig::default()
        } else {
            serde_json::from_slice(bytes).map_err(|e| ConfigError(e.to_string()))?
        };
        let cluster = raw
            .keysync_cluster
            .clone()
            .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
        if cluster.is_empty() {
            return Err(ConfigError("keysync_cluster must not be empty".into()));
        }
        match raw.role.as_deref().unwrap_or("auth") {
            "auth" => Ok(PluginConfig::Auth(auth_config(raw, cluster)?)),
            "sync" => Ok(PluginConfig::Sync(sync_config(raw, cluster)?)),
            "ready" => ready_config(&raw).map(|()| PluginConfig::Ready),
            other => Err(ConfigError(format!(
                "role must be \"auth\", \"sync\" or \"ready\", not {other:?}"
            ))),
        }
    }
}

fn auth_config(raw: RawConfig, keysync_cluster: String) -> Result<AuthConfig, ConfigError> {
    reject_fields(
        "sync",
        &[
            ("refresh_interval", raw.refresh_interval.is_some()),
            ("request_timeout", raw.request_timeout.is_some()),
            ("page_size", raw.page_size.is_some()),
            ("max_retry_interval", raw.max_retry_interval.is_some()),
            ("watch", raw.watch.is_some()),
            ("watch_idle_timeout", raw.watch_idle_timeout.is_some()),
            ("max_unconfirmed", raw.max_unconfirmed.is_some()),
            ("usage_flush_interval", raw.usage_flush_interval.is_some()),
        ],
    )?;
    let invalid_key_status = raw.invalid_key_status.unwrap_or(403);
    if !matches!(invalid_key_status, 401 | 403) {
        return Err(ConfigError(format!(
            "invalid_key_status must be 401 or 403, not {invalid_key_status}"
        )));
    }
    let public_paths = path_rules("public_paths", raw.public_paths.unwrap_or_default())?;
    let ready_paths = path_rules(
        "ready_paths",
        raw.ready_paths
            .unwrap_or_else(|| vec![DEFAULT_READY_PATH.to_string()]),
    )?;
    let miss = raw.miss_lookup.unwrap_or(RawMissLookup {
        enabled: None,
        timeout: None,
        max_in_flight: None,
        negative_ttl: None,
        negative_cache_entries: None,
    });
    let miss_lookup = MissLookup {
        enabled: miss.enabled.unwrap_or(true),
        timeout: duration("miss_lookup.timeout", miss.timeout, "1s")?,
        max_in_flight: miss.max_in_flight.unwrap_or(64),
        negative_ttl: duration("miss_lookup.negative_ttl", miss.negative_ttl, "30s")?,
        negative_cache_entries: miss.negative_cache_entries.unwrap_or(10_000),
    };
    if miss_lookup.max_in_flight == 0 {
        return Err(ConfigError(
            "miss_lookup.max_in_flight must be at least 1 (set enabled: false to turn lookups off)"
                .into(),
        ));
    }
    let credentials = match &raw.credentials {
        Some(sources) => CredentialSources::new(sources).map_err(ConfigError)?,
        None => CredentialSources::default(),
    };
    let usage_max_endpoints = raw.usage_max_endpoints.unwrap_or(DEFAULT_MAX_ENDPOINTS);
    if !(1..=MAX_ENDPOINTS).contains(&usage_max_endpoints) {
        return Err(ConfigError(format!(
            "usage_max_endpoints must be between 1 and {MAX_ENDPOINTS}, not {usage_max_endpoints}"
        )));
    }
    Ok(AuthConfig {
        keysync_cluster,
        failure_mode: raw.failure_mode.unwrap_or(FailureMode::Closed),
        public_paths,
        ready_paths,
        forward_credential: raw.forward_credential.unwrap_or(false),
        credentials,
        accept_legacy_keys: raw.accept_legacy_keys.unwrap_or(true),
        invalid_key_status,
        miss_lookup,
        // "off" is allowed but not recommended: a store nobody confirms then serves
        // revoked keys for as long as it lives.
        max_staleness: match raw.max_staleness.as_deref() {
            Some("off") => None,
            other => Some(duration(
                "max_staleness",
                other.map(str::to_string),
                DEFAULT_MAX_STALENESS,
            )?),
        },
        rate_limit: raw.rate_limit.unwrap_or(RateLimitMode::Local),
        route_scopes: raw.route_scopes.unwrap_or(RouteScopes::Metadata),
        usage_durations: raw.usage_durations.unwrap_or(UsageDurations::Sampled),
        usage_endpoints: raw.usage_endpoints.unwrap_or(UsageEndpoints::Off),
        usage_max_endpoints,
    })
}

/// The readiness gate reads the store and nothing else: every other setting is refused.
fn ready_config(raw: &RawConfig) -> Result<(), ConfigError> {
    let RawConfig {
        role: _,
        keysync_cluster,
        failure_mode,
        public_paths,
        ready_paths,
        forward_credential,
        credentials,
        accept_legacy_keys,
        invalid_key_status,
        miss_lookup,
        max_staleness,
        rate_limit,
        route_scopes,
        usage_durations,
        usage_endpoints,
        usage_max_endpoints,
        refresh_interval,
        request_timeout,
        page_size,
        max_retry_interval,
        watch,
        watch_idle_timeout,
        max_unconfirmed,
        usage_flush_interval,
    } = raw;
    let set = [
        ("keysync_cluster", keysync_cluster.is_some()),
        ("failure_mode", failure_mode.is_some()),
        ("public_paths", public_paths.is_some()),
        ("ready_paths", ready_paths.is_some()),
        ("forward_credential", forward_credential.is_some()),
        ("credentials", credentials.is_some()),
        ("accept_legacy_keys", accept_legacy_keys.is_some()),
        ("invalid_key_status", invalid_key_status.is_some()),
        ("miss_lookup", miss_lookup.is_some()),
        ("max_staleness", max_staleness.is_some()),
        ("rate_limit", rate_limit.is_some()),
        ("route_scopes", route_scopes.is_some()),
        ("usage_durations", usage_durations.is_some()),
        ("usage_endpoints", usage_endpoints.is_some()),
        ("usage_max_endpoints", usage_max_endpoints.is_some()),
        ("refresh_interval", refresh_interval.is_some()),
        ("request_timeout", request_timeout.is_some()),
        ("page_size", page_size.is_some()),
        ("max_retry_interval", max_retry_interval.is_some()),
        ("watch", watch.is_some()),
        ("watch_idle_timeout", watch_idle_timeout.is_some()),
        ("max_unconfirmed", max_unconfirmed.is_some()),
        ("usage_flush_interval", usage_flush_interval.is_some()),
    ];
    match set.iter().find(|(_, present)| *present) {
        Some((name, _)) => Err(ConfigError(format!(
            "role \"ready\" takes no settings, not {name}"
        ))),
        None => Ok(()),
    }
}

fn sync_config(raw: RawConfig, keysync_cluster: String) -> Result<SyncConfig, ConfigError> {
    reject_fields(
        "auth",
        &[
            ("failure_mode", raw.failure_mode.is_some()),
            ("public_paths", raw.public_paths.is_some()),
            ("ready_paths", raw.ready_paths.is_some()),
            ("forward_credential", raw.forward_credential.is_some()),
            ("credentials", raw.credentials.is_some()),
            ("accept_legacy_keys", raw.accept_legacy_keys.is_some()),
            ("invalid_key_status", raw.invalid_key_status.is_some()),
            ("miss_lookup", raw.miss_lookup.is_some()),
            ("max_staleness", raw.max_staleness.is_some()),
            ("rate_limit", raw.rate_limit.is_some()),
            ("route_scopes", raw.route_scopes.is_some()),
            ("usage_durations", raw.usage_durations.is_some()),
            ("usage_endpoints", raw.usage_endpoints.is_some()),
            ("usage_max_endpoints", raw.usage_max_endpoints.is_some()),
        ],
    )?;
    let config = SyncConfig {
        keysync_cluster,
        refresh_interval: duration("refresh_interval", raw.refresh_interval, "15m")?,
        request_timeout: duration("request_timeout", raw.request_timeout, "10s")?,
        page_size: raw.page_size.unwrap_or(5000),
        max_retry_interval: duration("max_retry_interval", raw.max_retry_interval, "60s")?,
        watch: raw.watch.unwrap_or(true),
        watch_idle_timeout: duration("watch_idle_timeout", raw.watch_idle_timeout, "15s")?,
        max_unconfirmed: duration("max_unconfirmed", raw.max_unconfirmed, "5s")?,
        usage_flush_interval: usage_flush_interval(raw.usage_flush_interval.as_deref())?,
    };
    if config.refresh_interval < Duration::from_secs(1) {
        return Err(ConfigError("refresh_interval must be at least 1s".into()));
    }
    if !(1..=10_000).contains(&config.page_size) {
        return Err(ConfigError("page_size must be between 1 and 10000".into()));
    }
    Ok(config)
}

/// `"off"` and zero turn metering off; otherwise at least a second (each flush reads
/// every usage slot).
fn usage_flush_interval(value: Option<&str>) -> Result<Option<Duration>, ConfigError> {
    let text = value.unwrap_or("10s");
    if text == "off" {
        return Ok(None);
    }
    let parsed = humantime::parse_duration(text).map_err(|e| {
        ConfigError(format!(
            "usage_flush_interval: {text:?} is not a duration or \"off\" ({e})"
        ))
    })?;
    if parsed.is_zero() {
        return Ok(None);
    }
    if parsed < Duration::from_secs(1) {
        return Err(ConfigError(
            "usage_flush_interval must be at least 1s (or \"off\")".into(),
        ));
    }
    Ok(Some(parsed))
}

fn reject_fields(role: &str, fields: &[(&str, bool)]) -> Result<(), ConfigError> {
    match fields.iter().find(|(_, present)| *present) {
        Some((name, _)) => Err(ConfigError(format!(
            "{name} only applies to role \"{role}\""
        ))),
        None => Ok(()),
    }
}

fn duration(name: &str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let text = value.as_deref().unwrap_or(default);
    let parsed = humantime::parse_duration(text)
        .map_err(|e| ConfigError(format!("{name}: {text:?} is not a duration ({e})")))?;
    if parsed.is_zero() {
        return Err(ConfigError(format!("{name} must be greater than zero")));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(json: &str) -> AuthConfig {
        match PluginConfig::parse(json.as_bytes()).unwrap() {
            PluginConfig::Auth(config) => config,
            other => panic!("expected auth, got {other:?}"),
        }
    }

    fn error(json: &str) -> String {
        PluginConfig::parse(json.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn credentials_are_the_contracts_headers_unless_listed() {
        assert_eq!(auth("").credentials, CredentialSources::default());
        let listed = auth(r#"{"credentials":[{"query":"api_key"},{"cookie":"session"}]}"#);
        assert!(listed.credentials.beyond_headers());
        assert_eq!(listed.credentials.sources().len(), 2);
        for (json, reason) in [
            (r#"{"credentials":[]}"#, "credentials must list"),
            (
                r#"{"credentials":[{"query":"a b"}]}"#,
                "credentials[0]: query name",
            ),
            (
                r#"{"credentials":[{"header":"x","scheme":"Basic"}]}"#,
                "scheme must be",
            ),
            (r#"{"credentials":[{"form":"k"}]}"#, "unknown field `form`"),
            (
                r#"{"role":"sync","credentials":[{"query":"k"}]}"#,
                "credentials only applies to role \"auth\"",
            ),
            (
                r#"{"role":"ready","credentials":[{"query":"k"}]}"#,
                "takes no settings, not credentials",
            ),
        ] {
            let message = error(json);
            assert!(message.contains(reason), "{json}: {message}");
            assert!(message.starts_with("invalid keysync plugin configuration"));
        }
    }

    #[test]
    fn empty_configuration_is_an_auth_filter_with_defaults() {
        let config = auth("");
        assert_eq!(config.keysync_cluster, "keysync");
        assert_eq!(config.failure_mode, FailureMode::Closed);
        assert_eq!(config.invalid_key_status, 403);
        assert!(!config.forward_credential);
        assert!(
            config.accept_legacy_keys,
            "legacy keys keep working until turned off"
        );
        assert!(config.public_paths.is_empty());
        assert_eq!(
            config.ready_paths,
            vec![PathRule::Exact("/health".into())],
            "the contract's keyless /health, answered from the store's readiness"
        );
        assert!(config.miss_lookup.enabled);
        assert_eq!(config.miss_lookup.negative_ttl, Duration::from_secs(30));
        assert_eq!(
            config.max_staleness,
            Some(Duration::from_secs(15 * 60)),
            "on by default: the old gateway's worst case"
        );
        assert_eq!(auth(r#"{"max_staleness":"off"}"#).max_staleness, None);
        assert_eq!(config.rate_limit, RateLimitMode::Local);
        assert_eq!(config.usage_durations, UsageDurations::Sampled);
        assert_eq!(
            (config.usage_endpoints, config.usage_max_endpoints),
            (UsageEndpoints::Off, 100),
            "no host call for endpoints unless the configuration says where they are"
        );
        assert_eq!(auth("{}"), config);
    }

    #[test]
    fn parses_a_full_auth_configuration() {
        let config = auth(
            r#"{"role":"auth","keysync_cluster":"ks","failure_mode":"open",
                "public_paths":["/health","/docs/*"],"forward_credential":true,
                "invalid_key_status":401,"max_staleness":"2m",
                "miss_lookup":{"enabled":false,"timeout":"250ms","max_in_flight":8,
                               "negative_ttl":"5s","negative_cache_entries":100}}"#,
        );
        assert_eq!(config.keysync_cluster, "ks");
        assert_eq!(config.failure_mode, FailureMode::Open);
        assert_eq!(config.invalid_key_status, 401);
        assert!(config.forward_credential);
        assert_eq!(config.public_paths[1], PathRule::Prefix("/docs/".into()));
        assert!(!config.miss_lookup.enabled);
        assert_eq!(config.miss_lookup.timeout, Duration::from_millis(250));
        assert_eq!(config.miss_lookup.max_in_flight, 8);
        assert_eq!(config.miss_lookup.negative_cache_entries, 100);
        assert_eq!(config.max_staleness, Some(Duration::from_secs(120)));
        assert_eq!(
            auth(r#"{"rate_limit":"global"}"#).rate_limit,
            RateLimitMode::Global
        );
        assert_eq!(
            auth(r#"{"rate_limit":"off"}"#).rate_limit,
            RateLimitMode::Off
        );
    }

    #[test]
    fn parses_a_sync_configuration() {
        let PluginConfig::Sync(config) =
            PluginConfig::parse(br#"{"role":"sync","refresh_interval":"2s","page_size":100}"#)
                .unwrap()
        else {
            panic!("expected sync");
        };
        assert_eq!(config.refresh_interval, Duration::from_secs(2));
        assert_eq!(config.page_size, 100);
        assert_eq!(config.request_timeout, Duration::from_secs(10));
        assert_eq!(config.watch_idle_timeout, Duration::from_secs(15));
        assert_eq!(config.max_unconfirmed, Duration::from_secs(5));
        assert!(config.watch, "the push path is on by default");
        assert_eq!(config.usage_flush_interval, Some(Duration::from_secs(10)));
    }

    #[test]
    fn usage_metering_can_be_turned_off() {
        let interval = |json: &str| match PluginConfig::parse(json.as_bytes()).unwrap() {
            PluginConfig::Sync(config) => config.usage_flush_interval,
            other => panic!("expected sync, got {other:?}"),
        };
        assert_eq!(
            interval(r#"{"role":"sync","usage_flush_interval":"30s"}"#),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            interval(r#"{"role":"sync","usage_flush_interval":"off"}"#),
            None
        );
        assert_eq!(
            interval(r#"{"role":"sync","usage_flush_interval":"0s"}"#),
            None
        );
        assert!(error(r#"{"role":"sync","usage_flush_interval":"100ms"}"#).contains("at least 1s"));
        assert!(
            error(r#"{"role":"sync","usage_flush_interval":"often"}"#).contains("not a duration")
        );
        assert!(error(r#"{"usage_flush_interval":"10s"}"#).contains("only applies"));
        // Which requests are timed is the workers' (auth) setting.
        assert_eq!(
            auth(r#"{"usage_durations":"all"}"#).usage_durations,
            UsageDurations::All
        );
        assert!(error(r#"{"usage_durations":"some"}"#).contains("unknown variant"));
        assert!(error(r#"{"role":"sync","usage_durations":"all"}"#).contains("only applies"));
    }

    #[test]
    fn usage_endpoints_come_from_a_header_or_the_route_name_bounded() {
        let config = auth(r#"{"usage_endpoints":"header","usage_max_endpoints":1000}"#);
        assert_eq!(config.usage_endpoints, UsageEndpoints::Header);
        assert_eq!(config.usage_max_endpoints, 1000);
        assert_eq!(
            auth(r#"{"usage_endpoints":"route_name"}"#).usage_endpoints,
            UsageEndpoints::RouteName
        );
        assert_eq!(
            auth(r#"{"usage_endpoints":"off"}"#).usage_endpoints,
            UsageEndpoints::Off
        );
        assert!(error(r#"{"usage_endpoints":"path"}"#).contains("unknown variant"));
        for bad in [0, 1001] {
            assert!(
                error(&format!(r#"{{"usage_max_endpoints":{bad}}}"#))
                    .contains("usage_max_endpoints must be between 1 and 1000"),
                "{bad}"
            );
        }
        assert!(error(r#"{"role":"sync","usage_endpoints":"header"}"#).contains("only applies"));
        assert!(error(r#"{"role":"sync","usage_max_endpoints":5}"#).contains("only applies"));
    }

    #[test]
    fn a_stand_by_falls_back_to_the_sync_defaults() {
        let config = SyncConfig::defaults("ks").unwrap();
        assert_eq!(config.keysync_cluster, "ks");
        assert_eq!(config.refresh_interval, Duration::from_secs(15 * 60));
        assert!(config.watch);
    }

    #[test]
    fn refuses_bad_configurations_with_a_reason() {
        assert!(error("{not json").contains("invalid keysync plugin configuration"));
        assert!(error(r#"{"rol":"auth"}"#).contains("unknown field"));
        assert!(error(r#"{"role":"proxy"}"#).contains("role must be"));
        assert!(error(r#"{"failure_mode":"maybe"}"#).contains("unknown variant"));
        assert!(error(r#"{"invalid_key_status":500}"#).contains("401 or 403"));
        assert!(error(r#"{"public_paths":["health"]}"#).contains("must start with '/'"));
        assert!(error(r#"{"keysync_cluster":""}"#).contains("must not be empty"));
        assert!(error(r#"{"refresh_interval":"1m"}"#).contains("only applies to role \"sync\""));
        assert!(error(r#"{"role":"sync","public_paths":[]}"#).contains("only applies"));
        assert!(error(r#"{"role":"sync","refresh_interval":"soon"}"#).contains("not a duration"));
        assert!(error(r#"{"role":"sync","refresh_interval":"10ms"}"#).contains("at least 1s"));
        assert!(error(r#"{"role":"sync","page_size":0}"#).contains("page_size"));
        assert!(error(r#"{"miss_lookup":{"timeout":"0s"}}"#).contains("greater than zero"));
        assert!(error(r#"{"miss_lookup":{"max_in_flight":0}}"#).contains("at least 1"));
        assert!(error(r#"{"max_staleness":"0s"}"#).contains("greater than zero"));
        assert!(error(r#"{"role":"sync","max_staleness":"1m"}"#).contains("only applies"));
        assert!(error(r#"{"watch_idle_timeout":"1m"}"#).contains("only applies"));
        assert!(error(r#"{"rate_limit":"cluster"}"#).contains("unknown variant"));
    }

    #[test]
    fn path_rules_ignore_the_query_string() {
        let exact = PathRule::parse("public_paths", "/health").unwrap();
        assert!(exact.matches(b"/health"));
        assert!(exact.matches(b"/health?verbose=1"));
        assert!(!exact.matches(b"/healthz"));
        assert!(!exact.matches(b"/health/deep"));
        let prefix = PathRule::parse("public_paths", "/public/*").unwrap();
        assert!(prefix.matches(b"/public/a/b"));
        assert!(!prefix.matches(b"/publicity"));
    }

    #[test]
    fn a_prefix_covers_no_path_a_backend_could_read_as_another() {
        let prefix = PathRule::parse("public_paths", "/docs/*").unwrap();
        assert!(prefix.matches(b"/docs/guide.html"));
        assert!(prefix.matches(b"/docs/guide.html?next=../../api"));
        // What Envoy leaves of /docs/%2e%2e;/api/test: Tomcat reads /api/test.
        assert!(!prefix.matches(b"/docs/..;/api/test"));
        assert!(!prefix.matches(b"/docs/%2e%2e;/api/test"));
        assert!(!prefix.matches(b"/docs\\..\\api"));
        assert!(!prefix.matches(b"/docs/..%2fapi"));
    }

    #[test]
    fn ready_paths_are_set_like_public_paths() {
        let config = auth(r#"{"ready_paths":["/healthz","/status/*"],"public_paths":["/docs/*"]}"#);
        assert_eq!(
            config.ready_paths,
            vec![
                PathRule::Exact("/healthz".into()),
                PathRule::Prefix("/status/".into())
            ]
        );
        assert_eq!(auth(r#"{"ready_paths":[]}"#).ready_paths, vec![]);
        assert!(
            error(r#"{"ready_paths":["health"]}"#).contains("ready_paths: \"health\" must start")
        );
        assert!(error(r#"{"role":"sync","ready_paths":["/health"]}"#).contains("only applies"));
    }

    #[test]
    fn role_ready_takes_no_settings() {
        assert_eq!(
            PluginConfig::parse(br#"{"role":"ready"}"#),
            Ok(PluginConfig::Ready)
        );
        assert!(error(r#"{"role":"ready","public_paths":[]}"#)
            .contains("role \"ready\" takes no settings, not public_paths"));
        assert!(error(r#"{"role":"ready","keysync_cluster":"ks"}"#).contains("keysync_cluster"));
        assert!(error(r#"{"role":"ready","page_size":3}"#).contains("page_size"));
    }
}
