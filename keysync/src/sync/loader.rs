//! Reading the key set out of PostgreSQL: a full snapshot, the changes after a
//! revision, or only where the database's history stands (the periodic confirmation),
//! each from one consistent read-only transaction.
//!
//! Every read also says where the database stands ([`DatabaseState`]): its revision and
//! the epoch of its revision history ([`crate::sync::history`]).
//!
//! No step waits for PostgreSQL longer than the loader's timeout (`KEYSYNC_DB_TIMEOUT`):
//! a server that stops answering (a blackholed network) would otherwise keep a load
//! waiting for good. A connection that timed out is closed rather than returned to the
//! pool, since it may be stuck half-way through a reply. (The server applies the same
//! bound itself through `statement_timeout`, see [`crate::database::serve_pool`].)
//!
//! [`Loader`] is a trait so the reload and catch-up logic can be tested without a
//! database.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keysync_contract::key_hash::KeyHash;
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, Connection, PgPool, Postgres};
use tokio_stream::StreamExt;
use uuid::Uuid;

use crate::key_set::changes::Changes;
use crate::key_set::key_entry::KeyEntry;
use crate::key_set::key_policy::PolicyColumns;
use crate::key_set::key_table::TableChanged;
use crate::key_set::limit_columns::LimitColumns;
use crate::key_set::position::Position;
use crate::key_set::Snapshot;
use crate::sync::history::{self, Identity};

/// How long one step of a load (a query, the next row, a commit) may wait for
/// PostgreSQL unless the loader is told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The server-side bound on the one statement of a full snapshot, which streams every
/// key and may legitimately take longer than other statements (the session's
/// `statement_timeout`). The client still gives up on any row that takes longer than
/// the loader's timeout to arrive.
pub const FULL_SNAPSHOT_STATEMENT_TIMEOUT: &str = "10min";

/// A failed load. The key set keeps what it had.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}", crate::database::describe_sqlx(.0))]
    Database(#[from] sqlx::Error),
    /// PostgreSQL did not answer in time (a blackholed network, a stuck server).
    #[error("no answer from PostgreSQL within {0:?}")]
    Timeout(Duration),
    /// A row the schema should have made impossible.
    #[error("unexpected row: {0}")]
    InvalidRow(String),
    /// The in-memory key set changed while a full reload compared it with the database.
    #[error(transparent)]
    KeySetChanged(#[from] TableChanged),
}

/// Where the database stands: its revision and history ([`Position`]), and the random
/// history id behind the epoch (what a new history replaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseState {
    pub position: Position,
    pub history_id: i64,
}

/// Source of key snapshots and change sets.
pub trait Loader: Send + Sync + 'static {
    /// Every active key, handed to `sink` one at a time as it is read, so that a
    /// million keys never sit in memory as a list; returns where the database stood.
    /// After an error, what `sink` was given is only part of the key set.
    fn full_snapshot_into<S: FnMut(KeyEntry) + Send>(
        &self,
        sink: S,
    ) -> impl Future<Output = Result<DatabaseState, LoadError>> + Send;

    /// Every active key as one list, with the revision they reflect.
    fn full_snapshot(&self) -> impl Future<Output = Result<Snapshot, LoadError>> + Send {
        async {
            let mut keys = Vec::new();
            let state = self.full_snapshot_into(|entry| keys.push(entry)).await?;
            Ok(Snapshot {
                revision: state.position.revision,
                keys,
            })
        }
    }

    /// Everything written after `revision`, and where the database stood (the changes'
    /// revision is the database's). Meaningful only if the database's epoch is the one
    /// `revision` counts in.
    fn changes_since(
        &self,
        revision: u64,
    ) -> impl Future<Output = Result<(DatabaseState, Changes), LoadError>> + Send;

    /// Where the database stands, and nothing else: one cheap query.
    fn state(&self) -> impl Future<Output = Result<DatabaseState, LoadError>> + Send;

    /// Starts a new revision history: replaces the history id with a new random one,
    /// unless it is no longer `seen` (someone else already did). Returns whether this
    /// call replaced it. Fails on a read-only database.
    fn renew_history(&self, seen: i64) -> impl Future<Output = Result<bool, LoadError>> + Send;
}

/// Both reads see one snapshot of the database, so the revision counter read first
/// matches the rows read after it. The counter's row lock orders commits, so seeing
/// revision R means every revision up to R is visible.
const BEGIN_CONSISTENT_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// The revision, and what the epoch is made of ([`Identity`]). The WAL timeline is read
/// only where that cannot fail: not on a standby (`pg_current_wal_lsn` refuses there),
/// and only with the right to call the functions (granted to everyone by default).
const SELECT_STATE: &str = "\
    SELECT r.revision, r.history_id, \
           (SELECT oid::bigint FROM pg_database WHERE datname = current_database()) \
               AS database_oid, \
           'keysync_revision'::regclass::oid::bigint AS table_oid, \
           CASE WHEN NOT pg_is_in_recovery() \
                 AND has_function_privilege('pg_current_wal_lsn()', 'EXECUTE') \
                 AND has_function_privilege('pg_walfile_name(pg_lsn)', 'EXECUTE') \
                THEN substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) \
           END AS timeline \
    FROM keysync_revision r";

