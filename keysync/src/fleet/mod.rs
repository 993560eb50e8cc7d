//! The fleet: the gateways that enforce keys (Envoys with the wasm or native filter,
//! keysync replicas answering ext_authz checks), the store revision each serves, and
//! what that tells an operator who revoked a key.
//!
//! - [`sighting`]: one gateway's report, checked and named;
//! - [`registry`]: keeping the reports in PostgreSQL (`keysync_gateways`), so that
//!   every replica and the CLI see every gateway, with bounded writes;
//! - [`roster`]: the fleet as read back, each gateway live or stale, with its lag;
//! - [`receipt`]: waiting until every live gateway serves a revision, and
//!   [`revocation`]: revoking a key and waiting for its receipt (`keys revoke --wait`,
//!   `?wait=`; the CLI and the API call it alike);
//! - [`own_gateway`]: this keysync as a gateway of its own, when it answers ext_authz;
//! - [`metrics`]: the fleet's size and lag.

use std::time::Duration;

use crate::database::describe_sqlx;

pub mod metrics;
pub mod own_gateway;
pub mod receipt;
pub mod registry;
pub mod revocation;
pub mod roster;
pub mod sighting;

/// How the fleet is judged: a gateway is live while it reported within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSettings {
    /// `KEYSYNC_GATEWAY_LIVE_WINDOW`.
    pub live_window: Duration,
}

/// Gateways report every second; thirty of them missed is a gateway gone.
pub const DEFAULT_LIVE_WINDOW: Duration = Duration::from_secs(30);

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            live_window: DEFAULT_LIVE_WINDOW,
        }
    }
}

impl FleetSettings {
    /// How often a gateway whose revision did not move has its row written: a third of
    /// the live window (so a live gateway never looks gone), at most every 10 s.
    pub fn heartbeat_write(&self) -> Duration {
        (self.live_window / 3).min(Duration::from_secs(10))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot read or write the fleet: {}", describe_sqlx(.0))]
    Database(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_gateway_is_written_three_times_a_window_at_most_every_ten_seconds() {
        assert_eq!(
            FleetSettings::default().heartbeat_write(),
            Duration::from_secs(10)
        );
        let short = FleetSettings {
            live_window: Duration::from_secs(3),
        };
        assert_eq!(short.heartbeat_write(), Duration::from_secs(1));
    }
}
