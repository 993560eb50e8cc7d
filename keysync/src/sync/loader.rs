//! Reading the key set out of PostgreSQL: a full snapshot, or the changes after a
//! revision, each from one consistent read-only transaction.
//!
//! [`Loader`] is a trait so the reload and catch-up logic can be tested without a
//! database.

use std::future::Future;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_stream::StreamExt;
use uuid::Uuid;

use crate::key_hash::KeyHash;
use crate::limit_columns::LimitColumns;
use crate::serve::changes::Changes;
use crate::serve::key_entry::KeyEntry;
use crate::serve::key_set::Snapshot;
use crate::serve::key_table::TableChanged;

/// A failed load. The key set keeps what it had.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}", crate::database::describe_sqlx(.0))]
    Database(#[from] sqlx::Error),
    /// A row the schema should have made impossible.
    #[error("unexpected row: {0}")]
    InvalidRow(String),
    /// The in-memory key set changed while a full reload compared it with the database.
    #[error(transparent)]
    KeySetChanged(#[from] TableChanged),
}

/// Source of key snapshots and change sets.
pub trait Loader: Send + Sync + 'static {
    /// Every active key, handed to `sink` one at a time as it is read, so that a
    /// million keys never sit in memory as a list; returns the revision they reflect.
    /// After an error, what `sink` was given is only part of the key set.
    fn full_snapshot_into<S: FnMut(KeyEntry) + Send>(
        &self,
        sink: S,
    ) -> impl Future<Output = Result<u64, LoadError>> + Send;

    /// Every active key as one list, with the revision they reflect.
    fn full_snapshot(&self) -> impl Future<Output = Result<Snapshot, LoadError>> + Send {
        async {
            let mut keys = Vec::new();
            let revision = self.full_snapshot_into(|entry| keys.push(entry)).await?;
            Ok(Snapshot { revision, keys })
        }
    }

    /// Everything written after `revision`, with the revision the result reflects.
    fn changes_since(
        &self,
        revision: u64,
    ) -> impl Future<Output = Result<Changes, LoadError>> + Send;
}

/// Both reads see one snapshot of the database, so the revision counter read first
/// matches the rows read after it. The counter's row lock orders commits, so seeing
/// revision R means every revision up to R is visible.
const BEGIN_CONSISTENT_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

const SELECT_REVISION: &str = "SELECT revision FROM keysync_revision";

/// A key's columns with both candidate limits: its own override and its organization's
/// (see [`LimitColumns::resolve`]).
const SELECT_KEYS: &str = "\
    SELECT k.key_hash, k.id, k.org_id, k.expires_at, k.active, \
           k.rate_limit_rpm AS key_rpm, k.rate_limit_burst AS key_burst, \
           r.requests_per_minute AS org_rpm, r.burst AS org_burst \
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
}

impl PgLoader {
    pub fn new(pool: PgPool) -> Self {
        PgLoader { pool }
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
        })
    }
}

fn to_key_hash(bytes: &[u8]) -> Result<KeyHash, LoadError> {
    KeyHash::try_from(bytes)
        .map_err(|_| LoadError::InvalidRow(format!("key hash of {} bytes", bytes.len())))
}

fn to_revision(value: i64) -> Result<u64, LoadError> {
    u64::try_from(value).map_err(|_| LoadError::InvalidRow(format!("revision {value}")))
}

impl Loader for PgLoader {
    async fn full_snapshot_into<S: FnMut(KeyEntry) + Send>(
        &self,
        mut sink: S,
    ) -> Result<u64, LoadError> {
        let mut transaction = self.pool.begin_with(BEGIN_CONSISTENT_READ).await?;
        let revision: i64 = sqlx::query_scalar(SELECT_REVISION)
            .fetch_one(&mut *transaction)
            .await?;
        let query = select_active_keys();
        {
            let mut rows = sqlx::query_as::<_, KeyRow>(&query).fetch(&mut *transaction);
            while let Some(row) = rows.next().await {
                sink(row?.into_entry()?);
            }
        }
        transaction.commit().await?;
        to_revision(revision)
    }

    async fn changes_since(&self, after: u64) -> Result<Changes, LoadError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let mut transaction = self.pool.begin_with(BEGIN_CONSISTENT_READ).await?;
        let revision: i64 = sqlx::query_scalar(SELECT_REVISION)
            .fetch_one(&mut *transaction)
            .await?;
        let mut changes = Changes {
            revision: to_revision(revision)?,
            ..Changes::default()
        };
        // Streamed into the change set: a large catch-up need not sit in memory twice.
        let query = select_keys_written_after();
        {
            let mut rows = sqlx::query_as::<_, KeyRow>(&query)
                .bind(after)
                .fetch(&mut *transaction);
            while let Some(row) = rows.next().await {
                let row = row?;
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
            while let Some(hash) = tombstones.next().await {
                changes.removals.push(to_key_hash(&hash?)?);
            }
        }
        transaction.commit().await?;
        Ok(changes)
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
        }
    }

    #[test]
    fn row_without_limit_or_expiry() {
        let entry = row().into_entry().unwrap();
        assert_eq!(entry.key_hash, [7; 32]);
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
