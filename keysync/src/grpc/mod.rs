//! Everything keysync serves on its gRPC port, and how that port lets callers in.
//!
//! The services, each a thin tonic shell over the logic it calls:
//! - `keysync.v1.KeySync`, the API the wasm filter calls ([`key_sync`]): paging through
//!   the key set and looking up one key (each key sent as a [`key_record`]), the
//!   `WatchKeys` stream ([`watch`]), the gateways' usage flushes ([`report_usage`],
//!   stored by [`crate::usage`]) and their quota leases ([`acquire_quota`], granted by
//!   [`crate::quota`]);
//! - Envoy's rate-limit service ([`rate_limit`]), counting with [`crate::global_limit`];
//! - Envoy's external authorization API, for gateways without the filter
//!   ([`ext_authz`]);
//! - the standard gRPC health service ([`health`]).
//!
//! Every call passes [`guard`] first (one of the [`tokens`] accepted, compared as
//! [`token`] says, with the [`rights`] the method needs; a bound on calls in progress);
//! [`tls`] reads the port's certificate files. [`metrics`] counts the calls.
//! [`crate::server`] puts them all on one port.

pub mod acquire_quota;
pub mod ext_authz;
pub mod guard;
pub mod health;
pub mod key_record;
pub mod key_sync;
pub mod metrics;
pub mod rate_limit;
pub mod report_usage;
pub mod rights;
pub mod tls;
pub mod token;
pub mod tokens;
pub mod watch;
