//! Monthly quotas: how many requests an organization or a key may have served in a
//! period ([`period`]), enforced in every Envoy from leases keysync grants
//! ([`lease`]) and reconciles from the gateways' usage flushes ([`flushed_use`]), with
//! alerts at 80% and 100% ([`alert`]).

pub mod alert;
pub mod flushed_use;
pub mod lease;
pub mod metrics;
pub mod period;

/// Who a quota is for (the `quotas.subject_kind` column and the wire's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectKind {
    Org,
    Key,
}

impl SubjectKind {
    pub fn code(self) -> i16 {
        match self {
            SubjectKind::Org => 1,
            SubjectKind::Key => 2,
        }
    }

    pub fn from_code(code: i64) -> Option<SubjectKind> {
        match code {
            1 => Some(SubjectKind::Org),
            2 => Some(SubjectKind::Key),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Org => "org",
            SubjectKind::Key => "key",
        }
    }
}

/// The largest monthly quota (the migration's CHECK says the same).
pub const MAX_MONTHLY: i64 = 1_000_000_000_000_000;
