//! Monthly quotas: how many requests an organization or a key may have served in a
//! period ([`period`]), enforced in every Envoy from leases keysync grants
//! ([`lease`]) and reconciles from the gateways' usage flushes ([`flushed_use`]), with
//! alerts at 80% and 100% ([`alert`]).

pub mod alert;
pub mod flushed_use;
pub mod lease;
pub mod metrics;
pub mod period;

// Who a quota is for is the contract's `SubjectKind` (org 1, key 2): the code the
// `subject_kind` columns store and the wire carries. Statements bind it; only the
// migration's CHECKs spell the codes as literals (SQL cannot name a Rust constant, and
// an applied migration never changes).

/// The largest monthly quota (the migration's CHECK says the same).
pub const MAX_MONTHLY: i64 = 1_000_000_000_000_000;