/// A new random history id, only if it is still the one seen; tells every other
/// keysync at once (an unreadable payload makes their listeners catch up, and the
/// catch-up finds the new epoch).
const RENEW_HISTORY: &str = "\
    WITH renewed AS ( \
        UPDATE keysync_revision \
        SET history_id = ('x' || md5(random()::text || clock_timestamp()::text))::bit(64)::bigint \
        WHERE history_id = $1 \
        RETURNING history_id) \
    SELECT count(*) AS renewed \
    FROM renewed, (SELECT pg_notify('keysync_changes', 'history')) AS notified";

/// A key's columns with both candidate limits: its own override and its organization's
/// (see [`LimitColumns::resolve`]), and its policy (see [`PolicyColumns::resolve`]).
const SELECT_KEYS: &str = "\
    SELECT k.key_hash, k.id, k.org_id, k.expires_at, k.active, \
           k.rate_limit_rpm AS key_rpm, k.rate_limit_burst AS key_burst, \
           r.requests_per_minute AS org_rpm, r.burst AS org_burst, \
           k.scopes, k.allowed_networks::text[] AS allowed_networks \
    FROM api_keys k LEFT JOIN rate_limit_configs r ON r.org_id = k.org_id";

fn select_active_keys() -> String {
    format!("{SELECT_KEYS} WHERE k.active")
}

fn select_keys_written_after() -> String {
    format!("{SELECT_KEYS} WHERE k.revision > $1")
}

const SELECT_TOMBSTONES_AFTER: &str = "SELECT key_hash FROM api_key_tombstones WHERE revision > $1";

/// The PostgreSQL loader used by `serve`.
#[derive(Debug, Clone)]
pub struct PgLoader {
    pool: PgPool,
    /// Bound on each step ([`LoadError::Timeout`]).
    timeout: Duration,
}

impl PgLoader {
    /// A loader whose steps wait at most [`DEFAULT_TIMEOUT`].
    pub fn new(pool: PgPool) -> Self {
        PgLoader::with_timeout(pool, DEFAULT_TIMEOUT)
    }

    /// A loader whose steps wait at most `timeout` each.
    pub fn with_timeout(pool: PgPool, timeout: Duration) -> Self {
        PgLoader { pool, timeout }
    }

    /// `work` bounded by the timeout.
    async fn step<T, E: Into<LoadError>>(
        &self,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, LoadError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| LoadError::Timeout(self.timeout))?
            .map_err(Into::into)
    }

    /// A pooled connection (the pool bounds the wait).
    async fn connection(&self) -> Result<PoolConnection<Postgres>, LoadError> {
        Ok(self.pool.acquire().await?)
    }
}

/// What to do with a connection after a load: one that timed out may be stuck half-way
/// through a reply and must not serve anyone else (returning it to the pool would wait
/// for it to answer a ping, possibly forever).
fn release<T>(
    mut connection: PoolConnection<Postgres>,
    result: Result<T, LoadError>,
) -> Result<T, LoadError> {
    if matches!(result, Err(LoadError::Timeout(_))) {
        connection.close_on_drop();
    }
    result
}

#[derive(sqlx::FromRow)]
struct StateRow {
    revision: i64,
    history_id: i64,
    database_oid: Option<i64>,
    table_oid: i64,
    timeline: Option<String>,
}

