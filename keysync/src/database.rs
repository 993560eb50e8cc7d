//! The PostgreSQL connection: parsing `DATABASE_URL`, connecting with a bounded wait
//! (with TLS as `sslmode` and `sslrootcert` ask, see [`crate::database_tls`]), applying
//! migrations, and showing the URL without its password.
//!
//! `serve` connects with every wait bounded ([`connect_serving`]): PostgreSQL cancels any
//! statement that runs longer than the query timeout (`statement_timeout`, except the
//! full snapshot's, see [`crate::sync::loader`]) and ends sessions idle inside a
//! transaction, and checks the connection with TCP keepalives from its side, so a
//! keysync that vanished does not hold a snapshot open. (sqlx offers no client-side TCP
//! keepalive; keysync notices a silent server by its own timeouts, pings and periodic
//! confirmation instead.)

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tracing::warn;
use url::Url;

use crate::database_tls::{Attempt, TlsPolicy, TlsSettings, TlsSettingsError};
use crate::{tls_failure, url_redaction};

/// How long a connection attempt (or a wait for a pooled connection) may take before
/// we report the database as unreachable rather than hang.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Enough for the serve loop (loads are serialised) plus a little headroom.
const MAX_CONNECTIONS: u32 = 4;

/// How long a `serve` session may sit idle inside a transaction before PostgreSQL ends
/// it (keysync's transactions never wait on anything but PostgreSQL itself).
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// PostgreSQL's TCP keepalives on `serve`'s connections: a peer gone silent is dropped
/// after about 10 + 3 * 5 = 25 seconds.
const SERVER_KEEPALIVES: [(&str, &str); 3] = [
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
];

