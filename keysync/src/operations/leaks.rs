//! A key reported leaked (found in public by a secret scanner): revoked or flagged, as
//! `KEYSYNC_LEAK_ACTION` says, once. The report is recorded in the audit trail in the
//! same transaction; neither the key nor its hash is.

use std::str::FromStr;

use keysync_contract::key_hash::KeyHash;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::actor::Actor;
use super::audit::{self, AuditAction, Change};

/// What a report of a live key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeakAction {
    /// Revoke the key at once (the default): Envoys refuse it within moments.
    Revoke,
    /// Mark it leaked (`keys list` shows when) and leave it working, for operators who
    /// want to reach the customer first.
    Flag,
}

impl FromStr for LeakAction {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "revoke" => Ok(LeakAction::Revoke),
            "flag" => Ok(LeakAction::Flag),
            _ => Err("expected revoke or flag".to_owned()),
        }
    }
}

/// Where the scanner found the key (public information, kept in the audit trail).
#[derive(Debug, Clone, Serialize)]
pub struct Sighting {
    pub url: String,
    pub source: String,
}

/// The key's audited state around a report.
#[derive(Debug, Serialize)]
struct AuditedLeak<'a> {
    active: bool,
    /// Set on the new value only: what the report did and where the key was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<LeakAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sighting: Option<&'a Sighting>,
}

/// What a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakOutcome {
    /// No key has this hash: a false positive.
    Unknown,
    /// First report of this key: revoked now (it was active).
    Revoked { key_id: Uuid, org_id: Uuid },
    /// First report of this key: flagged (it keeps its state).
    Flagged { key_id: Uuid, org_id: Uuid },
    /// Reported before (or a replay): nothing changed.
    AlreadyReported { key_id: Uuid, org_id: Uuid },
}

/// Records a report of the key with `hash`, acting as `action` says.
pub async fn report(
    pool: &PgPool,
    hash: &KeyHash,
    action: LeakAction,
    sighting: &Sighting,
) -> Result<LeakOutcome, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    // The row lock orders concurrent reports of one key: one of them is the first.
    let row: Option<(Uuid, Uuid, bool, bool)> = sqlx::query_as(
        "SELECT id, org_id, active, leaked_at IS NOT NULL FROM api_keys \
         WHERE key_hash = $1 FOR UPDATE",
    )
    .bind(hash.as_bytes().as_slice())
    .fetch_optional(&mut *transaction)
    .await?;
    let Some((key_id, org_id, active, reported)) = row else {
        return Ok(LeakOutcome::Unknown);
    };
    if reported {
        return Ok(LeakOutcome::AlreadyReported { key_id, org_id });
    }
    let revoke = action == LeakAction::Revoke && active;
    sqlx::query(
        "UPDATE api_keys SET leaked_at = now(), \
           active = CASE WHEN $2 THEN false ELSE active END, \
           revoked_at = CASE WHEN $2 THEN now() ELSE revoked_at END \
         WHERE id = $1",
    )
    .bind(key_id)
    .bind(revoke)
    .execute(&mut *transaction)
    .await?;
    audit::record(
        &mut transaction,
        Actor::LeakReport,
        Change {
            action: AuditAction::KeyLeakReported,
            object_id: key_id,
            org_id: Some(org_id),
            old_value: AuditedLeak {
                active,
                action: None,
                sighting: None,
            },
            new_value: AuditedLeak {
                active: active && !revoke,
                action: Some(action),
                sighting: Some(sighting),
            },
        },
    )
    .await?;
    transaction.commit().await?;
    Ok(if revoke {
        LeakOutcome::Revoked { key_id, org_id }
    } else {
        LeakOutcome::Flagged { key_id, org_id }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_action_reads_revoke_or_flag() {
        assert_eq!("revoke".parse(), Ok(LeakAction::Revoke));
        assert_eq!("flag".parse(), Ok(LeakAction::Flag));
        assert!("delete".parse::<LeakAction>().is_err());
    }
}
