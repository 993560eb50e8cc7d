//! The fleet's metrics, as `serve` last read the fleet from PostgreSQL (every few
//! seconds): how many gateways are live and stale, and how far the furthest live one is
//! behind.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::fleet::roster::Roster;
use crate::metric_label::label_values;

/// Whether a gateway counts.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum GatewayState {
    Live,
    Stale,
}

label_values!(GatewayState { Live => "live", Stale => "stale" });

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: GatewayState,
}

/// The fleet metrics; cheap to update from any task.
#[derive(Debug)]
pub struct FleetMetrics {
    gateways: Family<StateLabels, Gauge>,
    max_lag: Gauge,
}

impl FleetMetrics {
    /// The metrics, registered in `registry`, every label combination at zero.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = FleetMetrics {
            gateways: Family::default(),
            max_lag: Gauge::default(),
        };
        registry.register(
            "keysync_gateways",
            "Gateways that reported to any keysync replica, by state (live: within \
             KEYSYNC_GATEWAY_LIVE_WINDOW; stale: not since, kept for a day)",
            metrics.gateways.clone(),
        );
        registry.register(
            "keysync_gateway_max_lag",
            "Revisions the furthest-behind live gateway serves behind the database",
            metrics.max_lag.clone(),
        );
        for state in [GatewayState::Live, GatewayState::Stale] {
            drop(metrics.gateways.get_or_create(&StateLabels { state }));
        }
        metrics
    }

    /// Shows `roster`.
    pub fn record(&self, roster: &Roster) {
        let live = roster.live().count();
        let stale = roster.gateways.len() - live;
        let max_lag = roster.live().map(|gateway| gateway.lag).max().unwrap_or(0);
        for (state, count) in [(GatewayState::Live, live), (GatewayState::Stale, stale)] {
            self.gateways
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        self.max_lag.set(i64::try_from(max_lag).unwrap_or(i64::MAX));
    }
}
