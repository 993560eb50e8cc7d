//! `keysync serve`: read the settings, connect, bind the listeners, and run the server
//! ([`crate::server`]) until SIGTERM or SIGINT.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{database_url, CommandError};
use crate::admin_api::ApiState;
use crate::config::{ProcessEnvironment, ServeConfig};
use crate::database;
use crate::server::{self, Listeners, Stores};
use crate::shutdown;
use crate::sync::change_listener::PgConnector;
use crate::sync::loader::PgLoader;
use crate::usage::allowance::Ceiling;
use crate::usage::store::UsageStore;

/// The settings `serve --help` lists.
pub const SERVE_ENVIRONMENT: &str = "\
Environment:
  KEYSYNC_GRPC_ADDR               gRPC listen address (default 127.0.0.1:50051): the
                                  KeySync API and Envoy's RateLimitService
  KEYSYNC_HTTP_ADDR               admin HTTP listen address (default 127.0.0.1:9090):
                                  health and metrics
  KEYSYNC_API_ADDR                operator API listen address (default 127.0.0.1:9091):
                                  /v1/ and the leak-report endpoint; off: not served
  KEYSYNC_API_MAX_BODY_BYTES      largest operator API request body (default 65536)
  KEYSYNC_API_MAX_IMPORT_BYTES    largest key import body (default 16777216)
  KEYSYNC_IDEMPOTENCY_TTL         how long an Idempotency-Key replays its first
                                  answer (default 24h)
  KEYSYNC_IDEMPOTENCY_SECRET_FILE file of at least 32 secret bytes that stored answers
                                  are sealed under, the same on every replica; unset:
                                  a secret per process (no replays after a restart)
  KEYSYNC_POLL_INTERVAL           fallback catch-up period; PostgreSQL notifications
                                  trigger catch-ups at once (default 10s)
  KEYSYNC_FULL_RELOAD_INTERVAL    full reload period, the safety net (default 15m)
  KEYSYNC_MAX_PAGE_SIZE           largest ListKeys page (default 10000)
  KEYSYNC_CHANGELOG_RECORDS       changes kept for WatchKeys clients to catch up on
                                  (default 200000)
  KEYSYNC_WATCH_CHUNK             most changes in one WatchKeys message (default 5000)
  KEYSYNC_WATCH_HEARTBEAT         quiet time before a WatchKeys heartbeat (default 1s)
  REDIS_URL                       where the rate-limit counters live, such as
                                  redis://127.0.0.1:6379/0 (rediss:// for TLS); unset:
                                  RateLimitService answers every call OK
  KEYSYNC_REDIS_TLS_CA            PEM CA that Redis's certificate must chain to
                                  (rediss:// only; default: the system's roots)
  KEYSYNC_RATELIMIT_FAILURE_MODE  while Redis cannot be reached: open (default) allows
                                  requests, closed refuses them (OVER_LIMIT)
  KEYSYNC_CONFIRM_INTERVAL        how often the key set is confirmed against PostgreSQL
                                  (the revision counter is read; default 2s)
  KEYSYNC_DB_TIMEOUT              longest wait for PostgreSQL: each query step, a
                                  pooled connection, the change listener's ping
                                  (default 5s)
  KEYSYNC_MAX_UNCONFIRMED         unconfirmed longer: /readyz 503, gRPC health
                                  NOT_SERVING, WatchKeys streams closed (default 10s)
  KEYSYNC_MAX_STALENESS           unconfirmed longer: ext_authz checks of keys answer
                                  unavailable (default 15m)
  KEYSYNC_GRPC_TOKEN              token every gRPC call must carry as
                                  `authorization: Bearer <token>` (at least 16 chars)
  KEYSYNC_GRPC_TOKEN_FILE         file holding that token (instead of the variable);
                                  read again when it changes
  KEYSYNC_GRPC_TOKENS_FILE        file of more accepted tokens, one a line: <token>
                                  (gateway) or <token> read-only (no ReportUsage,
                                  AcquireQuota or ShouldRateLimit); read again when
                                  it changes
  KEYSYNC_GATEWAY_MAX_RATE        requests a second one gateway is taken to serve at
                                  most: bounds what its usage flushes add and its
                                  quota claims ask (default 250000)
  KEYSYNC_GRPC_TLS_CERT           PEM certificate chain for TLS on the gRPC port
  KEYSYNC_GRPC_TLS_KEY            its PEM private key
  KEYSYNC_GRPC_TLS_CLIENT_CA      PEM CA that client certificates must chain to
                                  (mutual TLS)
  KEYSYNC_MAX_WATCH_STREAMS       most WatchKeys streams open at once (default 1024)
  KEYSYNC_GRPC_MAX_IN_FLIGHT      most gRPC calls in progress at once (default 1024)
  KEYSYNC_ACCEPT_LEGACY_KEYS      ext_authz: false refuses keys issued before checksums
                                  (default true)
  KEYSYNC_LEAK_PUBLIC_KEYS_FILE   public keys leak reports must be signed with, in
                                  GitHub's format; serves POST /leak-reports/github
  KEYSYNC_LEAK_ACTION             what a report of a live key does: revoke (default)
                                  or flag
  KEYSYNC_LEAK_MAX_BODY_BYTES     largest leak report body (default 1048576)
  KEYSYNC_LEAK_RELOAD_INTERVAL    how often the public keys file is read again
                                  (default 1m; also at once for an unlisted key)
  KEYSYNC_USAGE_RETENTION         months of usage kept before the current one
                                  (default 13); older monthly partitions are dropped
  KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS
                                  comma-separated host:port of Kafka brokers: export
                                  usage as CloudEvents (unset: no export)
  KEYSYNC_USAGE_EXPORT_TOPIC      the topic, which must exist (default keysync.usage)
  KEYSYNC_USAGE_EXPORT_BACKLOG    events held while Kafka is slow or down; more are
                                  dropped and counted (default 100000)
  KEYSYNC_ANOMALY_INTERVAL        how often each organization's traffic is judged
                                  against its baseline (default 1m; off: never)
  KEYSYNC_ANOMALY_CLOSE_DELAY     how long after an hour ends it is judged whole
                                  (default 1m)
  KEYSYNC_ANOMALY_BASELINE_WEEKS  weeks of the same hour that make the baseline
                                  (default 4)
  KEYSYNC_ANOMALY_SPIKE_FACTOR    a spike: this many times the median (default 5)
  KEYSYNC_ANOMALY_SPIKE_FLOOR     and at least this many requests (default 1000)
  KEYSYNC_ANOMALY_DROP_BUSY_FLOOR a drop: of an hour whose median is at least this
                                  many requests (default 1000)
  KEYSYNC_ANOMALY_DROP_RATIO      to at most this share of it (default 5%)
  KEYSYNC_ANOMALY_SHARE_FACTOR    refusals or upstream 5xx: this many times their
                                  usual share (default 3)
  KEYSYNC_ANOMALY_SHARE_MIN       and at least this share (default 5%)
  KEYSYNC_ANOMALY_SHARE_FLOOR     of at least this many requests (default 100)
  KEYSYNC_WEBHOOK_POLL_INTERVAL   longest time without reading the webhook outbox;
                                  queued deliveries wake it at once (default 10s)
  KEYSYNC_WEBHOOK_TIMEOUT         longest webhook attempt, lookup to status (default 10s)
  KEYSYNC_WEBHOOK_RETRY_FIRST     wait after a webhook's first failed attempt, doubled
                                  after each further one, jittered (default 5s)
  KEYSYNC_WEBHOOK_RETRY_MAX       longest wait between two attempts (default 1h)
  KEYSYNC_WEBHOOK_RETRY_FOR       how long a failing webhook is retried (default 24h)
  KEYSYNC_WEBHOOK_ENDPOINT_CONCURRENCY
                                  attempts to one endpoint at once (default 4)
  KEYSYNC_WEBHOOK_MAX_IN_FLIGHT   attempts at once, all endpoints (default 64)
  KEYSYNC_WEBHOOK_EXPIRY_SCAN_INTERVAL
                                  how often expired keys are looked for, to send
                                  key.expired (default 30s)
  A gRPC address beyond loopback needs a token or mutual TLS.
  RUST_LOG                        log filter (default info)";

/// Settings first (a bad one fails without a database), then the database, the
/// listeners, and the server until a signal.
pub async fn run(url: Option<String>) -> Result<(), CommandError> {
    let config = ServeConfig::from_env(&ProcessEnvironment)?;
    let pool = database::connect_serving(&database_url(url)?, config.db_timeout).await?;
    let bind = |what: &'static str, addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|cause| CommandError::Bind { what, addr, cause })
    };
    let grpc_listener = bind("gRPC", config.grpc_addr).await?;
    let http_listener = bind("admin HTTP", config.http_addr).await?;
    let api_listener = match config.api_addr {
        Some(addr) => Some(bind("operator API", addr).await?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown::cancel_on_signal(shutdown.clone()));
    let notifications = PgConnector::new(&pool);
    // No listener, no pool: the API's connections are not opened for nothing.
    let api = config.api_addr.map(|_| {
        ApiState::new(
            database::api_pool(&pool, config.db_timeout),
            config.api.clone(),
        )
        .judging_fleet(config.fleet)
    });
    let usage = UsageStore::new(
        database::usage_pool(&pool, config.db_timeout),
        Ceiling {
            rate: config.gateway_max_rate,
        },
    );
    server::run(
        &config,
        PgLoader::with_timeout(pool, config.db_timeout),
        notifications,
        Stores {
            api,
            usage: Some(usage),
        },
        Listeners {
            grpc: grpc_listener,
            http: http_listener,
            api: api_listener,
        },
        shutdown,
    )
    .await?;
    Ok(())
}
