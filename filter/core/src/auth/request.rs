//! The request flow of the auth filter: authenticate the credential, judge the key from
//! the store (or ask keysync on a miss), then admit the request with its identity or
//! refuse it with the contract's reply. Every fact comes from the host and every act goes
//! to it: the process-wide parts through the worker's [`Host`], the request's own
//! through its [`HttpRequest`] handle. The verdicts themselves are `decision`'s.
//!
//! Each request is counted for usage metering when its stream ends (`finish`; see
//! `request_usage`).

use crate::auth::admission::{Admission, Carried, RateLimitStep, MAX_WAIT_TICKS};
use crate::auth::admission_step::AdmissionStep;
use crate::auth::decision::{self, Denial, Outcome, Verdict};
use crate::auth::record_cache::CachedRecord;
use crate::auth::request_usage::RequestUsage;
use crate::auth::worker::AuthWorker;
use crate::config::RouteScopes;
use crate::host::{Action, Host, HttpRequest};
use crate::keysync_api::Reply;
use crate::limits::local_rate_limit::WindowState;
use crate::stats::Counter;
use crate::store::key_record::KeyRecord;
use keysync_contract::credential_sources::{self, Offered};
use keysync_contract::key_format::{self, KeyForm};
use keysync_contract::key_hash::KeyHash;
use keysync_contract::key_policy::ROUTE_SCOPES_HEADER;
use keysync_contract::rate_limit_headers::RATELIMIT_HEADER;
use keysync_contract::usage_outcome::Outcome as UsageOutcome;
use keysync_contract::{KEY_ID_HEADER, ORG_ID_HEADER};
use log::warn;
use std::rc::Rc;

pub struct AuthRequest<H: Host> {
    pub(super) worker: Rc<AuthWorker<H>>,
    /// This request, as the host knows it.
    pub(super) request: H::Request,
    /// Set while (and after) the request is parked by its worker, waiting for its rate
    /// limit or a quota lease (see `parked_requests`).
    pub(super) parked: Option<Rc<Admission>>,
    /// Set while this request waits for keysync.
    lookup: Option<PendingLookup>,
    /// Local mode: the rate window to report on the response.
    window: Option<WindowState>,
    /// The record this request was judged on, with its identity headers formatted.
    identity: Option<Rc<CachedRecord>>,
    /// What usage metering counts this request as, once decided.
    usage: Option<RequestUsage>,
    /// The credentials the request carries, to take off it if it is forwarded.
    carried: Carried,
    /// Body bytes seen so far (Envoy hands each chunk's size to the callback: free).
    request_bytes: u64,
    response_bytes: u64,
}

struct PendingLookup {
    token: u32,
    hash: KeyHash,
}

impl<H: Host> AuthRequest<H> {
    pub fn new(worker: Rc<AuthWorker<H>>, request: H::Request) -> Self {
        AuthRequest {
            worker,
            request,
            parked: None,
            lookup: None,
            window: None,
            identity: None,
            usage: None,
            carried: Carried::default(),
            request_bytes: 0,
            response_bytes: 0,
        }
    }

    /// The request's headers have arrived: decide, or start asking keysync.
    pub fn on_request_headers(&mut self) -> Action {
        if let Some(action) = self.worker.refuse_unready(&self.request) {
            self.usage = Some(RequestUsage::Unattributed);
            return action;
        }
        let request = &self.request;
        let extraction = (self.worker.config.credentials).extract(|name| {
            if name == credential_sources::COOKIE {
                request.request_header_joined(name, b"; ")
            } else {
                request.request_header(name)
            }
        });
        // Taken off before forwarding: an admitted request's, or a refused one's that is
        // forwarded all the same (public path, fail-open).
        self.carried = extraction.strip;
        match extraction.offered {
            Offered::Missing => self.act(Verdict::Deny(Denial::MissingKey), None),
            Offered::Malformed | Offered::Disagreeing => {
                self.act(Verdict::Deny(Denial::InvalidKey), None)
            }
            Offered::Key(key) if !self.form_accepted(&key) => {
                self.act(Verdict::Deny(Denial::InvalidKey), None)
            }
            Offered::Key(key) => {
                let hash = KeyHash::of_key(&key);
                let (verdict, identity) = self.worker.judge_stored(&hash);
                if identity.is_some() {
                    self.identity = identity;
                }
                self.act(verdict, Some(hash))
            }
        }
    }

