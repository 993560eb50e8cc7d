//! A revocation's receipt: waiting until every live gateway serves a revision that
//! includes it, and saying how many did (`keysync keys revoke --wait`,
//! `POST /v1/keys/{key_id}/revoke?wait=10s`).
//!
//! The promise: when every live gateway is confirmed, no worker of any of them admits
//! the key any more (each gateway reports only a revision that every worker's admission
//! reflects; see the filter's `sync::served_revision`). Its limits: a gateway that has
//! not reported within the live window does not count (it is gone, or cut off from
//! keysync, and then its store goes stale and it asks keysync about each key); a
//! gateway that never reported (started after the revocation) loads a store that
//! includes it.

use std::time::{Duration, Instant};

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::fleet::roster::{self, Gateway};
use crate::fleet::FleetError;

/// How often the fleet is read again while waiting.
const POLL: Duration = Duration::from_millis(20);

/// Longest wait the HTTP API accepts (`?wait=`): a request holds a connection.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    /// Live gateways that serve `revision` or later.
    pub confirmed: u32,
    /// Live gateways.
    pub gateways: u32,
    /// From the revocation's commit to the answer.
    pub elapsed_ms: u64,
    /// The database's revision after the revocation: it includes it.
    pub revision: u64,
    /// Live gateways that do not serve `revision` yet (empty when confirmed).
    pub missing: Vec<MissingGateway>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MissingGateway {
    pub instance_id: Uuid,
    pub host: String,
    pub mode: String,
    /// The revision it last reported serving.
    pub revision: u64,
}

impl Receipt {
    /// Every live gateway confirmed.
    pub fn complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Waits until every gateway seen within `live_window` serves `revision`, or
/// `timeout` passed since `started`; reads the fleet every [`POLL`].
pub async fn wait(
    pool: &PgPool,
    revision: u64,
    started: Instant,
    timeout: Duration,
    live_window: Duration,
) -> Result<Receipt, FleetError> {
    loop {
        let roster = roster::read(pool, live_window).await?;
        let live: Vec<&Gateway> = roster.live().collect();
        let missing: Vec<MissingGateway> = live
            .iter()
            .filter(|gateway| gateway.revision < revision)
            .map(|gateway| MissingGateway {
                instance_id: gateway.instance_id,
                host: gateway.host.clone(),
                mode: gateway.mode.clone(),
                revision: gateway.revision,
            })
            .collect();
        let elapsed = started.elapsed();
        if missing.is_empty() || elapsed >= timeout {
            let gateways = u32::try_from(live.len()).unwrap_or(u32::MAX);
            let confirmed = gateways.saturating_sub(u32::try_from(missing.len()).unwrap_or(0));
            return Ok(Receipt {
                confirmed,
                gateways,
                elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                revision,
                missing,
            });
        }
        tokio::time::sleep(POLL.min(timeout - elapsed)).await;
    }
}
