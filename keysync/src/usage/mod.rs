//! Usage metering, keysync's side: the gateways' flushes of cumulative counters
//! ([`flush`]: checked into a [`flush::Flush`]), turned into hourly increments in
//! PostgreSQL ([`store`]: one transaction a flush, a few batched statements whatever the
//! number of counters) once [`screening`] has taken what a flush may add (keys keysync
//! issued, each counted for its own organization, within what a gateway can serve:
//! [`allowance`]), and the monthly partitions of the rollup created ahead and
//! dropped after the retention ([`partitions`]), and the fleet overview's rollup of
//! final hours ([`fleet_rollup`]). Reading the rollup is [`crate::operations::usage`]'s
//! (and [`crate::operations::fleet_usage`]'s). Optionally, each stored flush's increments are
//! exported to Kafka as CloudEvents ([`cloud_event`], [`export`]) after its commit.
//!
//! Exactness rests on two facts: an instance's counters only grow for its life, and
//! keysync stores, in the same transaction as the increments, the cumulative values it
//! took them from. A retried flush (its answer lost), a repeated one or a flush that
//! raced its retry adds nothing twice; a flush keysync could not store is answered
//! `UNAVAILABLE`, so the gateway sends its (larger) counters again later.

pub mod allowance;
pub mod cloud_event;
pub mod export;
pub mod fleet_rollup;
pub mod flush;
pub mod last_used;
pub mod metrics;
pub mod partitions;
pub mod screening;
pub mod store;

/// What happened to a counted request (the proto's `UsageCounter.outcome`, the rollup's
/// `outcome` column): the contract's codes, which the gateways count under.
pub use keysync_contract::usage_outcome::Outcome;
