//! keysync's Envoy filter, its logic: authenticates API keys against a key store every
//! worker sees, kept current from keysync. No proxy-wasm here, nor any other host: the
//! logic reaches Envoy only through the [`host`] seam, which an adapter implements
//! (`keysync-filter`, the proxy-wasm cdylib) and a fake stands in for in native tests.
//! The contract itself (credentials, replies, wire codes) lives in `keysync-contract`.
//!
//! Three roles, chosen by the plugin configuration ([`config`]): the auth filter on every
//! worker ([`auth`]), the sync service once per process ([`sync`]), and the readiness
//! gate of the probe listener ([`readiness`]). They use the key store ([`store`]), the
//! limits ([`limits`]) and usage metering ([`usage`]), and call keysync through
//! [`keysync_api`].
//!
//! The folders are private and what an adapter needs is re-exported below, so the
//! dead-code lint still sees unused items.
#![forbid(unsafe_code)]
// Runs inside Envoy (a wasm VM, or a native module's threads), where a panic kills the
// VM of a whole worker, or the proxy.
#![deny(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unimplemented,
    clippy::unreachable
)]

mod auth;
mod config;
mod host;
mod keysync_api;
mod limits;
mod readiness;
mod stats;
mod steady_clock;
mod store;
mod sync;
mod usage;

pub use auth::request::AuthRequest;
pub use auth::worker::{AuthWorker, WORKER_TICK};
pub use config::{AuthConfig, ConfigError, PluginConfig, SyncConfig};
pub use host::{Action, Entry, Host, HostError, HttpRequest, MetricKind, SharedData, WriteError};
pub use keysync_api::{check_size, ApiError, Reply, MAX_MESSAGE_BYTES};
pub use keysync_contract::gateway_mode::GatewayMode;
pub use readiness::ReadinessGate;
pub use stats::every_metric;
pub use sync::gateway_report::GatewayIdentity;
pub use sync::service::{SyncService, TICK as SYNC_TICK};

/// A fake Envoy for native tests of an adapter (feature `fake-host`).
#[cfg(any(test, feature = "fake-host"))]
pub mod fake {
    pub use crate::host::fake_host::{Call, FakeEnvoy, FakeHost, FakeRequest, Reply};
    pub use crate::host::fake_log::{logged, logged_line};
    pub use crate::host::fake_shared_data::FakeSharedData;
}
