//! A valid key's request on its way through admission: its rate limit, then its
//! quotas, then forwarding with its identity (`admission_step` takes the step, once per
//! request and again on each tick while it is parked). What it has passed so far is kept
//! here, so that a request that had to wait is never counted twice.

use crate::auth::record_cache::CachedRecord;
use crate::config::RateLimitMode;
use crate::limits::local_rate_limit::WindowState;
use keysync_contract::limit::Limit;
use keysync_contract::subject::Subject;
use keysync_contract::usage_outcome::Outcome;
use std::cell::Cell;
use std::rc::Rc;

/// Ticks a request waits for other workers' leases (or the next quota lease) before it
/// is refused anyway: their ticks give leases back within one, unless the machine is
/// very busy.
pub const MAX_WAIT_TICKS: u32 = 4;

/// The credentials of an accepted request, taken off it before it goes upstream (unless
/// `forward_credential`): the header sources that carried one, the query parameters
/// (a rewritten `:path`) and the cookies (a rewritten `Cookie`), as the configured
/// `credentials` found them.
pub use keysync_contract::credential_sources::Strip as Carried;

/// What the request's rate limit still asks of admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimitStep {
    /// Local mode: count the request against this subject's limit (again, after a wait).
    Local(Subject, Limit),
    /// Global mode: name the subject and limit to Envoy's rate-limit filter, or (`None`,
    /// a key without a limit) strip any a client sent.
    Global(Option<(Subject, Limit)>),
    /// Passed, or nothing to do.
    Done,
}

impl RateLimitStep {
    /// What a key's limit (`limit_subject`) asks in `mode`.
    pub fn of(mode: RateLimitMode, limit_subject: Option<(Subject, Limit)>) -> RateLimitStep {
        match (mode, limit_subject) {
            (RateLimitMode::Local, Some((subject, limit))) => RateLimitStep::Local(subject, limit),
            (RateLimitMode::Global, named) => RateLimitStep::Global(named),
            (RateLimitMode::Local | RateLimitMode::Off, _) => RateLimitStep::Done,
        }
    }
}

/// Which of a request's quotas (its key's, its organization's) admitted it already: a
/// request parked for one is never counted twice against the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaTaken {
    pub key: bool,
    pub org: bool,
}

/// One request's admission, shared by the request and (while it is parked) its worker.
pub struct Admission {
    pub rate_limit: Cell<RateLimitStep>,
    /// The quota subjects that admitted it already.
    pub quota_taken: Cell<QuotaTaken>,
    pub identity: Rc<CachedRecord>,
    pub carried: Carried,
    /// Set when its local rate limit allowed it: the request reports it on its response.
    pub window: Cell<Option<WindowState>>,
    /// Set when a worker's tick answered it itself (its usage outcome: refused by the
    /// rate limit or a quota, or failed).
    pub answered: Cell<Option<Outcome>>,
}

impl Admission {
    pub fn new(rate_limit: RateLimitStep, identity: Rc<CachedRecord>, carried: Carried) -> Self {
        Admission {
            rate_limit: Cell::new(rate_limit),
            quota_taken: Cell::new(QuotaTaken::default()),
            identity,
            carried,
            window: Cell::new(None),
            answered: Cell::new(None),
        }
    }
}

/// A request its worker parked until a tick can take its admission further: the
/// handle to act on it with, its admission, and how many more ticks it may wait.
pub struct Parked<R> {
    pub request: R,
    pub admission: Rc<Admission>,
    pub ticks_left: u32,
}
