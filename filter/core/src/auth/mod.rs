//! The auth filter: on every Envoy worker, each request's credential is authenticated,
//! its key judged from the store (or asked of keysync on a miss), checked against its
//! policy, taken through admission (rate limit, quotas) and forwarded with the
//! gateway's identity, or refused with the contract's reply.
//!
//! - [`request`]: one request's flow ([`request::AuthRequest`]), with
//!   [`request_usage`] for what metering counts of it;
//! - [`worker`]: what each worker keeps ([`worker::AuthWorker`]) and its tick, and what
//!   it does, by concept: [`key_judgement`], [`lookup`] (the miss path), [`admission`]
//!   and [`admission_step`] (rate limit, quotas, forwarding, once for both paths),
//!   [`parked_requests`] (those that must wait for a tick), [`replies`],
//!   [`ready_paths`] (`/health` before and after the first sync), [`store_trust`]
//!   (staleness) and [`worker_metering`];
//! - [`decision`]: the verdicts, plain logic;
//! - [`negative_cache`], [`record_cache`]: the worker's memory of keys.

pub mod admission;
pub mod admission_step;
pub mod decision;
pub mod key_judgement;
pub mod lookup;
pub mod negative_cache;
pub mod parked_requests;
pub mod ready_paths;
pub mod record_cache;
pub mod replies;
pub mod request;
pub mod request_usage;
pub mod store_trust;
pub mod worker;
pub mod worker_metering;

#[cfg(test)]
mod tests;
