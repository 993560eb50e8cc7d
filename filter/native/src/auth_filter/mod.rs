//! The auth filter: the HTTP filter `keysync-auth` (`envoy.filters.http.dynamic_modules`, the
//! auth role's plugin configuration as its `filter_config`), the core's request flow on
//! every worker.
//!
//! - `filter_config`: one configuration (main thread): its settings, and the hooks of the
//!   sync service's calls that go out through it;
//! - `worker_slot`: what each worker keeps per configuration (the core's `AuthWorker`) and
//!   when it ticks: the ABI has no worker timer, so ticks ride on the worker's own requests;
//! - `auth_stream`: one request (its worker thread), whose wake-ups while it is parked come
//!   from the main thread (`crate::wakeups`).

pub mod auth_stream;
pub mod filter_config;
pub mod worker_slot;
