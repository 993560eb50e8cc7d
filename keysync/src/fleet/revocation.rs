//! Revoking a key and, when asked, waiting for its receipt: how many live gateways serve
//! a revision that includes the revocation (`keysync keys revoke --wait`, `POST
//! /v1/keys/{key_id}/revoke?wait=10s`). The revocation itself is [`keys::revoke`]; the
//! waiting is [`crate::fleet::receipt`].

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::fleet::receipt::{self, Receipt};
use crate::fleet::roster::current_revision;
use crate::fleet::FleetError;
use crate::operations::actor::Actor;
use crate::operations::keys::{self, KeyError, RevokedKey};

/// How long to wait, and when a gateway counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub timeout: Duration,
    /// `KEYSYNC_GATEWAY_LIVE_WINDOW`.
    pub live_window: Duration,
}

/// A revoked key, with its receipt when the caller waited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConfirmedRevocation {
    #[serde(flatten)]
    pub revoked: RevokedKey,
    /// Only with `?wait=`: how many live gateways serve the revocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
}

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key is revoked; only the waiting failed.
    #[error("key {key_id} is revoked, but {error}")]
    Fleet { key_id: Uuid, error: FleetError },
}

/// Revokes key `id`; with `wait`, then waits until every live gateway serves the
/// database's revision as of the commit (which includes the revocation, or the earlier
/// one of a key already revoked), or `wait.timeout` passed.
pub async fn revoke(
    pool: &PgPool,
    actor: Actor,
    id: Uuid,
    wait: Option<Wait>,
) -> Result<ConfirmedRevocation, RevocationError> {
    let revoked = keys::revoke(pool, actor, id).await?;
    let Some(wait) = wait else {
        return Ok(ConfirmedRevocation {
            revoked,
            receipt: None,
        });
    };
    let started = Instant::now();
    let fleet_failed = |error| RevocationError::Fleet { key_id: id, error };
    let revision = current_revision(pool).await.map_err(fleet_failed)?;
    let receipt = receipt::wait(pool, revision, started, wait.timeout, wait.live_window)
        .await
        .map_err(fleet_failed)?;
    Ok(ConfirmedRevocation {
        revoked,
        receipt: Some(receipt),
    })
}
