//! The PostgreSQL connection: parsing `DATABASE_URL`, connecting with a bounded wait,
//! applying migrations, and showing the URL without its password.
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
use url::Url;

use crate::url_redaction;

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

/// Parses a PostgreSQL URL into connection options.
pub fn connect_options(url: &str) -> Result<PgConnectOptions, DatabaseError> {
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
    let options = PgConnectOptions::from_str(url).map_err(|error| DatabaseError::InvalidUrl {
        reason: error.to_string(),
    })?;
    Ok(options.application_name("keysync"))
}

/// Connects to PostgreSQL and returns a pool, failing within [`CONNECT_TIMEOUT`] with the
/// real cause when the server cannot be reached.
pub async fn connect(url: &str) -> Result<PgPool, DatabaseError> {
    connect_with(url, connect_options(url)?, CONNECT_TIMEOUT).await
}

/// As [`connect`], for `serve`: the server cancels statements running longer than
/// `query_timeout`, ends sessions idle in a transaction, and keeps TCP keepalives; a
/// pooled connection is waited for at most `query_timeout`.
pub async fn connect_serving(url: &str, query_timeout: Duration) -> Result<PgPool, DatabaseError> {
    let options = serving_options(connect_options(url)?, query_timeout);
    connect_with(url, options, query_timeout).await
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

async fn connect_with(
    url: &str,
    options: PgConnectOptions,
    acquire_timeout: Duration,
) -> Result<PgPool, DatabaseError> {
    let connect_error = |cause: String| DatabaseError::Connect {
        url: redacted_url(url),
        cause,
    };
    // One direct attempt first: a pool retries refused connections until its timeout
    // and then reports only "pool timed out", losing the cause the operator needs.
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| connect_error(format!("timed out after {CONNECT_TIMEOUT:?}")))?
        .map_err(|error| connect_error(error.to_string()))?;
    // A failed goodbye does not matter: the pool makes its own connections.
    let _ = connection.close().await;
    Ok(PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options))
}

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
    let options: PgConnectOptions = (*pool.connect_options()).clone();
    PgPoolOptions::new()
        .max_connections(USAGE_MAX_CONNECTIONS)
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
    fn connect_options_reject_other_schemes_and_garbage() {
        let error = connect_options("mysql://u:pw@h/db").unwrap_err();
        assert!(error.to_string().contains("scheme 'mysql'"), "{error}");
        assert!(!error.to_string().contains("pw"), "{error}");
        assert!(matches!(
            connect_options("::nonsense"),
            Err(DatabaseError::InvalidUrl { .. })
        ));
        assert!(connect_options("postgres://u:pw@127.0.0.1:5432/db").is_ok());
    }

    #[test]
    fn serving_connections_carry_the_server_side_bounds() {
        let options = serving_options(
            connect_options("postgres://u@127.0.0.1:5432/db").unwrap(),
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
