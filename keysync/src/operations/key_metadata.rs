//! A key's metadata, set or cleared after its creation (`keys set-metadata`): one
//! audited write ([`super::audited_write`]) of `api_keys.metadata`, recorded as
//! `key.metadata_set` with the object before and after. Like any write of the key's
//! row it restamps the key, so gateways get it once more, unchanged.

use serde::Serialize;
use sqlx::PgConnection;
use sqlx::PgPool;
use uuid::Uuid;

use super::actor::Actor;
use super::audit::AuditAction;
use super::audited_write::{self, AuditedWrite};
use super::metadata::Metadata;

#[derive(Debug, thiserror::Error)]
pub enum KeyMetadataError {
    #[error("key {0} not found")]
    KeyNotFound(Uuid),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A key's metadata after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyMetadataOutcome {
    pub key_id: Uuid,
    pub org_id: Uuid,
    /// The key's JSON object now, as given; `null`: none.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
    /// False when the key already had exactly this text; nothing was written.
    pub changed: bool,
}

struct SetKeyMetadata<'a> {
    key_id: Uuid,
    metadata: Option<&'a Metadata>,
}

impl AuditedWrite for SetKeyMetadata<'_> {
    type Value = Option<Metadata>;
    type Audited = Option<Metadata>;
    type Answer = ();
    type Error = KeyMetadataError;

    fn action(&self) -> AuditAction {
        AuditAction::KeyMetadataSet
    }

    fn object_id(&self) -> Uuid {
        self.key_id
    }

    async fn lock(&self, connection: &mut PgConnection) -> Result<Uuid, KeyMetadataError> {
        audited_write::lock_key(connection, self.key_id)
            .await?
            .ok_or(KeyMetadataError::KeyNotFound(self.key_id))
    }

    async fn read(
        &self,
        connection: &mut PgConnection,
        _org_id: Uuid,
    ) -> Result<Option<Metadata>, KeyMetadataError> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT metadata::text FROM api_keys WHERE id = $1")
                .bind(self.key_id)
                .fetch_one(connection)
                .await?;
        Ok(text.map(Metadata::stored))
    }

    fn wanted(&self, _current: &Option<Metadata>) -> Option<Metadata> {
        self.metadata.cloned()
    }

    async fn write(
        &self,
        connection: &mut PgConnection,
        actor: Actor,
        _org_id: Uuid,
        _old: &Option<Metadata>,
        new: &Option<Metadata>,
    ) -> Result<(), KeyMetadataError> {
        sqlx::query("UPDATE api_keys SET metadata = $2::json, changed_by_token = $3 WHERE id = $1")
            .bind(self.key_id)
            .bind(new.as_ref().map(Metadata::as_str))
            .bind(actor.token_id())
            .execute(connection)
            .await?;
        Ok(())
    }

    /// The object itself; NULL: none.
    fn audited(&self, value: &Option<Metadata>) -> Option<Metadata> {
        value.clone()
    }

    async fn answer(
        &self,
        _connection: &mut PgConnection,
        _org_id: Uuid,
        _value: &Option<Metadata>,
    ) -> Result<(), KeyMetadataError> {
        Ok(())
    }
}

/// Sets the key's metadata (`None`: clears it); any key, revoked and expired included.
pub async fn set_key_metadata(
    pool: &PgPool,
    actor: Actor,
    key_id: Uuid,
    metadata: Option<&Metadata>,
) -> Result<KeyMetadataOutcome, KeyMetadataError> {
    let write = SetKeyMetadata { key_id, metadata };
    let applied = audited_write::apply(pool, actor, &write).await?;
    Ok(KeyMetadataOutcome {
        key_id,
        org_id: applied.org_id,
        metadata: metadata.cloned(),
        changed: applied.changed,
    })
}
