//! This keysync as a gateway of the fleet, and the fleet's upkeep in `serve`.
//!
//! A keysync replica that answers Envoy's ext_authz checks decides admissions from its
//! own in-memory key set, with no cache between: the revision it serves is the key
//! set's. It reports itself (mode `ext_authz`) only while it answers checks (one within
//! the live window), so a replica nobody uses for ext_authz never holds up a receipt.
//! The same task reads the fleet back for the metrics, and deletes the rows of gateways
//! gone for a day.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keysync_contract::gateway_mode::GatewayMode;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use uuid::Uuid;

use crate::clock::now_unix;
use crate::fleet::metrics::FleetMetrics;
use crate::fleet::registry::{self, GatewayRegistry};
use crate::fleet::roster;
use crate::fleet::sighting::Sighting;
use crate::fleet::FleetSettings;
use crate::key_set::SharedKeySet;

/// How often the key set's revision is looked at: a revocation's receipt waits for it.
const LOOK_EVERY: Duration = Duration::from_millis(50);
/// How often rows of gateways gone for a day are deleted.
const FORGET_EVERY: Duration = Duration::from_secs(60 * 60);

/// When this replica last answered an ext_authz check (unix seconds; 0: never). Set
/// on every check: one relaxed store.
#[derive(Debug, Clone, Default)]
pub struct ChecksSeen(Arc<AtomicI64>);

impl ChecksSeen {
    pub fn mark(&self) {
        self.0.store(now_unix(), Ordering::Relaxed);
    }

    fn within(&self, window: Duration) -> bool {
        let last = self.0.load(Ordering::Relaxed);
        let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        last != 0 && now_unix().saturating_sub(last) <= window
    }
}

/// What the task works with.
#[derive(Debug)]
pub struct OwnGateway {
    pub pool: PgPool,
    pub registry: GatewayRegistry,
    pub key_set: SharedKeySet,
    pub checks: ChecksSeen,
    pub settings: FleetSettings,
    pub metrics: Arc<FleetMetrics>,
}

impl OwnGateway {
    /// Runs until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let instance_id = Uuid::new_v4();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_default();
        let mut next_roster = Instant::now();
        let mut next_forget = Instant::now();
        loop {
            if self.checks.within(self.settings.live_window) {
                let position = self.key_set.read().position();
                let sighting = Sighting {
                    instance_id,
                    host: if host.is_empty() {
                        "keysync".to_owned()
                    } else {
                        host.clone()
                    },
                    mode: GatewayMode::ExtAuthz,
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    revision: position.revision,
                };
                if let Err(error) = self.registry.saw(&sighting).await {
                    warn!("fleet: cannot record this keysync as an ext_authz gateway: {error}");
                }
            }
            let now = Instant::now();
            if now >= next_roster {
                next_roster = now + self.settings.heartbeat_write();
                match roster::read(&self.pool, self.settings.live_window).await {
                    Ok(roster) => self.metrics.record(&roster),
                    Err(error) => warn!("fleet: {error}"),
                }
            }
            if now >= next_forget {
                next_forget = now + FORGET_EVERY;
                if let Err(error) = registry::forget_gone(&self.pool).await {
                    warn!("fleet: cannot delete gateways gone for a day: {error}");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    }
}
