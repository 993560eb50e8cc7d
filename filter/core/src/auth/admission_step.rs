//! The admission step, written once: the rate limit, then the quotas, then forwarding
//! with the key's identity. A request takes it when it is judged valid, and again on
//! each of its worker's ticks while it is parked (waiting for other workers' leases or
//! the next quota lease), from where its [`Admission`] says it stands.

use crate::auth::admission::{Admission, QuotaTaken, RateLimitStep};
use crate::auth::worker::AuthWorker;
use crate::host::{Action, Host, HttpRequest};
use crate::limits::local_rate_limit::{self, Decision, Leases, LimitError, WindowState};
use crate::limits::quota::{self, QuotaError, Refusal, Take};
use crate::stats::Counter;
use crate::store::key_record::KeyRecord;
use keysync_contract::limit::Limit;
use keysync_contract::rate_window::Window;
use keysync_contract::reply::Denial;
use keysync_contract::subject::Subject;
use keysync_contract::usage_outcome::Outcome;
use keysync_contract::{RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_SUBJECT_HEADER};
use log::warn;
use std::cell::Cell;

/// Where one step of admission left a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionStep {
    /// Forwarded upstream with its identity.
    Forwarded,
    /// The gateway answered it itself (a 429, or a 503 when it failed), counted under
    /// this usage outcome.
    Answered(Outcome),
    /// It must wait for a tick: other workers hold leases of its rate limit, or its
    /// quota's next lease is on its way.
    Wait,
}

/// What counting a request against its local rate limit said.
pub enum Counted {
    /// Go on (with the window to report, or none when the counter could not count).
    Allowed(Option<WindowState>),
    /// The 429 was sent.
    Refused,
    /// Other workers hold leased requests: the decision waits for the next tick.
    Wait,
}

/// What a request's quotas say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaCheck {
    Admit,
    /// Refused; the 429 is sent.
    Refused,
    /// The grant is spent and the next lease may be on its way: wait a tick.
    Pending,
}

impl<H: Host> AuthWorker<H> {
    /// Takes `admission` as far as it goes now. `ticks_left`: how many more ticks the
    /// request may wait; with none left, what it would wait for refuses it instead.
    pub fn admit(
        &self,
        request: &H::Request,
        admission: &Admission,
        ticks_left: u32,
    ) -> AdmissionStep {
        match admission.rate_limit.get() {
            RateLimitStep::Local(subject, limit) => match self.count(request, &subject, limit) {
                Counted::Allowed(window) => admission.window.set(window),
                Counted::Refused => return AdmissionStep::Answered(Outcome::RateLimited),
                Counted::Wait if ticks_left > 0 => return AdmissionStep::Wait,
                Counted::Wait => {
                    warn!(
                        "rate-limit leases for {} were not given back in time; refusing",
                        subject.kind()
                    );
                    let window = Window::at(self.host.now_unix_secs());
                    self.reply_rate_limited(
                        request,
                        &WindowState {
                            allowed: false,
                            budget: limit.budget(),
                            remaining: 0,
                            reset_secs: window.seconds_left,
                        },
                    );
                    return AdmissionStep::Answered(Outcome::RateLimited);
                }
            },
            RateLimitStep::Global(named) => {
                if !self.name_global_rate_limit(request, named) {
                    self.reply(request, Denial::Unavailable);
                    return AdmissionStep::Answered(Outcome::Other);
                }
            }
            RateLimitStep::Done => {}
        }
        admission.rate_limit.set(RateLimitStep::Done);
        // After the rate limit: a request it refused uses no quota.
        let record = &admission.identity.record;
        match self.check_quotas(request, record, &admission.quota_taken, ticks_left > 0) {
            QuotaCheck::Admit => {}
            QuotaCheck::Refused => return AdmissionStep::Answered(Outcome::QuotaExceeded),
            QuotaCheck::Pending => return AdmissionStep::Wait,
        }
        match self.forward(request, &admission.identity, &admission.carried) {
            Action::Continue => AdmissionStep::Forwarded,
            // Its identity headers could not be written: the gateway answered 503.
            Action::Pause => AdmissionStep::Answered(Outcome::Other),
        }
    }

