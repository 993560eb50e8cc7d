//! The fleet as read back from PostgreSQL (`keysync gateways`, `GET /v1/gateways`): each
//! gateway with the revision it serves, how far that is behind the database's, when it
//! last reported, and whether that is within the live window (a stale gateway is shown,
//! flagged, until it is forgotten a day later).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::fleet::FleetError;
use crate::operations::timestamp::Timestamp;

/// Every gateway known, and the revision they are measured against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Roster {
    /// The database's current revision: every committed change up to it.
    pub revision: u64,
    /// Live gateways first, then stale ones; by mode, host and id within each.
    pub gateways: Vec<Gateway>,
}

/// One gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Gateway {
    pub instance_id: Uuid,
    pub host: String,
    /// `wasm`, `native` or `ext_authz`.
    pub mode: String,
    pub version: String,
    /// Every change up to this revision is reflected in every admission the gateway
    /// makes (0: none of the current revision history).
    pub revision: u64,
    /// Revisions behind the database's.
    pub lag: u64,
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: Timestamp,
    /// Not seen within the live window (`KEYSYNC_GATEWAY_LIVE_WINDOW`): it no longer
    /// counts in receipts.
    pub stale: bool,
}

#[derive(sqlx::FromRow)]
struct GatewayRow {
    instance_id: Uuid,
    host: String,
    mode: String,
    version: String,
    revision: i64,
    last_seen: DateTime<Utc>,
    live: bool,
}

/// The database's current revision.
pub async fn current_revision(pool: &PgPool) -> Result<u64, FleetError> {
    let revision: i64 = sqlx::query_scalar("SELECT revision FROM keysync_revision")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(revision).unwrap_or(0))
}

/// Every gateway, judged live against `live_window`.
pub async fn read(pool: &PgPool, live_window: Duration) -> Result<Roster, FleetError> {
    let revision = current_revision(pool).await?;
    let rows: Vec<GatewayRow> = sqlx::query_as(
        "SELECT instance_id, host, mode, version, revision, last_seen, \
                last_seen >= now() - make_interval(secs => $1) AS live \
         FROM keysync_gateways ORDER BY live DESC, mode, host, instance_id",
    )
    .bind(live_window.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let gateways = rows
        .into_iter()
        .map(|row| {
            let served = u64::try_from(row.revision).unwrap_or(0);
            Gateway {
                instance_id: row.instance_id,
                host: row.host,
                mode: row.mode,
                version: row.version,
                revision: served,
                lag: revision.saturating_sub(served),
                last_seen: Timestamp(row.last_seen),
                stale: !row.live,
            }
        })
        .collect();
    Ok(Roster { revision, gateways })
}

impl Roster {
    /// The gateways that count: seen within the live window.
    pub fn live(&self) -> impl Iterator<Item = &Gateway> {
        self.gateways.iter().filter(|gateway| !gateway.stale)
    }
}
