//! The Redis [`HitCounter`]: one Lua script adds a request's hits to its window
//! counters atomically, so any number of keysync processes on one Redis share every
//! budget, and the counts outlive a keysync restart.
//!
//! The connection is made lazily (Redis may come up after keysync) through redis-rs's
//! connection manager, without retries of its own, and every call is bounded by
//! [`CALL_TIMEOUT`]: a dead or black-holed Redis costs a request at most that long,
//! never a stall. After any failed call the manager is replaced by a fresh one: the
//! manager reconnects by itself only after I/O errors, and would otherwise keep
//! answering with the error of a failed connection set-up (Redis still loading its
//! data, a refused AUTH, too many clients) for good.
//!
//! With `rediss://` the connection is TLS, checked against the CA of
//! `KEYSYNC_REDIS_TLS_CA` or the system's roots; a certificate problem is named in the
//! error the health log shows.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

use super::counter::{CounterError, Hit, HitCounter};
use super::redis_url::RedisUrl;
use super::window::COUNTER_TTL_SECONDS;
use crate::tls_failure;

/// Bound on making a connection, and on one reply.
pub const IO_TIMEOUT: Duration = Duration::from_millis(200);
/// Bound on a whole call, connecting included.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// `KEYS[i]`: a window counter; `ARGV[1]`: the counters' lifetime in seconds;
/// `ARGV[i + 1]`: the hits to add to `KEYS[i]`. Returns the new counts. A counter whose
/// count equals the hits just added was created by them: it gets its expiry now.
pub const HIT_SCRIPT: &str = r"
local ttl = tonumber(ARGV[1])
local counts = {}
for i, key in ipairs(KEYS) do
  local hits = tonumber(ARGV[i + 1])
  local count = redis.call('INCRBY', key, hits)
  if count == hits then
    redis.call('EXPIRE', key, ttl)
  end
  counts[i] = count
end
return counts
";

/// Counters in one Redis database.
pub struct RedisCounter {
    client: redis::Client,
    /// Swapped for a fresh one after a failure (see the module documentation).
    connection: Mutex<ConnectionManager>,
    script: Script,
    /// Where the CA certificates come from and the host checked, to say what a failed
    /// TLS handshake means.
    trusted: String,
    host: String,
}

impl std::fmt::Debug for RedisCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounter").finish_non_exhaustive()
    }
}

impl RedisCounter {
    /// A counter for `url`; connects on first use, so Redis may be down at start.
    /// Must be called inside the tokio runtime.
    pub fn new(url: &RedisUrl) -> Result<RedisCounter, CounterError> {
        let client = match url.ca() {
            Some(ca) => redis::Client::build_with_tls(
                url.expose(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.pem().to_vec()),
                },
            ),
            None => redis::Client::open(url.expose()),
        };
        let (trusted, host) = (url.trusted(), url.host());
        let client = client.map_err(|error| described(error, &trusted, &host))?;
        let connection =
            lazy_manager(&client).map_err(|error| described(error, &trusted, &host))?;
        Ok(RedisCounter {
            client,
            connection: Mutex::new(connection),
            script: Script::new(HIT_SCRIPT),
            trusted,
            host,
        })
    }

    fn error(&self, error: redis::RedisError) -> CounterError {
        described(error, &self.trusted, &self.host)
    }

    /// The current connection manager (a cheap handle to shared state).
    fn connection(&self) -> ConnectionManager {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `outcome`, after replacing the connection manager if it is an error.
    fn settle<T>(&self, outcome: Result<T, CounterError>) -> Result<T, CounterError> {
        if outcome.is_err() {
            if let Ok(fresh) = lazy_manager(&self.client) {
                *self
                    .connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = fresh;
            }
        }
        outcome
    }

    async fn try_add(&self, hits: &[Hit]) -> Result<Vec<u64>, CounterError> {
        let mut invocation = self.script.prepare_invoke();
        for hit in hits {
            invocation.key(&hit.counter);
        }
        invocation.arg(COUNTER_TTL_SECONDS);
        for hit in hits {
            invocation.arg(hit.amount);
        }
        let mut connection = self.connection();
        let counts: Vec<i64> =
            tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async(&mut connection))
                .await
                .map_err(|_| CounterError::Timeout(CALL_TIMEOUT))?
                .map_err(|error| self.error(error))?;
        if counts.len() != hits.len() {
            return Err(CounterError::Reply(format!(
                "{} counts for {} counters",
                counts.len(),
                hits.len()
            )));
        }
        counts
            .into_iter()
            .map(|count| {
                u64::try_from(count).map_err(|_| CounterError::Reply(format!("count {count}")))
            })
            .collect()
    }

    async fn try_ping(&self) -> Result<(), CounterError> {
        let mut connection = self.connection();
        let reply: String = tokio::time::timeout(
            CALL_TIMEOUT,
            redis::cmd("PING").query_async(&mut connection),
        )
        .await
        .map_err(|_| CounterError::Timeout(CALL_TIMEOUT))?
        .map_err(|error| self.error(error))?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(CounterError::Reply(format!("{reply:?} to PING")))
        }
    }
}

/// A connection manager that connects on first use; a failed attempt fails the call at
/// once (no retries), and the next call tries again.
fn lazy_manager(client: &redis::Client) -> Result<ConnectionManager, redis::RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(IO_TIMEOUT))
        .set_response_timeout(Some(IO_TIMEOUT))
        .set_number_of_retries(0);
    ConnectionManager::new_lazy_with_config(client.clone(), config)
}

impl HitCounter for RedisCounter {
    async fn add(&self, hits: &[Hit]) -> Result<Vec<u64>, CounterError> {
        let outcome = self.try_add(hits).await;
        self.settle(outcome)
    }

    async fn ping(&self) -> Result<(), CounterError> {
        let outcome = self.try_ping().await;
        self.settle(outcome)
    }
}

/// The client's error; a failed TLS handshake says which certificate check failed.
fn described(error: redis::RedisError, trusted: &str, host: &str) -> CounterError {
    match tls_failure::rustls_error(&error) {
        Some(tls) => CounterError::Redis(format!(
            "TLS handshake failed: {}",
            tls_failure::describe(tls, trusted, host)
        )),
        None => CounterError::Redis(error.to_string()),
    }
}
