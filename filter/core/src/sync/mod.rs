//! The sync service: once per Envoy process, it keeps the key store in step with
//! keysync (a full refresh, then a `WatchKeys` stream), tells the workers how fresh the
//! store is, and runs usage reports and quota claims beside.
//!
//! - [`service`] (with [`service_refresh`], [`service_stream`], [`service_metrics`]):
//!   the state machine;
//! - [`full_refresh`]: one full refresh, page by page;
//! - [`watch_client`]: what each stream message means for the store;
//! - [`refresh_schedule`]: when refreshes are due, and the backoff after failures;
//! - [`sync_lease`]: which VM syncs, and taking over from one that died;
//! - [`served_revision`]: the revision every worker serves, and [`gateway_report`]: its
//!   reports to keysync (the fleet, revocation receipts).

pub mod full_refresh;
pub mod gateway_report;
pub mod refresh_schedule;
pub mod served_revision;
pub mod service;
pub mod service_metrics;
pub mod service_refresh;
pub mod service_stream;
pub mod sync_lease;
pub mod watch_client;

#[cfg(test)]
mod tests;
