//! The cost calculation engine: price plans and what an organization's usage costs on
//! them, in exact integer money.
//!
//! A plan ([`plan`]) has a currency ([`currency`]), a monthly base fee, units included
//! and graduated tiers priced per 1,000 units beyond them, with optional per-endpoint
//! weights. An organization's plan changes ([`schedule`]) cut a billing period (a
//! calendar month, [`period`]) into segments, and [`invoice`] prices each with the
//! billable requests [`store`] reads from the usage rollup: amounts in minor units
//! ([`money`]), rounded once per invoice line, half up. At a period's close,
//! `keysync serve` issues each organization's invoice ([`close`]) and publishes it on
//! the usage export ([`event`]), counted in [`metrics`]. Making plans and putting organizations on them is
//! [`crate::operations`]'s, audited like every operator change.

pub mod close;
pub mod currency;
pub mod event;
pub mod invoice;
pub mod metrics;
pub mod money;
pub mod period;
pub mod plan;
pub mod schedule;
pub mod store;
