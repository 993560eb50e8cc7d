//! Signed webhooks (Standard Webhooks): what keysync tells operators' endpoints when a
//! key is created, revoked, rotated, expires or is reported leaked, and when a quota
//! threshold is crossed.
//!
//! - [`event`]: the event types;
//! - [`outbox`]: a delivery row per subscribed endpoint, written in the transaction of
//!   the change it announces (the audit trail's [`crate::operations::audit::record`]
//!   and the usage flush's quota crossings call it), so a rolled-back change sends
//!   nothing and a committed one is never lost;
//! - [`delivery`]: `serve`'s sender, which claims due rows (no two replicas send one at
//!   once), signs ([`signature`], with the endpoint's [`secret`]) and sends them
//!   ([`sender`]) to addresses checked against the endpoint's rules ([`destination`]),
//!   retrying with backoff for a day ([`settings`]);
//! - [`expiry`]: the scan that announces each key's expiry once;
//! - [`metrics`]: attempts by result, deliveries given up.
//!
//! It reads nothing of the rest of keysync but the log throttle and metric labels:
//! operations and the usage flush call in, never the other way.

pub mod delivery;
pub mod destination;
pub mod event;
pub mod expiry;
pub mod metrics;
pub mod outbox;
pub mod secret;
pub mod sender;
pub mod settings;
pub mod signature;

use std::sync::Arc;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use self::metrics::WebhookMetrics;
use self::settings::DeliverySettings;

/// Delivers webhooks and scans for expired keys until `stop`.
pub async fn run(
    pool: PgPool,
    settings: DeliverySettings,
    metrics: Arc<WebhookMetrics>,
    stop: CancellationToken,
) {
    tokio::join!(
        delivery::run(pool.clone(), settings, metrics.clone(), stop.clone()),
        expiry::run(pool, settings.expiry_scan_interval, metrics, stop),
    );
}
