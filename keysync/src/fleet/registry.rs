//! Keeping the fleet in PostgreSQL: each gateway's row in `keysync_gateways`, written by
//! the replica it reports to.
//!
//! Gateways report every second; a row is written only when what it says changed (the
//! revision moved, another host, mode or version) or when it was last written a
//! heartbeat ago ([`FleetSettings::heartbeat_write`]), so that `last_seen` stays inside
//! the live window. What was written is remembered per replica, in memory: a gateway
//! that moves to another replica is written once more there, which is harmless.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tracing::warn;
use uuid::Uuid;

use crate::fleet::sighting::Sighting;
use crate::fleet::{FleetError, FleetSettings};
use crate::log_throttle::{held_back_note, LogThrottle, LOG_PERIOD};

/// Gateways remembered before the memory starts over (each then written once more).
const MAX_REMEMBERED: usize = 10_000;

/// Rows of gateways unseen this long are deleted.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Writes sightings; cheap to clone, all state is shared.
#[derive(Debug, Clone)]
pub struct GatewayRegistry {
    pool: PgPool,
    heartbeat: Duration,
    written: Arc<Mutex<HashMap<Uuid, Written>>>,
    /// One log line a period while PostgreSQL refuses the writes.
    failures: Arc<LogThrottle>,
}

#[derive(Debug)]
struct Written {
    sighting: Sighting,
    at: Instant,
}

impl GatewayRegistry {
    pub fn new(pool: PgPool, settings: FleetSettings) -> Self {
        GatewayRegistry {
            pool,
            heartbeat: settings.heartbeat_write(),
            written: Arc::default(),
            failures: Arc::new(LogThrottle::new(LOG_PERIOD)),
        }
    }

    /// Logs a failed write, one line a period.
    pub fn log_failure(&self, error: &FleetError) {
        if let Some(held_back) = self.failures.admit(Instant::now()) {
            warn!(
                "gateway report not recorded (the gateway reports again): {error}{}",
                held_back_note(held_back)
            );
        }
    }

    /// Records `sighting` if the row needs it; whether it was written.
    pub async fn saw(&self, sighting: &Sighting) -> Result<bool, FleetError> {
        let now = Instant::now();
        if !self.due(sighting, now) {
            return Ok(false);
        }
        write(&self.pool, sighting).await?;
        self.remember(sighting, now);
        Ok(true)
    }

    /// `sighting` is in its row as of `now`.
    fn remember(&self, sighting: &Sighting, now: Instant) {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if written.len() >= MAX_REMEMBERED {
            written.clear();
        }
        written.insert(
            sighting.instance_id,
            Written {
                sighting: sighting.clone(),
                at: now,
            },
        );
    }

    fn due(&self, sighting: &Sighting, now: Instant) -> bool {
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.get(&sighting.instance_id).is_none_or(|last| {
            last.sighting != *sighting || now.duration_since(last.at) >= self.heartbeat
        })
    }
}

/// Writes a gateway's row now. The revision is overwritten, never kept as a maximum: after
/// a restore of the database the revisions count again from lower values. (A gateway has
/// one report in flight at a time, so its reports arrive in order.)
pub async fn write(pool: &PgPool, sighting: &Sighting) -> Result<(), FleetError> {
    let revision = i64::try_from(sighting.revision).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO keysync_gateways (instance_id, host, mode, version, revision, last_seen) \
         VALUES ($1, $2, $3, $4, $5, now()) \
         ON CONFLICT (instance_id) DO UPDATE SET host = EXCLUDED.host, mode = EXCLUDED.mode, \
             version = EXCLUDED.version, revision = EXCLUDED.revision, \
             last_seen = EXCLUDED.last_seen",
    )
    .bind(sighting.instance_id)
    .bind(&sighting.host)
    .bind(sighting.mode.name())
    .bind(&sighting.version)
    .bind(revision)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes the rows of gateways unseen for [`FORGET_AFTER`]; how many.
pub async fn forget_gone(pool: &PgPool) -> Result<u64, FleetError> {
    let deleted = sqlx::query(
        "DELETE FROM keysync_gateways WHERE last_seen < now() - make_interval(secs => $1)",
    )
    .bind(FORGET_AFTER.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

#[cfg(test)]
mod tests {
    use keysync_contract::gateway_mode::GatewayMode;
    use sqlx::postgres::PgPoolOptions;

    use super::*;

    fn sighting(revision: u64) -> Sighting {
        Sighting {
            instance_id: Uuid::from_u128(7),
            host: "edge-1".into(),
            mode: GatewayMode::Wasm,
            version: "0.1.0".into(),
            revision,
        }
    }

    #[tokio::test]
    async fn a_row_is_written_when_it_changes_or_a_heartbeat_passed_never_per_report() {
        // Never connected: only what the registry remembers is exercised.
        let pool = PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        let settings = FleetSettings {
            live_window: Duration::from_secs(30),
        };
        let registry = GatewayRegistry::new(pool, settings);
        let start = Instant::now();
        assert!(registry.due(&sighting(5), start), "a gateway not seen yet");
        registry.remember(&sighting(5), start);
        let second = start + Duration::from_secs(1);
        assert!(
            !registry.due(&sighting(5), second),
            "the same report a second later"
        );
        assert!(registry.due(&sighting(6), second), "the revision moved");
        let mut moved = sighting(5);
        moved.host = "edge-2".into();
        assert!(registry.due(&moved, second), "another host");
        let beat = start + settings.heartbeat_write();
        assert!(!registry.due(&sighting(5), beat - Duration::from_millis(1)));
        assert!(
            registry.due(&sighting(5), beat),
            "the heartbeat keeps last_seen fresh"
        );
    }
}