impl StateRow {
    fn into_state(self) -> Result<DatabaseState, LoadError> {
        let timeline = self
            .timeline
            .map(|hex| {
                u32::from_str_radix(&hex, 16)
                    .map_err(|_| LoadError::InvalidRow(format!("WAL timeline {hex:?}")))
            })
            .transpose()?;
        let identity = Identity {
            database_oid: self.database_oid.unwrap_or(0),
            table_oid: self.table_oid,
            history_id: self.history_id,
            timeline,
        };
        Ok(DatabaseState {
            position: Position {
                epoch: history::epoch(&identity),
                revision: to_revision(self.revision)?,
            },
            history_id: self.history_id,
        })
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key_hash: Vec<u8>,
    id: Uuid,
    org_id: Uuid,
    expires_at: Option<DateTime<Utc>>,
    active: bool,
    #[sqlx(flatten)]
    limits: LimitColumns,
    #[sqlx(flatten)]
    policy: PolicyColumns,
}

impl KeyRow {
    fn into_entry(self) -> Result<KeyEntry, LoadError> {
        let key_hash = to_key_hash(&self.key_hash)?;
        let rate_limit = self
            .limits
            .resolve()
            .map_err(|error| LoadError::InvalidRow(format!("{error} for key {}", self.id)))?;
        Ok(KeyEntry {
            key_hash,
            key_id: self.id,
            org_id: self.org_id,
            // 0 means "never", so a key that expired at or before the epoch becomes 1.
            expires_at: self.expires_at.map_or(0, |at| at.timestamp().max(1)),
            rate_limit,
            // A policy the contract refuses locks the key out rather than failing the
            // load (see `PolicyColumns::resolve`).
            policy: self.policy.resolve(self.id),
        })
    }
}

fn to_key_hash(bytes: &[u8]) -> Result<KeyHash, LoadError> {
    KeyHash::from_slice(bytes)
        .ok_or_else(|| LoadError::InvalidRow(format!("key hash of {} bytes", bytes.len())))
}

fn to_revision(value: i64) -> Result<u64, LoadError> {
    u64::try_from(value).map_err(|_| LoadError::InvalidRow(format!("revision {value}")))
}

impl PgLoader {
    async fn snapshot_on<S: FnMut(KeyEntry) + Send>(
        &self,
        connection: &mut PoolConnection<Postgres>,
        mut sink: S,
    ) -> Result<DatabaseState, LoadError> {
        let mut transaction = self
            .step(Connection::begin_with(
                &mut **connection,
                BEGIN_CONSISTENT_READ,
            ))
            .await?;
        let set_timeout =
            format!("SET LOCAL statement_timeout = '{FULL_SNAPSHOT_STATEMENT_TIMEOUT}'");
        self.step(sqlx::query(AssertSqlSafe(set_timeout)).execute(&mut *transaction))
            .await?;
        let state = self
            .step(sqlx::query_as::<_, StateRow>(SELECT_STATE).fetch_one(&mut *transaction))
            .await?
            .into_state()?;
        let query = select_active_keys();
        {
            let mut rows =
                sqlx::query_as::<_, KeyRow>(AssertSqlSafe(query)).fetch(&mut *transaction);
            while let Some(row) = self.step(next(&mut rows)).await? {
                sink(row.into_entry()?);
            }
        }
        self.step(transaction.commit()).await?;
        Ok(state)
    }

    async fn changes_on(
        &self,
        connection: &mut PoolConnection<Postgres>,
        after: u64,
    ) -> Result<(DatabaseState, Changes), LoadError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let mut transaction = self
            .step(Connection::begin_with(
                &mut **connection,
                BEGIN_CONSISTENT_READ,
            ))
            .await?;
        let state = self
            .step(sqlx::query_as::<_, StateRow>(SELECT_STATE).fetch_one(&mut *transaction))
            .await?
            .into_state()?;
        let mut changes = Changes {
            revision: state.position.revision,
            ..Changes::default()
        };
        // Streamed into the change set: a large catch-up need not sit in memory twice.
        let query = select_keys_written_after();
        {
            let mut rows = sqlx::query_as::<_, KeyRow>(AssertSqlSafe(query))
                .bind(after)
                .fetch(&mut *transaction);
            while let Some(row) = self.step(next(&mut rows)).await? {
                if row.active {
                    changes.upserts.push(row.into_entry()?);
                } else {
                    changes.removals.push(to_key_hash(&row.key_hash)?);
                }
            }
        }
        {
            let mut tombstones = sqlx::query_scalar::<_, Vec<u8>>(SELECT_TOMBSTONES_AFTER)
                .bind(after)
                .fetch(&mut *transaction);
            while let Some(hash) = self.step(next(&mut tombstones)).await? {
                changes.removals.push(to_key_hash(&hash)?);
            }
        }
        self.step(transaction.commit()).await?;
        Ok((state, changes))
    }
}

/// The next item of a row stream, as a future that yields a `Result`.
async fn next<S, T>(rows: &mut S) -> Result<Option<T>, sqlx::Error>
where
    S: tokio_stream::Stream<Item = Result<T, sqlx::Error>> + Unpin,
{
    rows.next().await.transpose()
}

impl Loader for PgLoader {
    async fn full_snapshot_into<S: FnMut(KeyEntry) + Send>(
        &self,
        sink: S,
    ) -> Result<DatabaseState, LoadError> {
        let mut connection = self.connection().await?;
        let result = self.snapshot_on(&mut connection, sink).await;
        release(connection, result)
    }

    async fn changes_since(&self, after: u64) -> Result<(DatabaseState, Changes), LoadError> {
        let mut connection = self.connection().await?;
        let result = self.changes_on(&mut connection, after).await;
        release(connection, result)
    }