/// Errors from connecting to or migrating the database.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The URL itself is wrong; it is not repeated since it may hold a password.
    #[error("invalid database URL: {reason}")]
    InvalidUrl { reason: String },
    #[error("invalid PostgreSQL TLS settings: {0}")]
    TlsSettings(#[from] TlsSettingsError),
    #[error("cannot connect to PostgreSQL at {url}: {cause}")]
    Connect { url: String, cause: String },
    #[error("cannot apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// `url` with any password (in the user-info part or a `password=` query parameter)
/// replaced by `***`, fit for logs and error messages.
pub fn redacted_url(url: &str) -> String {
    url_redaction::redact(url, |name| name.eq_ignore_ascii_case("password"))
        .unwrap_or_else(|| "<unparseable database URL>".to_owned())
}

/// A database to connect to: sqlx's options, and how TLS is used.
#[derive(Debug, Clone)]
pub struct Target {
    /// Everything but TLS, which each [`Attempt`] of `tls` sets.
    pub options: PgConnectOptions,
    pub tls: TlsPolicy,
}

/// Parses a PostgreSQL URL into connection options, reading its TLS settings (and
/// `PGSSLMODE`, `PGSSLROOTCERT`, `HOME`) as libpq does.
pub fn target(url: &str) -> Result<Target, DatabaseError> {
    target_in(url, &|name: &str| {
        std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
    })
}

/// [`target`], with the environment from `env`.
fn target_in(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, DatabaseError> {
    let parsed = Url::parse(url).map_err(|error| DatabaseError::InvalidUrl {
        reason: error.to_string(),
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(DatabaseError::InvalidUrl {
            reason: format!(
                "scheme '{}' is not postgres:// or postgresql://",
                parsed.scheme()
            ),
        });
    }
    // Before sqlx parses it: libpq's message for a bad sslmode, not sqlx's.
    let settings = TlsSettings::read(&parsed, env)?;
    let options = PgConnectOptions::from_str(url).map_err(|error| DatabaseError::InvalidUrl {
        reason: error.to_string(),
    })?;
    let over_unix_socket = options.get_socket().is_some() || options.get_host().starts_with('/');
    let tls = settings.policy(over_unix_socket, env)?;
    Ok(Target {
        options: options.application_name("keysync"),
        tls,
    })
}

/// Connects to PostgreSQL and returns a pool, failing within [`CONNECT_TIMEOUT`] with the
/// real cause when the server cannot be reached.
pub async fn connect(url: &str) -> Result<PgPool, DatabaseError> {
    connect_with(url, target(url)?, CONNECT_TIMEOUT).await
}

/// As [`connect`], for `serve`: the server cancels statements running longer than
/// `query_timeout`, ends sessions idle in a transaction, and keeps TCP keepalives; a
/// pooled connection is waited for at most `query_timeout`.
pub async fn connect_serving(url: &str, query_timeout: Duration) -> Result<PgPool, DatabaseError> {
    let mut target = target(url)?;
    target.options = serving_options(target.options, query_timeout);
    connect_with(url, target, query_timeout).await
}

/// `options` with the server-side bounds of [`connect_serving`].
pub fn serving_options(options: PgConnectOptions, query_timeout: Duration) -> PgConnectOptions {
    let statement_timeout = query_timeout.as_millis().max(1).to_string();
    let idle = IDLE_IN_TRANSACTION_TIMEOUT.as_millis().to_string();
    options
        .options([
            ("statement_timeout", statement_timeout.as_str()),
            ("idle_in_transaction_session_timeout", idle.as_str()),
        ])
        .options(SERVER_KEEPALIVES)
}

/// One direct connection for each of the target's TLS attempts, in libpq's order, until
/// one works; the pool (and every pool made from it) then connects that way. A pool
/// retries refused connections until its timeout and then reports only "pool timed
/// out", losing the cause the operator needs: hence the direct attempts.
async fn connect_with(
    url: &str,
    target: Target,
    acquire_timeout: Duration,
) -> Result<PgPool, DatabaseError> {
    if let Some(path) = target.tls.ignored_root_file() {
        warn!(
            "sslrootcert \"{}\" does not exist: the server's certificate is not checked \
             (sslmode={}; libpq does the same)",
            path.display(),
            target.tls.mode()
        );
    }
    let attempts = target.tls.attempts();
    let mut failures = Vec::new();
    for attempt in attempts {
        let options = attempt.apply(target.options.clone())?;
        let (cause, reached) = match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await
        {
            Ok(Ok(connection)) => {
                // A failed goodbye does not matter: the pool makes its own connections.
                let _ = connection.close().await;
                if let Some(failed) = failures.first() {
                    warn!(
                        "PostgreSQL: {}; connected {} instead (sslmode={})",
                        failed,
                        attempt.label(),
                        target.tls.mode()
                    );
                }
                return Ok(PgPoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .acquire_timeout(acquire_timeout)
                    .connect_lazy_with(options));
            }
            Ok(Err(error)) => (describe_failure(&error, attempt, &target), true),
            Err(_) => (format!("timed out after {CONNECT_TIMEOUT:?}"), false),
        };
        failures.push(if attempts.len() > 1 {
            format!("{}: {cause}", attempt.label())
        } else {
            cause
        });
        // Unreachable: another way of talking to it would not reach it either.
        if !reached {
            break;
        }
    }
    Err(DatabaseError::Connect {
        url: redacted_url(url),
        cause: failures.join("; "),
    })
}

/// Why `attempt` failed, in words: a certificate problem named, a server that wants TLS
/// told so.
fn describe_failure(error: &sqlx::Error, attempt: &Attempt, target: &Target) -> String {
    let host = target.options.get_host();
    if let Some(tls) = tls_failure::rustls_error(error) {
        // Only a verified attempt checks certificates.
        let trusted = match attempt {
            Attempt::Verified { roots, .. } => roots.to_string(),
            _ => "no root certificates".to_owned(),
        };
        return format!(
            "TLS handshake failed: {}",
            tls_failure::describe(tls, &trusted, host)
        );
    }
    match error {
        sqlx::Error::Database(database)
            if database.code().as_deref() == Some(INVALID_AUTHORIZATION)
                && database.message().contains("no encryption") =>
        {
            format!(
                "{error} (the server accepts only TLS connections: set sslmode=require, \
                 verify-ca or verify-full in DATABASE_URL)"
            )
        }
        sqlx::Error::Tls(_)
            if matches!(attempt, Attempt::Verified { .. } | Attempt::Unverified) =>
        {
            format!("{error} (sslmode={} needs TLS)", target.tls.mode())
        }
        other => describe_sqlx(other),
    }
}

/// SQLSTATE 28000, which a `pg_hba.conf` refusal carries.
const INVALID_AUTHORIZATION: &str = "28000";

/// Another pool of one connection to the same database as `pool`, for a connection
/// that must not go back to `pool` (the change listener's).
pub fn dedicated_pool(pool: &PgPool) -> PgPool {
    let options: PgConnectOptions = (*pool.connect_options()).clone();
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options)
}

/// Most connections of the operator API's pool.
pub const API_MAX_CONNECTIONS: u32 = 8;

/// The operator API's own pool to the same database as `pool` (with its bounds): a burst
/// of API calls neither waits for nor delays the connections that keep the key set in
/// step with PostgreSQL. A pooled connection is waited for at most `acquire_timeout`.
pub fn api_pool(pool: &PgPool, acquire_timeout: Duration) -> PgPool {
    let options: PgConnectOptions = (*pool.connect_options()).clone();
    PgPoolOptions::new()
        .max_connections(API_MAX_CONNECTIONS)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options)
}

/// Most connections of the usage flushes' pool.
pub const USAGE_MAX_CONNECTIONS: u32 = 4;

/// The usage flushes' own pool to the same database as `pool` (with its bounds), so
/// that flushes neither wait for nor delay the key set's or the API's connections.
pub fn usage_pool(pool: &PgPool, acquire_timeout: Duration) -> PgPool {
    sibling_pool(pool, USAGE_MAX_CONNECTIONS, acquire_timeout)
}

/// Most connections of the webhook sender's pool: one listens for queued deliveries,
/// the others claim and record them.
pub const WEBHOOK_MAX_CONNECTIONS: u32 = 4;

/// The webhook sender's own pool to the same database as `pool`, so that its listening
/// connection and its claims take nothing from the usage flushes.
pub fn webhook_pool(pool: &PgPool, acquire_timeout: Duration) -> PgPool {
    sibling_pool(pool, WEBHOOK_MAX_CONNECTIONS, acquire_timeout)
}

/// A pool of its own, of at most `max_connections`, to the database of `pool`.
fn sibling_pool(pool: &PgPool, max_connections: u32, acquire_timeout: Duration) -> PgPool {
    let options: PgConnectOptions = (*pool.connect_options()).clone();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options)
}

