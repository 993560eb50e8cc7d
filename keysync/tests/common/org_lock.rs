//! An organization change in progress, for the tests of a change that waits for it:
//! a transaction that holds the organization's lock as operators' changes take it, and
//! waiting until the change under test waits for that lock.

use std::time::{Duration, Instant};

use sqlx::{PgPool, Postgres, Transaction};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A transaction holding `org_id`'s lock (`FOR NO KEY UPDATE`); the caller writes what
/// the change in progress writes, then commits.
pub async fn hold(pool: &PgPool, org_id: Uuid) -> Transaction<'static, Postgres> {
    let mut transaction = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM organizations WHERE id = $1 FOR NO KEY UPDATE")
        .bind(org_id)
        .execute(&mut *transaction)
        .await
        .unwrap();
    transaction
}

/// Returns once a statement of this database waits for a lock (within 30 s); fails if
/// `change` finishes first, since it did not wait.
pub async fn until_waiting<T>(pool: &PgPool, change: &JoinHandle<T>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting == 1 {
            return;
        }
        assert!(
            !change.is_finished(),
            "the change did not wait for the lock"
        );
        assert!(Instant::now() < deadline, "no change waits for the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