    async fn state(&self) -> Result<DatabaseState, LoadError> {
        let mut connection = self.connection().await?;
        let result = self
            .step(sqlx::query_as::<_, StateRow>(SELECT_STATE).fetch_one(&mut *connection))
            .await
            .and_then(StateRow::into_state);
        release(connection, result)
    }

    async fn renew_history(&self, seen: i64) -> Result<bool, LoadError> {
        let mut connection = self.connection().await?;
        let result = self
            .step(
                sqlx::query_scalar::<_, i64>(RENEW_HISTORY)
                    .bind(seen)
                    .fetch_one(&mut *connection),
            )
            .await
            .map(|renewed| renewed > 0);
        release(connection, result)
    }
}

#[cfg(test)]
mod tests {
    use keysync_contract::limit::{KeyLimit, Limit};

    use super::*;

    fn row() -> KeyRow {
        KeyRow {
            key_hash: vec![7; 32],
            id: Uuid::from_u128(1),
            org_id: Uuid::from_u128(2),
            expires_at: None,
            active: true,
            limits: LimitColumns::default(),
            policy: PolicyColumns::default(),
        }
    }

    #[test]
    fn row_without_limit_or_expiry() {
        let entry = row().into_entry().unwrap();
        assert_eq!(entry.key_hash, KeyHash([7; 32]));
        assert_eq!(entry.key_id, Uuid::from_u128(1));
        assert_eq!(entry.org_id, Uuid::from_u128(2));
        assert_eq!(entry.expires_at, 0);
        assert_eq!(entry.rate_limit, None);
    }

    #[test]
    fn row_with_limit_and_expiry() {
        let entry = KeyRow {
            expires_at: DateTime::from_timestamp(1_700_000_000, 0),
            limits: LimitColumns {
                org_rpm: Some(600),
                org_burst: Some(0),
                ..LimitColumns::default()
            },
            ..row()
        }
        .into_entry()
        .unwrap();
        assert_eq!(entry.expires_at, 1_700_000_000);
        assert_eq!(
            entry.rate_limit,
            Some(KeyLimit {
                limit: Limit {
                    requests_per_minute: 600,
                    burst: 0,
                },
                per_key: false,
            })
        );
    }

    #[test]
    fn row_with_key_override_is_counted_per_key() {
        let entry = KeyRow {
            limits: LimitColumns {
                key_rpm: Some(5),
                key_burst: None,
                org_rpm: Some(600),
                org_burst: Some(10),
            },
            ..row()
        }
        .into_entry()
        .unwrap();
        assert_eq!(
            entry.rate_limit,
            Some(KeyLimit {
                limit: Limit {
                    requests_per_minute: 5,
                    burst: 0,
                },
                per_key: true,
            })
        );
    }

    #[test]
    fn row_with_policy_and_row_with_a_refused_one() {
        let entry = KeyRow {
            policy: PolicyColumns {
                scopes: vec!["b".to_owned(), "a".to_owned()],
                allowed_networks: vec!["10.0.0.0/8".to_owned()],
            },
            ..row()
        }
        .into_entry()
        .unwrap();
        let policy = entry.policy.unwrap();
        assert_eq!(policy.scopes(), ["a", "b"]);
        assert_eq!(policy.networks().len(), 1);
        // Not an error: the load goes on, the key is served locked out.
        let locked = KeyRow {
            policy: PolicyColumns {
                scopes: Vec::new(),
                allowed_networks: vec!["::/128".to_owned()],
            },
            ..row()
        }
        .into_entry()
        .unwrap();
        assert_eq!(locked.policy.unwrap().scopes(), [] as [String; 0]);
        assert_eq!(row().into_entry().unwrap().policy, None);
    }

    #[test]
    fn expiry_at_or_before_the_epoch_is_not_never() {
        let entry = KeyRow {
            expires_at: DateTime::from_timestamp(-5, 0),
            ..row()
        }
        .into_entry()
        .unwrap();
        assert_eq!(entry.expires_at, 1);
    }

    #[test]
    fn malformed_rows_are_errors() {
        let short = KeyRow {
            key_hash: vec![1; 31],
            ..row()
        };
        assert!(matches!(short.into_entry(), Err(LoadError::InvalidRow(_))));
        let negative = KeyRow {
            limits: LimitColumns {
                org_rpm: Some(-1),
                org_burst: Some(1),
                ..LimitColumns::default()
            },
            ..row()
        };
        assert!(matches!(
            negative.into_entry(),
            Err(LoadError::InvalidRow(_))
        ));
        assert!(to_revision(-1).is_err());
    }

    #[test]
    fn pool_timeout_is_explained() {
        let message = LoadError::Database(sqlx::Error::PoolTimedOut).to_string();
        assert_eq!(
            message,
            "no connection to PostgreSQL within 5s (server down or unreachable)"
        );
    }
}