    /// Global mode: the descriptor entries Envoy's rate-limit filter reads (the subject
    /// and the limit), or, for a key without a limit, none a client sent. `false` when
    /// they could not be written.
    fn name_global_rate_limit(
        &self,
        request: &H::Request,
        named: Option<(Subject, Limit)>,
    ) -> bool {
        match named {
            Some((subject, limit)) => request
                .set_request_header(RATE_LIMIT_SUBJECT_HEADER, &subject.to_string())
                .and_then(|()| {
                    request.set_request_header(RATE_LIMIT_LIMIT_HEADER, &limit.to_string())
                })
                .is_ok(),
            None => self.strip_rate_limit_headers(request),
        }
    }

    /// Counts one request of a valid key against its local limit; sends the 429 when
    /// it is over.
    fn count(&self, request: &H::Request, subject: &Subject, limit: Limit) -> Counted {
        let now = self.host.now_unix_secs();
        let mut spare = Leases::default();
        let mut held = self.leases.try_borrow_mut();
        // Without the worker's leases (never expected) count without one: exact.
        let leases = held.as_deref_mut().unwrap_or(&mut spare);
        match local_rate_limit::check(&self.host, leases, subject, limit, now) {
            Ok(Decision::Allow(window)) => Counted::Allowed(Some(window)),
            Ok(Decision::Refuse(window)) => {
                self.reply_rate_limited(request, &window);
                Counted::Refused
            }
            Ok(Decision::Wait) => Counted::Wait,
            Err(LimitError::Contended(window)) => {
                warn!(
                    "rate-limit counter for {} stayed contended; refusing",
                    subject.kind()
                );
                self.stats.bump(Counter::RateLimitContended);
                self.reply_rate_limited(request, &window);
                Counted::Refused
            }
            // Rate limiting is not authentication: a counter that cannot count lets the
            // request through rather than fail it.
            Err(LimitError::NoSlot) => {
                warn!("rate-limit counters not created yet (sync service starting); not limiting");
                Counted::Allowed(None)
            }
            Err(LimitError::Host(status)) => {
                warn!("rate-limit counter unavailable (status {status}); not limiting");
                Counted::Allowed(None)
            }
        }
    }

    /// Monthly quotas: the key's own, then its organization's (each at most once per
    /// request: `taken`). Sends the 429 when either is used up, or when a lease is on
    /// its way and the request may not wait (`may_wait`) for it any longer. A key of
    /// subjects without a quota costs a set lookup (none at all while no quota exists).
    fn check_quotas(
        &self,
        request: &H::Request,
        record: &KeyRecord,
        taken: &Cell<QuotaTaken>,
        may_wait: bool,
    ) -> QuotaCheck {
        let Ok(view) = self.quotas.try_borrow() else {
            return QuotaCheck::Admit;
        };
        if view.is_empty() {
            return QuotaCheck::Admit;
        }
        for subject in [Subject::Key(record.key_id), Subject::Org(record.org_id)] {
            let mut now_taken = taken.get();
            let done = match subject {
                Subject::Key(_) => &mut now_taken.key,
                Subject::Org(_) => &mut now_taken.org,
            };
            if *done || !view.contains(&subject) {
                continue;
            }
            let refusal = match quota::check(&self.host, &subject, self.host.now_unix_ms()) {
                Ok(Take::Admit) => {
                    *done = true;
                    taken.set(now_taken);
                    continue;
                }
                Ok(Take::Refuse(refusal)) if refusal.pending && may_wait => {
                    return QuotaCheck::Pending;
                }
                Ok(Take::Refuse(refusal)) => refusal,
                Err(QuotaError::Contended) => {
                    self.stats.bump(Counter::QuotaContended);
                    Refusal {
                        limit: 0,
                        reset_secs: 1,
                        retry_after_secs: 1,
                        window_secs: 0,
                        pending: true,
                    }
                }
                // The sync service has not created the slots yet: nothing to count in.
                Err(QuotaError::NoSlot | QuotaError::Host(_)) => continue,
            };
            self.reply_quota_exceeded(request, &refusal);
            return QuotaCheck::Refused;
        }
        QuotaCheck::Admit
    }
}