    /// keysync answered the lookup this request waits for (or Envoy gave up on it).
    pub fn on_lookup_reply(&mut self, token: u32, reply: Reply) {
        let Some(pending) = self.lookup.take_if(|pending| pending.token == token) else {
            return;
        };
        self.worker.lookup_ended();
        let verdict = self.worker.judge_lookup_reply(&pending.hash, reply);
        if let Action::Continue = self.act(verdict, Some(pending.hash)) {
            if let Err(e) = self.request.resume() {
                warn!("cannot resume request after lookup: {e}");
            }
        }
    }

    /// The upstream's response headers: report the rate window of a rate-limited key,
    /// and note a forwarded request's status and duration for usage metering.
    pub fn on_response_headers(&mut self) {
        let parked = self.parked_outcome();
        if let Some(usage) = &mut self.usage {
            usage.measure_response(&self.worker, &self.request, parked);
        }
        let waited = self.parked.as_ref().and_then(|parked| parked.window.get());
        if let Some(window) = self.window.take().or(waited) {
            // Replaces, not adds: `RateLimit` is a structured field that must appear once,
            // so one the upstream sent is overwritten by the gateway's own.
            if let Err(e) = self
                .request
                .set_response_header(RATELIMIT_HEADER, &window.ratelimit_header())
            {
                warn!("cannot set the {RATELIMIT_HEADER} response header: {e}");
            }
        }
    }

    /// A chunk of the request body went through.
    pub fn on_request_body(&mut self, size: usize) {
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        self.request_bytes = self.request_bytes.saturating_add(size);
    }

    /// A chunk of the response body went through.
    pub fn on_response_body(&mut self, size: usize) {
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        self.response_bytes = self.response_bytes.saturating_add(size);
    }

    /// The stream ended (Envoy's log callback, or the context going away): counts the
    /// request for usage metering, once. No host call.
    pub fn finish(&mut self) {
        let parked = self.parked_outcome();
        if let Some(usage) = self.usage.take() {
            usage.count(
                &self.worker,
                parked,
                self.request_bytes,
                self.response_bytes,
            );
        }
    }

    /// Whether this request is parked by its worker (paused until a tick takes its
    /// admission further). A host that ticks its workers from requests asks, to keep a
    /// tick coming while it waits.
    pub fn is_parked(&self) -> bool {
        self.parked
            .as_ref()
            .is_some_and(|parked| parked.answered.get().is_none())
    }

    /// What a worker's tick answered for this request, if it was parked and answered.
    fn parked_outcome(&self) -> Option<UsageOutcome> {
        self.parked
            .as_ref()
            .and_then(|parked| parked.answered.get())
    }

    fn answered(&mut self, outcome: UsageOutcome) {
        if let Some(usage) = &mut self.usage {
            usage.answered(outcome);
        }
    }

    /// A checksummed key whose checksum is wrong is a typo or made up: refused before
    /// any lookup. Legacy keys (no checksum) only while `accept_legacy_keys`.
    fn form_accepted(&self, key: &[u8]) -> bool {
        let accepted = match key_format::classify(key) {
            KeyForm::Checksummed => true,
            KeyForm::BadChecksum => false,
            KeyForm::Legacy => self.worker.config.accept_legacy_keys,
        };
        if !accepted {
            self.worker.stats.bump(Counter::BadChecksum);
        }
        accepted
    }

    /// Carries out a verdict. `key` is the hash of a well-formed key.
    fn act(&mut self, verdict: Verdict, key: Option<KeyHash>) -> Action {
        match (verdict, key) {
            (Verdict::Allow(record), Some(_)) => self.admit(&record),
            (Verdict::AskKeysync, Some(hash)) => self.ask_keysync(hash),
            (Verdict::Deny(denial), _) => {
                self.usage = Some(RequestUsage::Unattributed);
                self.refuse(denial)
            }
            // A verdict about a key without a key cannot happen; refuse to be safe.
            (_, None) => {
                self.usage = Some(RequestUsage::Unattributed);
                self.refuse(Denial::InvalidKey)
            }
        }
    }

    fn ask_keysync(&mut self, hash: KeyHash) -> Action {
        match self.worker.start_lookup(&hash) {
            Ok(token) => {
                self.lookup = Some(PendingLookup { token, hash });
                Action::Pause
            }
            Err(e) => {
                let verdict = self.worker.lookup_failed_verdict(&hash, &e);
                self.act(verdict, None)
            }
        }
    }