/// A database error as an operator should read it. sqlx's pool retries refused
/// connections until its acquire timeout and then reports only that it timed out; say
/// what that means.
pub fn describe_sqlx(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::PoolTimedOut => format!(
            "no connection to PostgreSQL within {CONNECT_TIMEOUT:?} (server down or unreachable)"
        ),
        other => other.to_string(),
    }
}

/// Applies the migrations embedded from `migrations/` at compile time. Already applied
/// ones are skipped, so running it twice is harmless.
pub async fn migrate(pool: &PgPool) -> Result<(), DatabaseError> {
    sqlx::migrate!("../migrations").run(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_replaced() {
        assert_eq!(
            redacted_url("postgres://keysync:s3cret@127.0.0.1:5/keysync"),
            "postgres://keysync:***@127.0.0.1:5/keysync"
        );
    }

    #[test]
    fn url_without_password_is_unchanged() {
        assert_eq!(
            redacted_url("postgres://keysync@127.0.0.1:5432/keysync"),
            "postgres://keysync@127.0.0.1:5432/keysync"
        );
    }

    #[test]
    fn password_query_parameter_is_replaced() {
        let redacted =
            redacted_url("postgres://keysync@db/keysync?sslmode=disable&password=hunter2");
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert!(redacted.contains("password=***"), "{redacted}");
        assert!(redacted.contains("sslmode=disable"), "{redacted}");
    }

    #[test]
    fn percent_encoded_password_is_replaced() {
        let redacted = redacted_url("postgres://u:p%40ss%3Aword@h/db");
        assert!(!redacted.contains("p%40ss"), "{redacted}");
        assert_eq!(redacted, "postgres://u:***@h/db");
    }

    #[test]
    fn unparseable_url_is_not_echoed() {
        let redacted = redacted_url("not a url with secret");
        assert!(!redacted.contains("secret"));
    }

    #[test]
    fn targets_reject_other_schemes_and_garbage() {
        let error = target("mysql://u:pw@h/db").unwrap_err();
        assert!(error.to_string().contains("scheme 'mysql'"), "{error}");
        assert!(!error.to_string().contains("pw"), "{error}");
        assert!(matches!(
            target("::nonsense"),
            Err(DatabaseError::InvalidUrl { .. })
        ));
        assert!(target("postgres://u:pw@127.0.0.1:5432/db").is_ok());
    }

    #[test]
    fn tls_settings_are_checked_before_sqlx_reads_the_url_and_never_show_it() {
        let no_env = |_: &str| None;
        let error = target_in("postgres://u:s3cret@h/db?sslmode=VERIFY-FULL", &no_env).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid PostgreSQL TLS settings: invalid sslmode value: \"VERIFY-FULL\" (one of \
             disable, allow, prefer, require, verify-ca, verify-full)"
        );
        let env = |name: &str| (name == "PGSSLMODE").then(|| "bogus".to_owned());
        let error = target_in("postgres://u:s3cret@h/db", &env).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("invalid PGSSLMODE value: \"bogus\""),
            "{error}"
        );
        assert!(!error.to_string().contains("s3cret"), "{error}");
        // A socket directory as the host: no TLS whatever the mode, as libpq.
        let socket = target_in(
            "postgres://u@%2Frun%2Fpostgresql/db?sslmode=require",
            &no_env,
        )
        .unwrap();
        assert_eq!(socket.tls.attempts(), [Attempt::Plain]);
        let tcp = target_in("postgres://u@127.0.0.1/db?sslmode=require", &no_env).unwrap();
        assert_eq!(tcp.tls.attempts(), [Attempt::Unverified]);
    }

    #[test]
    fn serving_connections_carry_the_server_side_bounds() {
        let options = serving_options(
            target("postgres://u@127.0.0.1:5432/db").unwrap().options,
            Duration::from_millis(2500),
        );
        let text = format!("{options:?}");
        for expected in [
            "-c statement_timeout=2500",
            "-c idle_in_transaction_session_timeout=60000",
            "-c tcp_keepalives_idle=10",
            "-c tcp_keepalives_count=3",
        ] {
            assert!(text.contains(expected), "{expected} not in {text}");
        }
    }

    #[test]
    fn connect_error_message_shows_redacted_url() {
        let error = DatabaseError::Connect {
            url: redacted_url("postgres://keysync:pw@127.0.0.1:5/keysync"),
            cause: "connection refused".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "cannot connect to PostgreSQL at postgres://keysync:***@127.0.0.1:5/keysync: connection refused"
        );
    }
}
