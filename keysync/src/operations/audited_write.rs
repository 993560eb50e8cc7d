//! The one way operators' changes to a value are written (a rate limit, a quota, a key's
//! scopes or allowlist), so that each records in the audit trail exactly the value it
//! replaced: in one transaction, lock the row the value belongs to, read the value
//! after the lock, compare it with what is asked for, and only when they differ write
//! it and record both; then commit.
//!
//! The value is read in a statement of its own, after the one that took the lock: a
//! statement that waited for the lock sees the locked row as it is now, but the other
//! rows it reads (the organization's limit beside the organization) as they were when
//! it started, before the change it waited for. Changes to one value therefore take
//! turns, and each one's `old_value` is the value the one before it committed. Asking
//! for the value that is already there writes nothing (no restamp of the keys it
//! affects) and records nothing.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::actor::Actor;
use super::audit::{self, AuditAction, Change};

/// One kind of change, for [`apply`]: where its value lives, how it is read, written
/// and recorded.
pub(crate) trait AuditedWrite {
    /// The value as read, compared and written.
    type Value: PartialEq;
    /// The value as the audit trail records it (`null` for none).
    type Audited: Serialize;
    /// What the caller reads back in the same transaction once the value is written.
    type Answer;
    type Error: From<sqlx::Error>;

    /// What the audit trail says happened.
    fn action(&self) -> AuditAction;

    /// The object changed (an organization or a key).
    fn object_id(&self) -> Uuid;

    /// Locks the row the value belongs to, so that changes take turns, and returns the
    /// organization the object belongs to; not found is `Self::Error`.
    async fn lock(&self, connection: &mut PgConnection) -> Result<Uuid, Self::Error>;

    /// The value, read after [`AuditedWrite::lock`].
    async fn read(
        &self,
        connection: &mut PgConnection,
        org_id: Uuid,
    ) -> Result<Self::Value, Self::Error>;

    /// The value asked for, knowing the current one (a quota keeps its reset day unless
    /// told otherwise).
    fn wanted(&self, current: &Self::Value) -> Self::Value;

    /// Writes `new`, which differs from `old`, the current value.
    async fn write(
        &self,
        connection: &mut PgConnection,
        actor: Actor,
        org_id: Uuid,
        old: &Self::Value,
        new: &Self::Value,
    ) -> Result<(), Self::Error>;

    fn audited(&self, value: &Self::Value) -> Self::Audited;

    /// Reads what the caller answers with, written or not.
    async fn answer(
        &self,
        connection: &mut PgConnection,
        org_id: Uuid,
        value: &Self::Value,
    ) -> Result<Self::Answer, Self::Error>;
}

/// What [`apply`] did.
pub(crate) struct Applied<W: AuditedWrite> {
    pub org_id: Uuid,
    /// False when it already was that value; nothing was written or recorded.
    pub changed: bool,
    pub answer: W::Answer,
}

/// Makes the change `write` describes, by `actor`, in one transaction.
pub(crate) async fn apply<W: AuditedWrite>(
    pool: &PgPool,
    actor: Actor,
    write: &W,
) -> Result<Applied<W>, W::Error> {
    let mut transaction = pool.begin().await?;
    let org_id = write.lock(&mut transaction).await?;
    let old = write.read(&mut transaction, org_id).await?;
    let new = write.wanted(&old);
    let changed = old != new;
    if changed {
        write
            .write(&mut transaction, actor, org_id, &old, &new)
            .await?;
        audit::record(
            &mut transaction,
            actor,
            Change {
                action: write.action(),
                object_id: write.object_id(),
                org_id: Some(org_id),
                old_value: write.audited(&old),
                new_value: write.audited(&new),
            },
        )
        .await?;
    }
    let answer = write.answer(&mut transaction, org_id, &new).await?;
    transaction.commit().await?;
    Ok(Applied {
        org_id,
        changed,
        answer,
    })
}

/// Locks an organization for a change to one of its values; `None` when there is no such
/// organization. NO KEY UPDATE: creating its keys (a foreign key check) need not wait.
pub(crate) async fn lock_org(
    connection: &mut PgConnection,
    org_id: Uuid,
) -> Result<Option<()>, sqlx::Error> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM organizations WHERE id = $1 FOR NO KEY UPDATE")
            .bind(org_id)
            .fetch_optional(connection)
            .await?;
    Ok(found.map(|_| ()))
}

/// Locks a key for a change to one of its values and returns its organization; `None`
/// when there is no such key.
pub(crate) async fn lock_key(
    connection: &mut PgConnection,
    key_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT org_id FROM api_keys WHERE id = $1 FOR NO KEY UPDATE")
        .bind(key_id)
        .fetch_optional(connection)
        .await
}