    /// A valid key: check its policy, then take it through admission (its rate limit,
    /// its quotas, forwarding with its identity).
    fn admit(&mut self, record: &KeyRecord) -> Action {
        let same_key = |cached: &&Rc<CachedRecord>| cached.record.hash == record.hash;
        // A timed request's start: the clock, not Envoy's `request.time` property (a
        // property read costs about a microsecond, the clock a fraction of that).
        let sample = self
            .identity
            .as_ref()
            .filter(same_key)
            .map(|cached| &cached.durations);
        let admitted_us = self
            .worker
            .times(sample)
            .then(|| self.worker.host.now_unix_us());
        self.usage = Some(RequestUsage::Key {
            org: record.org_id,
            key: record.key_id,
            endpoint: self.worker.usage_endpoint(&self.request),
            outcome: None,
            admitted_us,
            duration_us: None,
        });
        if let Some(denial) = self.policy_denial(record) {
            let action = self.refuse(denial);
            // (Forwarded all the same on a public path: its status counts.)
            if action == Action::Pause {
                self.answered(UsageOutcome::PolicyDenied);
            }
            return action;
        }
        let identity = match self.identity.as_ref().filter(same_key) {
            Some(cached) => Rc::clone(cached),
            None => Rc::new(CachedRecord::new(record.clone())),
        };
        let rate_limit = RateLimitStep::of(self.worker.config.rate_limit, record.limit_subject());
        let admission = Admission::new(rate_limit, identity, self.carried.clone());
        match self.worker.admit(&self.request, &admission, MAX_WAIT_TICKS) {
            AdmissionStep::Forwarded => {
                self.window = admission.window.get();
                Action::Continue
            }
            AdmissionStep::Answered(outcome) => {
                self.window = admission.window.get();
                self.answered(outcome);
                Action::Pause
            }
            AdmissionStep::Wait => {
                // Parked until a tick takes it further (or gives up and refuses).
                let admission = Rc::new(admission);
                self.worker
                    .park(self.request.clone(), Rc::clone(&admission));
                self.parked = Some(admission);
                Action::Pause
            }
        }
    }

    /// The key's allowlist, then the route's scopes; before the rate limit, so that a
    /// refused request uses none of it. Every key pays one host call here (the route's
    /// requirement: the route, not the key, says whether scopes are needed); a key with
    /// an allowlist one more (the address). A key without policy reads no policy bytes.
    fn policy_denial(&self, record: &KeyRecord) -> Option<Denial> {
        let request = &self.request;
        let policy = record.policy.as_deref();
        if let Some(policy) = policy.filter(|policy| policy.has_allowlist()) {
            let address = request.source_address();
            if let Some(denial) = decision::judge_source(policy, address.as_deref()) {
                return Some(denial);
            }
        }
        let required = match self.worker.config.route_scopes {
            RouteScopes::Header => Ok(request.request_header(ROUTE_SCOPES_HEADER)),
            RouteScopes::Metadata => request.route_scopes(),
        };
        if let Err(e) = &required {
            warn!("cannot read the route's required scopes ({e}): refusing the key");
        }
        decision::judge_route(policy, required.as_ref().map(Option::as_deref).ok())
    }

    fn refuse(&self, denial: Denial) -> Action {
        let config = &self.worker.config;
        let request = &self.request;
        // Ready paths, once ready (before, `refuse_unready` answered them), pass like
        // public ones.
        let mut keyless = config.public_paths.iter().chain(&config.ready_paths);
        let public = !(config.public_paths.is_empty() && config.ready_paths.is_empty())
            && request
                .request_header(":path")
                .is_some_and(|path| keyless.any(|rule| rule.matches(&path)));
        match decision::settle(denial, public, config.failure_mode) {
            Outcome::Reply(denial) => self.worker.reply(request, denial),
            Outcome::Forward => {
                if !(request.remove_request_header(ORG_ID_HEADER).is_ok()
                    && request.remove_request_header(KEY_ID_HEADER).is_ok()
                    && self.worker.strip_rate_limit_headers(request)
                    && self
                        .worker
                        .strip_credentials(request, &self.carried)
                        .is_ok())
                {
                    return self.worker.reply(request, Denial::Unavailable);
                }
                self.worker.stats.bump(if public {
                    Counter::PublicPath
                } else {
                    Counter::FailedOpen
                });
                Action::Continue
            }
        }
    }
}

impl<H: Host> Drop for AuthRequest<H> {
    fn drop(&mut self) {
        // Usually counted already, at Envoy's log callback.
        self.finish();
        // The client went away while keysync was being asked.
        if self.lookup.is_some() {
            self.worker.lookup_ended();
        }
    }
}
