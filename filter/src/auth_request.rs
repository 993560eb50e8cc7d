//! The request flow of the auth filter: authenticate the credential, judge the key from
//! the store (or ask keysync on a miss), then admit the request with its identity or
//! refuse it with the contract's reply. Every fact comes from the host and every act goes
//! to it through [`Host`]; the verdicts themselves are `decision`'s.
//!
//! Each request is counted for usage metering when its stream ends (`finish`): a
//! recognized key's under (org, key, outcome), any other in the per-Envoy unattributed
//! total. Counting is an addition in the worker's memory; only a forwarded request's
//! response pays a host call for it (its status), and a timed one (`duration_sample`)
//! two more (the clock at its start and at its response).

use crate::auth_worker::AuthWorker;
use crate::auth_worker::Carried;
use crate::auth_worker::{Counted, QuotaCheck, QuotaTaken, RateWait};
use crate::config::{RateLimitMode, RouteScopes};
use crate::decision::{self, Denial, Outcome, Verdict};
use crate::host::{Action, Host};
use crate::key_hash::KeyHash;
use crate::key_store::Cached;
use crate::keysync_api::{self, ApiError, Reply};
use crate::local_rate_limit::Quota;
use crate::provenance::Provenance;
use crate::record::KeyRecord;
use crate::record_cache::CachedRecord;
use crate::stats::Counter;
use crate::usage::{outcome, Counts, UsageKey};
use keysync_contract::credential::{self, Credential, Source};
use keysync_contract::id::Id;
use keysync_contract::key_format::{self, KeyForm};
use keysync_contract::key_policy::ROUTE_SCOPES_HEADER;
use keysync_contract::rate_limit_headers::RATELIMIT_HEADER;
use keysync_contract::{KEY_ID_HEADER, ORG_ID_HEADER};
use keysync_proto::v1 as proto;
use log::{info, warn};

use std::cell::Cell;
use std::rc::Rc;

// Global mode: descriptor entries for Envoy's rate-limit filter, removed by the route
// before the request goes upstream.
use keysync_contract::{
    RATE_LIMIT_LIMIT_HEADER as RL_LIMIT_HEADER, RATE_LIMIT_SUBJECT_HEADER as RL_SUBJECT_HEADER,
};

pub struct AuthRequest<H: Host> {
    worker: Rc<AuthWorker<H>>,
    /// Envoy's id of this request's context: the worker's tick acts in it when a rate
    /// limit decision had to wait.
    context_id: u32,
    /// Set while the request waits for a rate-limit decision (see `local_rate_limit`).
    rate_wait: Option<Rc<RateWait>>,
    /// Set while this request waits for keysync.
    lookup: Option<PendingLookup>,
    /// Local mode: the quota to report on the response.
    quota: Option<Quota>,
    /// The record this request was judged on, with its identity headers formatted.
    identity: Option<Rc<CachedRecord>>,
    /// What usage metering counts this request as, once decided.
    usage: Option<Usage>,
    /// Body bytes seen so far (Envoy hands each chunk's size to the callback: free).
    request_bytes: u64,
    response_bytes: u64,
}

/// A request as usage metering sees it.
enum Usage {
    /// No recognized key: missing, malformed, unknown, or nobody could tell.
    Unattributed,
    Key {
        org: Id,
        key: Id,
        /// Set when the gateway answered the request itself, or from the upstream's
        /// status when its response headers came.
        outcome: Option<u8>,
        /// When it was admitted (the clock, read only for a request metering times);
        /// request start to response headers is measured from it.
        admitted_us: Option<u64>,
        /// Admission to response headers; measured for timed forwarded requests only.
        duration_us: Option<u64>,
    },
}

struct PendingLookup {
    token: u32,
    hash: KeyHash,
    carried: Carried,
}

impl<H: Host> AuthRequest<H> {
    pub fn new(worker: Rc<AuthWorker<H>>, context_id: u32) -> Self {
        AuthRequest {
            worker,
            context_id,
            rate_wait: None,
            lookup: None,
            quota: None,
            identity: None,
            usage: None,
            request_bytes: 0,
            response_bytes: 0,
        }
    }

    fn host(&self) -> &H {
        &self.worker.host
    }

    /// The request's headers have arrived: decide, or start asking keysync.
    pub fn on_request_headers(&mut self) -> Action {
        let authorization = self.host().request_header("authorization");
        let api_key = if credential::needs_api_key_header(authorization.as_deref()) {
            self.host().request_header("x-api-key")
        } else {
            None
        };
        match credential::extract(authorization.as_deref(), api_key.as_deref()) {
            Credential::Missing => self.act(Verdict::Deny(Denial::MissingKey), None),
            Credential::Malformed => self.act(Verdict::Deny(Denial::InvalidKey), None),
            Credential::Key { key, .. } if !self.form_accepted(key) => {
                self.act(Verdict::Deny(Denial::InvalidKey), None)
            }
            Credential::Key { key, source } => {
                let carried = Carried {
                    authorization: source == Source::Authorization
                        || authorization
                            .as_deref()
                            .is_some_and(credential::authorization_is_credential),
                };
                let hash = KeyHash::of_key(key);
                let verdict = self.judge_stored(&hash);
                self.act(verdict, Some((hash, carried)))
            }
        }
    }

    /// keysync answered the lookup this request waits for (or Envoy gave up on it).
    pub fn on_lookup_reply(&mut self, token: u32, reply: Reply) {
        let Some(pending) = self.lookup.take_if(|pending| pending.token == token) else {
            return;
        };
        self.lookup_ended();
        let verdict = match keysync_api::decode::<proto::LookupKeyResponse>(reply) {
            Ok(answer) => self.judge_answer(&pending.hash, answer),
            Err(e) => self.lookup_failed_verdict(&pending.hash, &e),
        };
        if let Action::Continue = self.act(verdict, Some((pending.hash, pending.carried))) {
            if let Err(e) = self.host().resume_request() {
                warn!("cannot resume request after lookup: {e}");
            }
        }
    }

    /// The upstream's response headers: report the quota of a rate-limited key, and
    /// note a forwarded request's status and duration for usage metering.
    pub fn on_response_headers(&mut self) {
        self.measure_response();
        let waited = self.rate_wait.as_ref().and_then(|wait| wait.quota.get());
        if let Some(quota) = self.quota.take().or(waited) {
            // Replaces, not adds: `RateLimit` is a structured field that must appear once,
            // so one the upstream sent is overwritten by the gateway's own.
            if let Err(e) = self
                .host()
                .set_response_header(RATELIMIT_HEADER, &quota.ratelimit_header())
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
        match self.usage.take() {
            None => {}
            Some(Usage::Unattributed) => self.worker.count_unattributed(),
            Some(Usage::Key {
                org,
                key,
                outcome: answered,
                duration_us,
                ..
            }) => {
                let waited = self.rate_wait.as_ref().and_then(|wait| wait.answered.get());
                let key = UsageKey {
                    org,
                    key,
                    outcome: answered.or(waited).unwrap_or(outcome::OTHER),
                };
                let counts = Counts::one(duration_us, self.request_bytes, self.response_bytes);
                self.worker.count_usage(key, counts);
            }
        }
    }

    /// A forwarded request of a recognized key: its status, and, when it is timed, how
    /// long since it was admitted. One host call on the response path (two when timed),
    /// only when metering is on.
    fn measure_response(&mut self) {
        let waited = self.rate_wait.as_ref().and_then(|wait| wait.answered.get());
        let Some(Usage::Key {
            outcome: answered @ None,
            admitted_us,
            duration_us,
            ..
        }) = &mut self.usage
        else {
            return;
        };
        if waited.is_some() || !self.worker.metering() {
            return;
        }
        let host = &self.worker.host;
        *answered = Some(outcome::of_status(host.response_status()));
        if let Some(admitted_us) = admitted_us {
            *duration_us = Some(host.now_unix_us().saturating_sub(*admitted_us));
        }
    }

    /// The gateway answered a recognized key's request itself.
    fn answered(&mut self, code: u8) {
        if let Some(Usage::Key { outcome, .. }) = &mut self.usage {
            *outcome = Some(code);
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

    fn judge_stored(&mut self, hash: &KeyHash) -> Verdict {
        if self.worker.store_is_stale() {
            // The store is not trusted: only keysync's (fresh) word can admit a key.
            if self.worker.may_start_lookup() {
                return Verdict::AskKeysync;
            }
            self.worker.stats.bump(Counter::Stale);
            return Verdict::Deny(Denial::Unavailable);
        }
        let cached = self
            .worker
            .records
            .try_borrow()
            .ok()
            .and_then(|records| records.get(hash));
        if let Some(cached) = cached {
            let verdict = self.judge_record(cached.record.clone());
            self.identity = Some(cached);
            return verdict;
        }
        match self.worker.store().find(hash) {
            Ok(Some(record)) => {
                let cached = Rc::new(CachedRecord::new(record));
                if let Ok(mut records) = self.worker.records.try_borrow_mut() {
                    records.insert(Rc::clone(&cached));
                }
                let verdict = self.judge_record(cached.record.clone());
                self.identity = Some(cached);
                verdict
            }
            Ok(None) => self.judge_unknown(hash),
            Err(e) => {
                warn!("unreadable bucket for key_hash={}: {e}", hash.short());
                self.judge_unknown(hash)
            }
        }
    }

    /// Expiry needs the clock, a host call: only keys that expire pay for it.
    fn judge_record(&self, record: KeyRecord) -> Verdict {
        let now = if record.expires_at == 0 {
            0
        } else {
            i64::try_from(self.host().now_unix_secs()).unwrap_or(i64::MAX)
        };
        decision::judge_record(record, now)
    }

    fn judge_unknown(&self, hash: &KeyHash) -> Verdict {
        let worker = &self.worker;
        let refused = worker
            .negative
            .try_borrow()
            .is_ok_and(|cache| cache.contains(hash, self.host().now_unix_ms()));
        if refused {
            worker.stats.bump(Counter::NegativeCacheHits);
        }
        let may_ask = worker.may_start_lookup();
        // The metadata read is only needed when neither of the above settles it.
        let synced = refused || may_ask || worker.store().meta().synced;
        decision::judge_unknown(refused, may_ask, synced)
    }

    /// Carries out a verdict. `key` is the hash of a well-formed key and the credential
    /// headers the request carries.
    fn act(&mut self, verdict: Verdict, key: Option<(KeyHash, Carried)>) -> Action {
        match (verdict, key) {
            (Verdict::Allow(record), Some((_, carried))) => self.admit(&record, carried),
            (Verdict::AskKeysync, Some((hash, carried))) => self.ask_keysync(hash, carried),
            (Verdict::Deny(denial), _) => {
                self.usage = Some(Usage::Unattributed);
                self.refuse(denial)
            }
            // A verdict about a key without a key cannot happen; refuse to be safe.
            (_, None) => {
                self.usage = Some(Usage::Unattributed);
                self.refuse(Denial::InvalidKey)
            }
        }
    }

    fn ask_keysync(&mut self, hash: KeyHash, carried: Carried) -> Action {
        let config = &self.worker.config;
        let request = proto::LookupKeyRequest {
            key_hash: hash.0.to_vec(),
        };
        info!(
            "cache miss: key_hash={} not in store, asking keysync",
            hash.short()
        );
        self.worker.stats.bump(Counter::MissLookups);
        match keysync_api::dispatch(
            self.host(),
            &config.keysync_cluster,
            keysync_api::LOOKUP_KEY,
            &request,
            config.miss_lookup.timeout,
        ) {
            Ok(token) => {
                let in_flight = &self.worker.lookups_in_flight;
                in_flight.set(in_flight.get().saturating_add(1));
                self.lookup = Some(PendingLookup {
                    token,
                    hash,
                    carried,
                });
                Action::Pause
            }
            Err(e) => {
                let verdict = self.lookup_failed_verdict(&hash, &e);
                self.act(verdict, None)
            }
        }
    }

    fn lookup_ended(&self) {
        let in_flight = &self.worker.lookups_in_flight;
        in_flight.set(in_flight.get().saturating_sub(1));
    }

    fn judge_answer(&self, hash: &KeyHash, answer: proto::LookupKeyResponse) -> Verdict {
        let provenance = Provenance::from_proto(answer.provenance.as_ref());
        let stale = self.worker.stale.get();
        let meta = self.worker.store().meta();
        let max_age = self
            .worker
            .config
            .max_staleness
            .map(crate::schedule::millis);
        if !decision::answer_trusted(provenance, answer.revision, &meta, stale, max_age) {
            info!(
                "cache miss: keysync's answer for key_hash={} is older than the store or \
                 unconfirmed (revision {}, confirmed {} ms ago); the store decides",
                hash.short(),
                answer.revision,
                provenance.confirmed_age_ms
            );
            self.worker.stats.bump(Counter::StaleAnswers);
            return self.judge_from_store(hash, stale);
        }
        let Some(found) = answer.key else {
            info!("cache miss: key_hash={} unknown to keysync", hash.short());
            if let Ok(mut cache) = self.worker.negative.try_borrow_mut() {
                cache.insert(*hash, self.host().now_unix_ms());
            }
            return Verdict::Deny(Denial::InvalidKey);
        };
        match KeyRecord::from_proto(&found) {
            Ok(record) if record.hash == *hash => {
                // Only into a store of the same revision history: a fresh answer makes a
                // stale store no worse, and the revision rule of `cache_lookup` still holds.
                let outcome = if meta.epoch == 0 || provenance.epoch == meta.epoch {
                    match self.worker.store().cache_lookup(&record, answer.revision) {
                        Cached::Stored | Cached::AlreadyThere => "cached",
                        Cached::Stale => "not cached: the store is newer",
                        Cached::Failed(_) => "not cached: store busy",
                    }
                } else {
                    "not cached: the store is of another revision history"
                };
                info!(
                    "cache miss: key_hash={} found by keysync ({outcome})",
                    hash.short()
                );
                self.judge_record(record)
            }
            Ok(_) => {
                self.lookup_failed_verdict(hash, &ApiError::Decode("answer for another key".into()))
            }
            Err(e) => self.lookup_failed_verdict(hash, &ApiError::Decode(e.to_string())),
        }
    }

    /// An answer that cannot be trusted: a trusted store's own record, if it has one by
    /// now, else what the store alone can say.
    fn judge_from_store(&self, hash: &KeyHash, stale: bool) -> Verdict {
        if stale {
            self.worker.stats.bump(Counter::Stale);
            return Verdict::Deny(Denial::Unavailable);
        }
        match self.worker.store().find(hash) {
            Ok(Some(record)) => self.judge_record(record),
            _ => Verdict::Deny(decision::judge_from_store_alone(
                self.worker.store().meta().synced,
            )),
        }
    }

    /// keysync could not be asked, or gave no usable answer: the store decides alone.
    fn lookup_failed_verdict(&self, hash: &KeyHash, error: &ApiError) -> Verdict {
        self.worker.stats.bump(Counter::MissLookupErrors);
        warn!(
            "cache miss: lookup of key_hash={} failed: {error}",
            hash.short()
        );
        if self.worker.stale.get() {
            self.worker.stats.bump(Counter::Stale);
            return Verdict::Deny(Denial::Unavailable);
        }
        Verdict::Deny(decision::judge_from_store_alone(
            self.worker.store().meta().synced,
        ))
    }

    /// A valid key: check its policy, apply its rate limit, then forward it with its
    /// identity.
    fn admit(&mut self, record: &KeyRecord, carried: Carried) -> Action {
        // A timed request's start: the clock, not Envoy's `request.time` property (a
        // property read costs about a microsecond, the clock a fraction of that).
        let sample = match &self.identity {
            Some(cached) if cached.record.hash == record.hash => Some(&cached.durations),
            _ => None,
        };
        let admitted_us = self
            .worker
            .times(sample)
            .then(|| self.worker.host.now_unix_us());
        self.usage = Some(Usage::Key {
            org: record.org_id,
            key: record.key_id,
            outcome: None,
            admitted_us,
            duration_us: None,
        });
        if let Some(denial) = self.policy_denial(record) {
            let action = self.refuse(denial);
            // (Forwarded all the same on a public path: its status counts.)
            if action == Action::Pause {
                self.answered(outcome::POLICY);
            }
            return action;
        }
        let identity = match &self.identity {
            Some(cached) if cached.record.hash == record.hash => Rc::clone(cached),
            _ => Rc::new(CachedRecord::new(record.clone())),
        };
        match (self.worker.config.rate_limit, record.limit_subject()) {
            (RateLimitMode::Local, Some((subject, limit))) => {
                match self.worker.count(&subject, limit) {
                    Counted::Allowed(quota) => self.quota = quota,
                    Counted::Refused => {
                        self.answered(outcome::RATE_LIMITED);
                        return Action::Pause;
                    }
                    Counted::Wait => {
                        let wait = Rc::new(RateWait {
                            rate_limit: Some((subject, limit)),
                            rate_counted: Cell::new(false),
                            quota_taken: Cell::new(QuotaTaken::default()),
                            identity,
                            carried,
                            quota: Cell::new(None),
                            answered: Cell::new(None),
                        });
                        self.worker.wait(self.context_id, Rc::clone(&wait));
                        self.rate_wait = Some(wait);
                        return Action::Pause;
                    }
                }
            }
            (RateLimitMode::Global, Some((subject, limit))) => {
                let host = self.host();
                let written = host
                    .set_request_header(RL_SUBJECT_HEADER, &subject.to_string())
                    .and_then(|()| host.set_request_header(RL_LIMIT_HEADER, &limit.to_string()));
                if written.is_err() {
                    self.answered(outcome::OTHER);
                    return self.reply(Denial::Unavailable);
                }
            }
            (RateLimitMode::Global, None) => {
                if !self.worker.strip_rate_limit_headers() {
                    self.answered(outcome::OTHER);
                    return self.reply(Denial::Unavailable);
                }
            }
            (RateLimitMode::Local | RateLimitMode::Off, _) => {}
        }
        // After the rate limit: a request it refused uses no quota.
        let taken = Cell::new(QuotaTaken::default());
        match self.worker.check_quotas(record, &taken, true) {
            QuotaCheck::Admit => {}
            QuotaCheck::Refused => {
                self.answered(outcome::QUOTA);
                return Action::Pause;
            }
            QuotaCheck::Pending => {
                // Parked until a tick finds the next lease (or gives up and refuses).
                let wait = Rc::new(RateWait {
                    rate_limit: None,
                    rate_counted: Cell::new(true),
                    quota_taken: taken,
                    identity,
                    carried,
                    quota: Cell::new(self.quota.take()),
                    answered: Cell::new(None),
                });
                self.worker.wait(self.context_id, Rc::clone(&wait));
                self.rate_wait = Some(wait);
                return Action::Pause;
            }
        }
        let action = self.worker.forward(&identity, carried);
        if action == Action::Pause {
            // Its identity headers could not be written: the gateway answered 503.
            self.answered(outcome::OTHER);
        }
        action
    }

    /// The key's allowlist, then the route's scopes; before the rate limit, so that a
    /// refused request uses none of it. Every key pays one host call here (the route's
    /// requirement: the route, not the key, says whether scopes are needed); a key with
    /// an allowlist one more (the address). A key without policy reads no policy bytes.
    fn policy_denial(&self, record: &KeyRecord) -> Option<Denial> {
        let host = self.host();
        let policy = record.policy.as_deref();
        if let Some(policy) = policy.filter(|policy| policy.has_allowlist()) {
            let address = host.source_address();
            if let Some(denial) = decision::judge_source(policy, address.as_deref()) {
                return Some(denial);
            }
        }
        let required = match self.worker.config.route_scopes {
            RouteScopes::Header => Ok(host.request_header(ROUTE_SCOPES_HEADER)),
            RouteScopes::Metadata => host.route_scopes(),
        };
        if let Err(e) = &required {
            warn!("cannot read the route's required scopes ({e}): refusing the key");
        }
        decision::judge_route(policy, required.as_ref().map(Option::as_deref).ok())
    }

    fn refuse(&self, denial: Denial) -> Action {
        let config = &self.worker.config;
        let public = !config.public_paths.is_empty()
            && self
                .host()
                .request_header(":path")
                .is_some_and(|path| config.public_paths.iter().any(|rule| rule.matches(&path)));
        match decision::settle(denial, public, config.failure_mode) {
            Outcome::Reply(denial) => self.reply(denial),
            Outcome::Forward => {
                let host = self.host();
                if !(host.remove_request_header(ORG_ID_HEADER).is_ok()
                    && host.remove_request_header(KEY_ID_HEADER).is_ok()
                    && self.worker.strip_rate_limit_headers()
                    && self.strip_credential())
                {
                    return self.reply(Denial::Unavailable);
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

    /// A request forwarded without an accepted key (public path, fail-open) must not
    /// carry a credential to the backend either, unless `forward_credential` says so:
    /// any `x-api-key`, and an `Authorization` that is a credential.
    fn strip_credential(&self) -> bool {
        if self.worker.config.forward_credential {
            return true;
        }
        let host = self.host();
        let credential = host
            .request_header("authorization")
            .is_some_and(|value| credential::authorization_is_credential(&value));
        (!credential || host.remove_request_header("authorization").is_ok())
            && host.remove_request_header("x-api-key").is_ok()
    }

    fn reply(&self, denial: Denial) -> Action {
        self.worker.reply(denial)
    }
}

impl<H: Host> Drop for AuthRequest<H> {
    fn drop(&mut self) {
        // Usually counted already, at Envoy's log callback.
        self.finish();
        // The client went away while keysync was being asked.
        if self.lookup.is_some() {
            self.lookup_ended();
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every row of the request flow's decision table, against a fake host.

    use super::*;
    use crate::config::PluginConfig;
    use crate::fake_host::{logged_line, FakeHost};
    use crate::policy::Policy;
    use crate::store_meta::StoreMeta;
    use keysync_contract::id::Id;
    use keysync_contract::limit::{KeyLimit, Limit};

    const NOW_MS: u64 = 1_700_000_000_000;
    const KEY: &str = "sk_live_RequestFlowTestKey0000001";
    const OTHER_KEY: &str = "sk_live_RequestFlowTestKey0000002";
    const ORG: Id = Id([0xab; 16]);
    const KEY_ID: Id = Id([0x01; 16]);
    const STORE_REVISION: u64 = 20;
    const EPOCH: u64 = 0x5eed;

    type Worker = Rc<AuthWorker<FakeHost>>;

    fn worker(config: &str) -> Worker {
        let PluginConfig::Auth(config) = PluginConfig::parse(config.as_bytes()).unwrap() else {
            panic!("not an auth configuration: {config}");
        };
        Rc::new(AuthWorker::new(FakeHost::at(NOW_MS), config))
    }

    /// A worker whose store completed a full sync just now, at `STORE_REVISION`, and
    /// whose tick has seen it.
    fn synced_worker(config: &str) -> Worker {
        let worker = worker(config);
        let meta = StoreMeta {
            epoch: EPOCH,
            revision: STORE_REVISION,
            synced: true,
            keys: 0,
            confirmed_age_ms: 0,
            beat: 1,
        };
        worker.store().write_meta(&meta).unwrap();
        crate::local_rate_limit::ensure_slots(&worker.host).unwrap();
        worker.on_tick();
        worker
    }

    /// The sync service's tick: keysync confirmed the store's data `age_ms` ago.
    fn sync_beat(worker: &Worker, age_ms: u64) {
        let mut meta = worker.store().meta();
        meta.beat += 1;
        meta.confirmed_age_ms = age_ms;
        worker.store().write_meta(&meta).unwrap();
    }

    fn record(key: &str) -> KeyRecord {
        KeyRecord {
            hash: KeyHash::of_key(key.as_bytes()),
            key_id: KEY_ID,
            org_id: ORG,
            expires_at: 0,
            rate_limit: None,
            policy: None,
        }
    }

    fn store(worker: &Worker, record: KeyRecord) {
        let store = worker.store();
        store
            .apply_changes(&[crate::key_store::Change::Upsert(record)])
            .unwrap();
    }

    fn proto_record(record: &KeyRecord) -> proto::KeyRecord {
        let mut proto = proto::KeyRecord {
            key_hash: record.hash.0.to_vec(),
            key_id: record.key_id.0.to_vec(),
            org_id: record.org_id.0.to_vec(),
            expires_at: record.expires_at,
            rate_limit: record.rate_limit.map(|l| proto::RateLimit {
                requests_per_minute: l.limit.requests_per_minute,
                burst: l.limit.burst,
                per_key: l.per_key,
            }),
            ..Default::default()
        };
        if let Some(policy) = &record.policy {
            policy.to_proto(&mut proto);
        }
        proto
    }

    /// Sends a request with `headers` through a fresh context; returns it (it may be
    /// waiting for keysync) and what the filter told Envoy.
    fn send(worker: &Worker, headers: &[(&str, &str)]) -> (AuthRequest<FakeHost>, Action) {
        worker.host.new_request(headers);
        let context_id = worker.host.random_u64() as u32;
        let mut request = AuthRequest::new(Rc::clone(worker), context_id);
        let action = request.on_request_headers();
        (request, action)
    }

    fn with_key(key: &str) -> Vec<(&'static str, String)> {
        vec![
            (":path", "/orders".into()),
            ("authorization", format!("Bearer {key}")),
        ]
    }

    fn send_key(worker: &Worker, key: &str) -> (AuthRequest<FakeHost>, Action) {
        let headers = with_key(key);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        send(worker, &headers)
    }

    fn status(worker: &Worker) -> Option<u32> {
        worker.host.reply().map(|reply| reply.status)
    }

    fn assert_forwarded_with_identity(worker: &Worker, action: Action) {
        assert_eq!(action, Action::Continue, "reply: {:?}", worker.host.reply());
        assert_eq!(
            worker.host.request_values(ORG_ID_HEADER),
            [ORG.hyphenated()]
        );
        assert_eq!(
            worker.host.request_values(KEY_ID_HEADER),
            [KEY_ID.hyphenated()]
        );
        assert!(
            worker.host.request_values("authorization").is_empty(),
            "the credential is not forwarded"
        );
    }

    fn answer(request: &mut AuthRequest<FakeHost>, worker: &Worker, reply: Reply) {
        let call = worker.host.last_call().expect("a lookup was sent");
        request.on_lookup_reply(call.token, reply);
    }

    fn provenance(epoch: u64, confirmed_age_ms: u64) -> Option<proto::Provenance> {
        Some(proto::Provenance {
            epoch,
            confirmed_age_ms,
        })
    }

    fn found(record: &KeyRecord, revision: u64) -> Reply {
        found_with(record, revision, provenance(EPOCH, 200))
    }

    fn found_with(
        record: &KeyRecord,
        revision: u64,
        provenance: Option<proto::Provenance>,
    ) -> Reply {
        Ok(prost::Message::encode_to_vec(&proto::LookupKeyResponse {
            key: Some(proto_record(record)),
            revision,
            provenance,
        }))
    }

    fn not_found() -> Reply {
        Ok(prost::Message::encode_to_vec(&proto::LookupKeyResponse {
            key: None,
            revision: STORE_REVISION,
            provenance: provenance(EPOCH, 200),
        }))
    }

    #[test]
    fn a_missing_key_gets_401_with_a_bearer_challenge() {
        let worker = synced_worker("{}");
        let (_, action) = send(&worker, &[(":path", "/orders")]);
        assert_eq!(action, Action::Pause);
        let reply = worker.host.reply().unwrap();
        assert_eq!(reply.status, 401);
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert!(reply.body.contains("missing_api_key"), "{}", reply.body);
        for other_scheme in ["Basic dXNlcjpwYXNz", "Bearer", ""] {
            send(&worker, &[("authorization", other_scheme)]);
            assert_eq!(status(&worker), Some(401), "{other_scheme:?}");
        }
    }

    #[test]
    fn a_malformed_key_gets_403_without_a_lookup() {
        let worker = synced_worker("{}");
        for junk in [
            "sk_live_",
            "sk_live_short",
            "pk_live_abcdefghijkl",
            "sk_live_a b c d e f",
        ] {
            send(&worker, &[("authorization", &format!("Bearer {junk}"))]);
            let reply = worker.host.reply().unwrap();
            assert_eq!(reply.status, 403, "{junk:?}");
            assert!(reply.body.contains("invalid_api_key"));
        }
        assert!(
            worker.host.calls.borrow().is_empty(),
            "keysync was not asked"
        );
    }

    fn checksummed(random: &str) -> String {
        let body = format!("sk_live_{random}");
        format!("{body}{}", key_format::checksum_for(&body))
    }

    #[test]
    fn a_mistyped_checksummed_key_is_refused_without_a_lookup() {
        let worker = synced_worker("{}");
        let good = checksummed("0123456789abcdefghijABCDEFGHIJkl");
        store(&worker, record(&good));
        let (_, action) = send_key(&worker, &good);
        assert_forwarded_with_identity(&worker, action);

        let mut typo = good.clone().into_bytes();
        typo[20] = if typo[20] == b'x' { b'y' } else { b'x' };
        let typo = String::from_utf8(typo).unwrap();
        send_key(&worker, &typo);
        assert_eq!(status(&worker), Some(403));
        // Neither the store nor keysync was asked.
        // The headers, the :path (public-path check) and the reply; no shared-data read.
        assert_eq!(worker.host.host_calls.get(), 3);
        assert!(worker.host.calls.borrow().is_empty());
        worker.on_tick();
        assert_eq!(worker.host.metric("keysync.bad_checksum"), Some(1));
    }

    #[test]
    fn legacy_keys_work_until_turned_off() {
        let worker = synced_worker("{}");
        store(&worker, record(KEY));
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Continue, "accepted by default");

        let strict = synced_worker(r#"{"accept_legacy_keys":false}"#);
        store(&strict, record(KEY));
        send_key(&strict, KEY);
        assert_eq!(status(&strict), Some(403));
        assert!(strict.host.calls.borrow().is_empty());
        let good = checksummed("0123456789abcdefghijABCDEFGHIJkl");
        store(&strict, record(&good));
        let (_, action) = send_key(&strict, &good);
        assert_eq!(action, Action::Continue, "checksummed keys still work");
    }

    #[test]
    fn a_known_key_is_forwarded_with_the_gateways_identity_only() {
        let worker = synced_worker("{}");
        store(&worker, record(KEY));
        let headers = [
            (":path", "/orders"),
            ("authorization", &format!("Bearer {KEY}") as &str),
            ("x-org-id", "forged-org"),
            ("x-api-key-id", "forged-key"),
        ];
        let (_, action) = send(&worker, &headers);
        assert_forwarded_with_identity(&worker, action);
        assert_eq!(worker.host.reply(), None);

        // Through x-api-key too, which is then the header removed.
        let (_, action) = send(&worker, &[("x-api-key", KEY)]);
        assert_forwarded_with_identity(&worker, action);
        assert!(worker.host.request_values("x-api-key").is_empty());
    }

    #[test]
    fn a_hot_key_costs_only_seven_host_calls() {
        let worker = synced_worker("{}");
        store(&worker, record(KEY));
        worker.on_tick();
        send_key(&worker, KEY);
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
        assert_eq!(
            worker.host.host_calls.get(),
            7,
            "get authorization, the route's scopes, set two identity headers, remove both \
             credential headers, the clock (usage metering's duration)"
        );
        assert_eq!(*worker.host.property_reads.borrow(), [ROUTE_SCOPES]);
    }

    const ROUTE_SCOPES: &str = "xds.route_metadata.filter_metadata.keysync.scopes";

    fn with_policy(key: &str, scopes: &[&str], networks: &[&str]) -> KeyRecord {
        let mut scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        scopes.sort();
        KeyRecord {
            policy: Some(Rc::new(Policy {
                scopes,
                networks: (!networks.is_empty())
                    .then(|| networks.iter().map(|n| n.parse().unwrap()).collect()),
            })),
            ..record(key)
        }
    }

    fn from_address(worker: &Worker, address: Option<&str>) {
        *worker.host.source_address.borrow_mut() = address.map(str::to_string);
    }

    fn route_requires(worker: &Worker, scopes: Option<&str>) {
        *worker.host.route_scopes.borrow_mut() = Ok(scopes.map(str::to_string));
    }

    fn refused_with(worker: &Worker, error: &str) {
        let reply = worker.host.reply().expect("refused");
        assert_eq!(reply.status, 403);
        assert!(reply.body.contains(error), "{}", reply.body);
        assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
    }

    #[test]
    fn a_key_without_policy_reads_neither_its_address_nor_any_policy() {
        let worker = synced_worker("{}");
        store(&worker, record(KEY));
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
        // The store read (the worker's copy was empty), and nothing else new.
        assert_eq!(*worker.host.property_reads.borrow(), [ROUTE_SCOPES]);
        assert_eq!(worker.host.host_calls.get(), 8);
        assert_eq!(
            worker
                .store()
                .find(&record(KEY).hash)
                .unwrap()
                .unwrap()
                .policy,
            None
        );
    }

    #[test]
    fn an_allowlisted_key_is_admitted_from_inside_its_networks_only() {
        let worker = synced_worker("{}");
        store(
            &worker,
            with_policy(KEY, &[], &["203.0.113.0/24", "2001:db8::/32"]),
        );
        for inside in [
            "203.0.113.77:5000",
            "[::ffff:203.0.113.77]:5000",
            "[2001:db8::1]:443",
        ] {
            from_address(&worker, Some(inside));
            let (_, action) = send_key(&worker, KEY);
            assert_forwarded_with_identity(&worker, action);
            assert_eq!(
                *worker.host.property_reads.borrow(),
                ["source.address", ROUTE_SCOPES],
                "{inside}"
            );
        }
        for outside in [
            Some("198.51.100.1:5000"),
            Some("[2001:db9::1]:443"),
            Some("/var/run/envoy.sock"),
            Some(""),
            None,
        ] {
            from_address(&worker, outside);
            let (_, action) = send_key(&worker, KEY);
            assert_eq!(action, Action::Pause, "{outside:?}");
            refused_with(&worker, "ip_not_allowed");
            assert_eq!(
                *worker.host.property_reads.borrow(),
                ["source.address"],
                "refused before the route is asked"
            );
        }
        worker.on_tick();
        assert_eq!(worker.host.metric("keysync.ip_not_allowed"), Some(5));
        assert_eq!(worker.host.metric("keysync.allowed"), Some(3));
    }

    #[test]
    fn a_scoped_route_admits_only_keys_that_grant_every_scope() {
        let worker = synced_worker("{}");
        store(
            &worker,
            with_policy(KEY, &["orders:read", "orders:write"], &[]),
        );
        store(&worker, with_policy(OTHER_KEY, &["orders:read"], &[]));
        let bare = checksummed("0123456789abcdefghijABCDEFGHIJkl");
        store(&worker, record(&bare));

        route_requires(&worker, Some("orders:write orders:read"));
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
        assert_eq!(
            *worker.host.property_reads.borrow(),
            [ROUTE_SCOPES],
            "a key with scopes only has no address to check"
        );
        for short in [OTHER_KEY, &bare] {
            send_key(&worker, short);
            refused_with(&worker, "insufficient_scope");
            assert_eq!(
                worker.host.reply().unwrap().header("www-authenticate"),
                Some("Bearer error=\"insufficient_scope\"")
            );
        }

        route_requires(&worker, None);
        for any in [KEY, OTHER_KEY, &bare] {
            let (_, action) = send_key(&worker, any);
            assert_eq!(action, Action::Continue, "a route without scopes");
        }
        route_requires(&worker, Some(""));
        let (_, action) = send_key(&worker, &bare);
        assert_eq!(action, Action::Continue, "an empty requirement");

        route_requires(&worker, Some("orders:Read"));
        send_key(&worker, KEY);
        refused_with(&worker, "insufficient_scope");
        *worker.host.route_scopes.borrow_mut() = Err(crate::host::HostError(7));
        send_key(&worker, KEY);
        refused_with(&worker, "insufficient_scope");

        worker.on_tick();
        assert_eq!(worker.host.metric("keysync.insufficient_scope"), Some(4));
    }

    #[test]
    fn with_route_scopes_from_the_header_no_property_is_read() {
        let worker = synced_worker(r#"{"route_scopes":"header"}"#);
        store(&worker, with_policy(KEY, &["orders:read"], &[]));
        let bare = checksummed("0123456789abcdefghijABCDEFGHIJkl");
        store(&worker, record(&bare));
        let send_with = |key: &str, route_scopes: Option<&str>| {
            let mut headers = with_key(key);
            if let Some(value) = route_scopes {
                headers.push((ROUTE_SCOPES_HEADER, value.to_string()));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            send(&worker, &headers)
        };
        // A route without the header (Envoy sets it only on routes that require scopes)
        // requires none, whatever its metadata would say.
        route_requires(&worker, Some("orders:write"));
        for key in [KEY, bare.as_str()] {
            let (_, action) = send_with(key, None);
            assert_forwarded_with_identity(&worker, action);
        }
        let (_, action) = send_with(KEY, Some("orders:read"));
        assert_forwarded_with_identity(&worker, action);
        send_with(&bare, Some("orders:read"));
        refused_with(&worker, "insufficient_scope");
        send_with(KEY, Some("orders:read orders:write"));
        refused_with(&worker, "insufficient_scope");
        send_with(KEY, Some("Orders:Read"));
        refused_with(&worker, "insufficient_scope");
        assert!(
            worker.host.property_reads.borrow().is_empty(),
            "{:?}",
            worker.host.property_reads.borrow()
        );
    }

    #[test]
    fn a_key_with_both_is_checked_for_both() {
        let worker = synced_worker("{}");
        store(
            &worker,
            with_policy(KEY, &["orders:read"], &["203.0.113.0/24"]),
        );
        route_requires(&worker, Some("orders:read"));
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
        route_requires(&worker, Some("orders:write"));
        send_key(&worker, KEY);
        refused_with(&worker, "insufficient_scope");
        from_address(&worker, Some("198.51.100.1:1"));
        send_key(&worker, KEY);
        refused_with(&worker, "ip_not_allowed");
    }

    #[test]
    fn a_refused_request_does_not_use_the_rate_limit() {
        for global in [false, true] {
            let config = if global {
                r#"{"rate_limit":"global"}"#
            } else {
                "{}"
            };
            let worker = synced_worker(config);
            store(
                &worker,
                KeyRecord {
                    rate_limit: limited(KEY, 1).rate_limit,
                    ..with_policy(KEY, &["orders:read"], &["203.0.113.0/24"])
                },
            );
            from_address(&worker, Some("198.51.100.1:1"));
            for _ in 0..3 {
                send_key(&worker, KEY);
                refused_with(&worker, "ip_not_allowed");
                assert!(worker.host.request_values(RL_SUBJECT_HEADER).is_empty());
            }
            from_address(&worker, Some("203.0.113.1:1"));
            route_requires(&worker, Some("billing:read"));
            for _ in 0..3 {
                send_key(&worker, KEY);
                refused_with(&worker, "insufficient_scope");
            }
            route_requires(&worker, Some("orders:read"));
            let (_, action) = send_key(&worker, KEY);
            assert_eq!(action, Action::Continue, "the one request of the minute");
            if global {
                assert_eq!(worker.host.request_values(RL_LIMIT_HEADER), ["1+0"]);
            } else {
                send_key(&worker, KEY);
                assert_eq!(status(&worker), Some(429), "and only then the limit");
            }
        }
    }

    #[test]
    fn a_key_found_by_keysync_carries_its_policy_into_the_store() {
        let worker = synced_worker("{}");
        let restricted = with_policy(KEY, &["orders:read"], &["203.0.113.0/24"]);
        from_address(&worker, Some("198.51.100.1:1"));
        let (mut request, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause);
        answer(&mut request, &worker, found(&restricted, STORE_REVISION));
        refused_with(&worker, "ip_not_allowed");
        assert_eq!(worker.host.resumed.get(), 0);
        assert_eq!(
            worker.store().find(&restricted.hash),
            Ok(Some(restricted.clone())),
            "cached with its policy"
        );

        // The next request is judged from the store, with the policy.
        from_address(&worker, Some("203.0.113.9:1"));
        route_requires(&worker, Some("orders:read"));
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
        route_requires(&worker, Some("orders:write"));
        send_key(&worker, KEY);
        refused_with(&worker, "insufficient_scope");
    }

    #[test]
    fn a_bad_policy_from_keysync_admits_nobody_and_is_counted() {
        let worker = synced_worker("{}");
        let mut bad = proto_record(&record(KEY));
        bad.allowed_networks = vec![proto::Network {
            address: vec![203, 0, 113],
            prefix_len: 24,
        }];
        bad.scopes = vec!["Orders".into()];
        let (mut request, _) = send_key(&worker, KEY);
        let reply = Ok(prost::Message::encode_to_vec(&proto::LookupKeyResponse {
            key: Some(bad),
            revision: STORE_REVISION,
            provenance: provenance(EPOCH, 200),
        }));
        answer(&mut request, &worker, reply);
        refused_with(&worker, "ip_not_allowed");
        worker.on_tick();
        assert_eq!(worker.host.metric("keysync.bad_policies"), Some(2));
        assert!(logged_line("keysync sent a bad key policy").is_some());
    }

    #[test]
    fn a_second_credential_beside_the_one_used_is_not_forwarded_either() {
        let worker = synced_worker("{}");
        store(&worker, record(KEY));
        let bearer = format!("Bearer {KEY}");
        let (_, action) = send(
            &worker,
            &[("authorization", &bearer as &str), ("x-api-key", OTHER_KEY)],
        );
        assert_forwarded_with_identity(&worker, action);
        assert!(worker.host.request_values("x-api-key").is_empty());

        // The key in x-api-key, and one of ours under another scheme in Authorization.
        let basic = format!("Basic {OTHER_KEY}");
        let (_, action) = send(&worker, &[("x-api-key", KEY), ("authorization", &basic)]);
        assert_forwarded_with_identity(&worker, action);
        // Another scheme without a key stays for the backend.
        let (_, action) = send(
            &worker,
            &[("x-api-key", KEY), ("authorization", "Basic dXNlcjpw")],
        );
        assert_eq!(action, Action::Continue);
        assert_eq!(
            worker.host.request_values("authorization"),
            ["Basic dXNlcjpw"]
        );
    }

    #[test]
    fn forward_credential_keeps_the_key_for_the_backend() {
        let worker = synced_worker(r#"{"forward_credential":true}"#);
        store(&worker, record(KEY));
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Continue);
        assert_eq!(
            worker.host.request_values("authorization"),
            [format!("Bearer {KEY}")]
        );
    }

    #[test]
    fn an_unknown_key_found_by_keysync_is_admitted_and_cached() {
        let worker = synced_worker("{}");
        let (mut request, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause, "waits for keysync");
        let call = worker.host.last_call().unwrap();
        assert_eq!(call.cluster, "keysync");
        assert_eq!(call.method, keysync_api::LOOKUP_KEY);
        assert_eq!(call.timeout, Some(std::time::Duration::from_secs(1)));
        let asked: proto::LookupKeyRequest = call.decode();
        assert_eq!(asked.key_hash, KeyHash::of_key(KEY.as_bytes()).0.to_vec());
        assert_eq!(worker.lookups_in_flight.get(), 1);

        answer(&mut request, &worker, found(&record(KEY), STORE_REVISION));
        assert_eq!(worker.host.resumed.get(), 1, "the request goes on");
        assert_forwarded_with_identity(&worker, Action::Continue);
        assert_eq!(worker.lookups_in_flight.get(), 0);
        assert_eq!(
            worker.store().find(&record(KEY).hash),
            Ok(Some(record(KEY))),
            "cached for every worker"
        );
        assert!(logged_line("found by keysync (cached)").is_some());
    }

    #[test]
    fn an_answer_older_than_the_store_never_admits_a_key_the_store_lacks() {
        let worker = synced_worker("{}");
        let (mut request, _) = send_key(&worker, KEY);
        answer(
            &mut request,
            &worker,
            found(&record(KEY), STORE_REVISION - 1),
        );
        assert_eq!(
            status(&worker),
            Some(403),
            "the store may have dropped it since"
        );
        assert_eq!(worker.host.resumed.get(), 0);
        assert_eq!(
            worker.store().find(&record(KEY).hash),
            Ok(None),
            "not cached"
        );

        // If the store has the key by the time the late answer arrives, it decides.
        let (mut request, _) = send_key(&worker, KEY);
        store(&worker, record(KEY));
        answer(
            &mut request,
            &worker,
            found(&record(KEY), STORE_REVISION - 1),
        );
        assert_eq!(worker.host.resumed.get(), 1);
        assert_forwarded_with_identity(&worker, Action::Continue);
    }

    #[test]
    fn an_answer_of_another_history_or_unconfirmed_never_admits() {
        let worker = synced_worker(r#"{"max_staleness":"2m"}"#);
        for unusable in [provenance(EPOCH + 1, 200), provenance(EPOCH, 121_000), None] {
            let (mut request, _) = send_key(&worker, KEY);
            let reply = found_with(&record(KEY), STORE_REVISION + 5, unusable);
            answer(&mut request, &worker, reply);
            assert_eq!(status(&worker), Some(403), "{unusable:?}");
            assert_eq!(worker.store().find(&record(KEY).hash), Ok(None));
        }
        worker.on_tick();
        assert_eq!(worker.host.metric("keysync.stale_answers"), Some(3));
    }

    #[test]
    fn an_unknown_key_keysync_does_not_know_is_refused_and_remembered() {
        let worker = synced_worker("{}");
        let (mut request, _) = send_key(&worker, KEY);
        answer(&mut request, &worker, not_found());
        assert_eq!(status(&worker), Some(403));
        assert_eq!(
            worker.host.resumed.get(),
            0,
            "a refused request is not resumed"
        );

        let calls = worker.host.calls.borrow().len();
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause);
        assert_eq!(
            status(&worker),
            Some(403),
            "refused from the negative cache"
        );
        assert_eq!(
            worker.host.calls.borrow().len(),
            calls,
            "without asking again"
        );

        worker.host.advance(std::time::Duration::from_secs(31));
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause);
        assert_eq!(
            worker.host.calls.borrow().len(),
            calls + 1,
            "asked again after the TTL"
        );
    }

    #[test]
    fn a_lookup_timeout_leaves_the_store_to_decide() {
        let worker = synced_worker("{}");
        let (mut request, _) = send_key(&worker, KEY);
        answer(
            &mut request,
            &worker,
            Err(ApiError::Grpc(4, "deadline exceeded".into())),
        );
        assert_eq!(
            status(&worker),
            Some(403),
            "a synced store: absent means invalid"
        );
        assert!(logged_line("lookup of key_hash=").is_some());

        let unsynced = worker_never_synced();
        let (mut request, _) = send_key(&unsynced, KEY);
        answer(
            &mut request,
            &unsynced,
            Err(ApiError::Grpc(14, String::new())),
        );
        assert_eq!(
            status(&unsynced),
            Some(503),
            "a store that never synced cannot tell"
        );
    }

    fn worker_never_synced() -> Worker {
        worker("{}")
    }

    #[test]
    fn an_answer_for_another_key_is_not_trusted() {
        let worker = synced_worker("{}");
        let (mut request, _) = send_key(&worker, KEY);
        answer(
            &mut request,
            &worker,
            found(&record(OTHER_KEY), STORE_REVISION),
        );
        assert_eq!(status(&worker), Some(403));
        assert_eq!(worker.store().find(&record(OTHER_KEY).hash), Ok(None));
    }

    #[test]
    fn lookups_beyond_the_bound_or_undispatchable_are_decided_by_the_store() {
        let worker = synced_worker(r#"{"miss_lookup":{"max_in_flight":1}}"#);
        let (_waiting, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause);
        send_key(&worker, OTHER_KEY);
        assert_eq!(status(&worker), Some(403), "over the bound: not asked");
        assert_eq!(worker.host.calls.borrow().len(), 1);

        let worker = synced_worker("{}");
        worker.host.fail_dispatch.set(true);
        send_key(&worker, KEY);
        assert_eq!(status(&worker), Some(403));
        assert_eq!(worker.lookups_in_flight.get(), 0);
    }

    #[test]
    fn a_client_that_leaves_mid_lookup_frees_its_slot() {
        let worker = synced_worker("{}");
        let (request, _) = send_key(&worker, KEY);
        assert_eq!(worker.lookups_in_flight.get(), 1);
        drop(request);
        assert_eq!(worker.lookups_in_flight.get(), 0);
    }

    #[test]
    fn an_expired_key_is_refused_from_its_expiry_second() {
        let worker = synced_worker("{}");
        let now = i64::try_from(NOW_MS / 1000).unwrap();
        store(
            &worker,
            KeyRecord {
                expires_at: now + 1,
                ..record(KEY)
            },
        );
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Continue, "still valid");
        store(
            &worker,
            KeyRecord {
                expires_at: now,
                ..record(KEY)
            },
        );
        worker.on_tick();
        send_key(&worker, KEY);
        assert_eq!(status(&worker), Some(403));
    }

    fn limited(key: &str, requests_per_minute: u32) -> KeyRecord {
        KeyRecord {
            rate_limit: Some(KeyLimit {
                limit: Limit {
                    requests_per_minute,
                    burst: 0,
                },
                per_key: false,
            }),
            ..record(key)
        }
    }

    #[test]
    fn a_key_over_its_rate_limit_gets_429_with_when_to_retry() {
        let worker = synced_worker("{}");
        store(&worker, limited(KEY, 2));
        for remaining in [1, 0] {
            let (mut request, action) = send_key(&worker, KEY);
            assert_eq!(action, Action::Continue);
            request.on_response_headers();
            let header = worker.host.response_value(RATELIMIT_HEADER).unwrap();
            assert!(
                header.starts_with(&format!("limit=2, remaining={remaining}, reset=")),
                "{header}"
            );
        }
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause);
        let reply = worker.host.reply().unwrap();
        assert_eq!(reply.status, 429);
        assert!(reply.body.contains("rate_limited"));
        let reset = 60 - (NOW_MS / 1000) % 60;
        assert_eq!(
            reply.header("retry-after"),
            Some(reset.to_string().as_str())
        );
        assert_eq!(reply.header("ratelimit-policy"), Some("2;w=60"));
        assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
    }

    #[test]
    fn a_request_waits_for_another_workers_lease_rather_than_lose_it() {
        use crate::local_rate_limit::{check, give_back, Decision, Leases};
        let worker = synced_worker("{}");
        let limited = limited(KEY, 6_400);
        store(&worker, limited.clone());
        let (subject, limit) = limited.limit_subject().unwrap();
        // Another worker took a lease of 32 at the start of the window and went quiet.
        let mut other = Leases::default();
        let now = NOW_MS / 1000;
        assert!(matches!(
            check(&worker.host, &mut other, &subject, limit, now).unwrap(),
            Decision::Allow(_)
        ));
        let mut allowed = 1;
        let waiting = loop {
            let (request, action) = send_key(&worker, KEY);
            match (action, status(&worker)) {
                (Action::Continue, None) => allowed += 1,
                (Action::Pause, None) => break request,
                other => panic!("{other:?} after {allowed}"),
            }
        };
        assert_eq!(
            allowed,
            6_400 - 31,
            "the other worker's unused 31 are not handed out"
        );
        // Its tick gives them back; ours then decides the waiting request, in its context.
        give_back(&worker.host, &mut other, now);
        worker.host.new_request(&[]);
        worker.on_tick();
        assert_eq!(
            worker.host.effective_context.get(),
            Some(waiting.context_id)
        );
        assert_eq!(worker.host.resumed.get(), 1);
        assert_eq!(
            worker.host.request_values(ORG_ID_HEADER),
            [ORG.hyphenated()]
        );
        let mut waiting = waiting;
        waiting.on_response_headers();
        let header = worker.host.response_value(RATELIMIT_HEADER).unwrap();
        assert!(header.starts_with("limit=6400, remaining=30,"), "{header}");
    }

    #[test]
    fn a_request_waiting_for_a_lease_that_never_comes_back_is_refused_in_time() {
        use crate::local_rate_limit::{check, Leases};
        let worker = synced_worker("{}");
        let limited = limited(KEY, 128);
        store(&worker, limited.clone());
        let (subject, limit) = limited.limit_subject().unwrap();
        let mut other = Leases::default();
        check(&worker.host, &mut other, &subject, limit, NOW_MS / 1000).unwrap();
        let waiting = loop {
            let (request, action) = send_key(&worker, KEY);
            if action == Action::Pause {
                break request;
            }
        };
        for _ in 0..4 {
            worker.host.new_request(&[]);
            worker.on_tick();
            assert_eq!(status(&worker), None, "still waiting");
        }
        worker.host.new_request(&[]);
        worker.on_tick();
        assert_eq!(status(&worker), Some(429), "refused after four ticks");
        assert!(logged_line("were not given back in time").is_some());
        drop(waiting);
    }

    #[test]
    fn global_mode_names_the_subject_and_limit_and_strips_client_values() {
        let worker = synced_worker(r#"{"rate_limit":"global"}"#);
        store(&worker, limited(KEY, 100));
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Continue);
        assert_eq!(
            worker.host.request_values(RL_SUBJECT_HEADER),
            [format!("org:{}", ORG.hyphenated())]
        );
        assert_eq!(worker.host.request_values(RL_LIMIT_HEADER), ["100+0"]);

        store(&worker, record(OTHER_KEY));
        let (_, action) = send(
            &worker,
            &[
                ("authorization", &format!("Bearer {OTHER_KEY}") as &str),
                (RL_SUBJECT_HEADER, "org:someone-else"),
                (RL_LIMIT_HEADER, "1000000+0"),
            ],
        );
        assert_eq!(action, Action::Continue);
        assert!(worker.host.request_values(RL_SUBJECT_HEADER).is_empty());
        assert!(worker.host.request_values(RL_LIMIT_HEADER).is_empty());
    }

    #[test]
    fn a_public_path_passes_without_a_key_and_without_identity() {
        let worker = synced_worker(r#"{"public_paths":["/health","/docs/*"]}"#);
        for path in ["/health", "/health?verbose=1", "/docs/intro"] {
            let (_, action) = send(&worker, &[(":path", path), ("x-org-id", "forged")]);
            assert_eq!(action, Action::Continue, "{path}");
            assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
        }
        send(&worker, &[(":path", "/healthz")]);
        assert_eq!(status(&worker), Some(401), "not public");
    }

    #[test]
    fn a_request_forwarded_without_an_accepted_key_never_carries_one() {
        let worker = synced_worker(r#"{"public_paths":["/docs/*"]}"#);
        let (_, action) = send(
            &worker,
            &[
                (":path", "/docs/a"),
                ("authorization", "Bearer sk_live_not a key"),
                ("x-api-key", "sk_live_AnotherKey000000000001"),
            ],
        );
        assert_eq!(action, Action::Continue);
        assert!(worker.host.request_values("authorization").is_empty());
        assert!(worker.host.request_values("x-api-key").is_empty());

        // Another scheme is the backend's business, not a key.
        send(
            &worker,
            &[(":path", "/docs/a"), ("authorization", "Basic dXNlcjpw")],
        );
        assert_eq!(
            worker.host.request_values("authorization"),
            ["Basic dXNlcjpw"]
        );

        let keeps = synced_worker(r#"{"public_paths":["/docs/*"],"forward_credential":true}"#);
        send(
            &keeps,
            &[
                (":path", "/docs/a"),
                ("x-api-key", "sk_live_AnotherKey000000000001"),
            ],
        );
        assert_eq!(keeps.host.request_values("x-api-key").len(), 1);
    }

    #[test]
    fn fail_open_forwards_without_identity_only_when_nobody_can_tell() {
        let worker = worker(r#"{"failure_mode":"open","miss_lookup":{"enabled":false}}"#);
        let (_, action) = send(
            &worker,
            &[
                ("authorization", &format!("Bearer {KEY}") as &str),
                ("x-org-id", "forged"),
            ],
        );
        assert_eq!(
            action,
            Action::Continue,
            "never synced: cannot tell, fail open"
        );
        assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
        assert!(
            worker.host.request_values("authorization").is_empty(),
            "nor its credential"
        );

        send(&worker, &[(":path", "/orders")]);
        assert_eq!(
            status(&worker),
            Some(401),
            "a missing key is never failed open"
        );
        send(&worker, &[("authorization", "Bearer sk_live_x")]);
        assert_eq!(status(&worker), Some(403), "nor a malformed one");
    }

    #[test]
    fn a_stale_store_cannot_vouch_for_a_key() {
        let worker = synced_worker(r#"{"max_staleness":"2m","miss_lookup":{"enabled":false}}"#);
        store(&worker, record(KEY));
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Continue, "confirmed just now");

        // The sync service stops beating (its VM died): the worker's own time counts.
        for _ in 0..(121 * 4) {
            worker.host.advance(std::time::Duration::from_millis(250));
            worker.on_tick();
        }
        send_key(&worker, KEY);
        assert_eq!(status(&worker), Some(503));
        assert!(logged_line("over max_staleness").is_some());

        sync_beat(&worker, 1_000);
        worker.on_tick();
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(
            action,
            Action::Continue,
            "trusted again once keysync confirms"
        );
    }

    #[test]
    fn a_store_confirmed_too_long_ago_is_not_trusted_even_while_the_sync_service_beats() {
        let worker = synced_worker(r#"{"max_staleness":"2m","miss_lookup":{"enabled":false}}"#);
        store(&worker, record(KEY));
        sync_beat(&worker, 120_001);
        worker.on_tick();
        send_key(&worker, KEY);
        assert_eq!(status(&worker), Some(503));
    }

    #[test]
    fn a_stale_store_lets_keysync_vouch_with_fresh_answers_only() {
        let worker = synced_worker(r#"{"max_staleness":"2m"}"#);
        store(&worker, record(KEY));
        sync_beat(&worker, 200_000);
        worker.on_tick();
        let (mut request, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause, "the store is not asked: keysync is");
        answer(&mut request, &worker, found(&record(KEY), 1));
        assert_eq!(worker.host.resumed.get(), 1, "a fresh answer admits");
        assert_forwarded_with_identity(&worker, Action::Continue);

        let (mut request, _) = send_key(&worker, KEY);
        answer(
            &mut request,
            &worker,
            found_with(&record(KEY), 99, provenance(EPOCH, 130_000)),
        );
        assert_eq!(status(&worker), Some(503), "keysync cannot vouch either");
    }

    #[test]
    fn a_worker_trusts_nothing_before_it_sees_a_confirmed_store() {
        let worker = worker(r#"{"miss_lookup":{"enabled":false}}"#);
        store(&worker, record(KEY));
        send_key(&worker, KEY);
        assert_eq!(status(&worker), Some(503));
        // The first sync completes: the next request sees it without waiting for a tick.
        sync_beat(&worker, 0);
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Continue);
    }

    #[test]
    fn a_failed_header_write_is_never_forwarded() {
        let worker = synced_worker("{}");
        store(&worker, record(KEY));
        worker.host.fail_header_writes.set(true);
        let (_, action) = send(
            &worker,
            &[
                ("authorization", &format!("Bearer {KEY}") as &str),
                ("x-org-id", "forged"),
            ],
        );
        assert_eq!(action, Action::Pause);
        assert_eq!(status(&worker), Some(503));
        assert_eq!(
            worker.host.request_values(ORG_ID_HEADER),
            ["forged"],
            "the client's value could not be replaced, so the request stops here"
        );
    }

    #[test]
    fn request_counters_reach_envoy_on_the_tick() {
        let worker = synced_worker("{}");
        store(&worker, record(KEY));
        send_key(&worker, KEY);
        send(&worker, &[(":path", "/")]);
        assert_eq!(worker.host.metric("keysync.allowed"), Some(0));
        worker.on_tick();
        assert_eq!(worker.host.metric("keysync.allowed"), Some(1));
        assert_eq!(worker.host.metric("keysync.missing"), Some(1));
    }

    // ---- usage metering ----

    use crate::duration_sample;
    use crate::usage::{self, Meta, Totals};
    use std::time::Duration;

    /// A synced worker whose sync service turned metering on.
    fn metered_worker(config: &str) -> Worker {
        let worker = synced_worker(config);
        usage::ensure_slots(&worker.host).unwrap();
        Meta {
            enabled: true,
            instance_id: [9; 16],
        }
        .write(&worker.host)
        .unwrap();
        worker.on_tick();
        worker
    }

    /// The shared counters of the test key, by outcome, after the worker's tick.
    fn counted(worker: &Worker) -> Vec<(u8, usage::Counts)> {
        worker.on_tick();
        let slot = worker
            .host
            .shared
            .value(&usage::slot_name(usage::slot_of(&KEY_ID)))
            .unwrap();
        let mut counters: Vec<(u8, usage::Counts)> = usage::decode_slot(&slot)
            .into_iter()
            .filter(|(key, _)| key.key == KEY_ID && key.org == ORG)
            .map(|(key, counts)| (key.outcome, counts))
            .collect();
        counters.sort_by_key(|(outcome, _)| *outcome);
        counters
    }

    fn requests(counters: &[(u8, usage::Counts)]) -> Vec<(u8, u64)> {
        counters.iter().map(|(o, c)| (*o, c.requests)).collect()
    }

    /// A forwarded request of `KEY` answered by the upstream with `status` after `after`.
    fn forwarded(worker: &Worker, status: u32, after: Duration) {
        let (mut request, action) = send_key(worker, KEY);
        assert_eq!(action, Action::Continue);
        worker.host.respond(status, after);
        request.on_response_headers();
        request.finish();
    }

    #[test]
    fn usage_counts_each_outcome_of_a_recognized_key() {
        let worker = metered_worker("{}");
        store(&worker, limited(KEY, 5));
        for status in [200, 201, 404, 503, 101] {
            forwarded(&worker, status, Duration::from_millis(1));
        }
        // The budget (5) is spent: refused by the rate limit, counted at its end.
        let (request, _) = send_key(&worker, KEY);
        assert_eq!(status(&worker), Some(429));
        drop(request);
        // Refused by its policy.
        store(&worker, with_policy(KEY, &[], &["10.0.0.0/8"]));
        worker.on_tick();
        let (request, _) = send_key(&worker, KEY);
        assert_eq!(status(&worker), Some(403));
        drop(request);
        assert_eq!(
            requests(&counted(&worker)),
            [(1, 1), (2, 2), (4, 1), (5, 1), (6, 1), (8, 1)],
            "101 is 'other'; 201 and 200 are both 2xx"
        );
        assert_eq!(Totals::read(&worker.host).unattributed, 0);
    }

    #[test]
    fn requests_without_a_recognized_key_count_per_envoy_only() {
        let worker = metered_worker("{}");
        send(&worker, &[(":path", "/orders")]);
        send(&worker, &[("authorization", "Bearer sk_live_x")]);
        let (mut lookup, _) = send_key(&worker, OTHER_KEY);
        answer(&mut lookup, &worker, not_found());
        assert_eq!(status(&worker), Some(403));
        drop(lookup);
        // A public path passes without a key: not a key's request either.
        send(&worker, &[(":path", "/health")]);
        worker.on_tick();
        assert_eq!(Totals::read(&worker.host).unattributed, 4);
        assert!(counted(&worker).is_empty());
    }

    #[test]
    fn durations_go_into_their_buckets() {
        let worker = metered_worker(r#"{"usage_durations":"all"}"#);
        store(&worker, record(KEY));
        for ms in [3, 10, 50, 999, 1_500] {
            forwarded(&worker, 200, Duration::from_millis(ms));
        }
        let counters = counted(&worker);
        let (_, counts) = counters.first().unwrap();
        assert_eq!(counts.requests, 5);
        assert_eq!(counts.duration_us, (3 + 10 + 50 + 999 + 1_500) * 1000);
        assert_eq!(counts.buckets, [2, 1, 1, 1]);
    }

    #[test]
    fn a_busy_key_has_a_sample_of_its_requests_timed() {
        let worker = metered_worker("{}");
        store(&worker, record(KEY));
        for ms in [1, 2, 3, 4, 500, 600] {
            forwarded(&worker, 200, Duration::from_millis(ms));
        }
        // `counted` ticks: the next tick's first requests are timed again.
        let (_, first) = counted(&worker)[0];
        assert_eq!(first.requests, 6);
        assert_eq!(
            first.buckets,
            [4, 0, 0, 0],
            "the first 4 of the tick, timed"
        );
        assert_eq!(first.duration_us, 10_000, "the timed ones' sum alone");
        forwarded(&worker, 200, Duration::from_millis(20));
        let (_, second) = counted(&worker)[0];
        assert_eq!(second.requests, 7);
        assert_eq!(second.buckets, [4, 1, 0, 0]);
        assert_eq!(second.duration_us, 30_000);
    }

    #[test]
    fn an_untimed_request_costs_only_its_status() {
        let worker = metered_worker("{}");
        store(&worker, record(KEY));
        for _ in 0..duration_sample::PER_TICK {
            forwarded(&worker, 200, Duration::from_millis(1));
        }
        worker.host.host_calls.set(0);
        let (mut request, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
        assert_eq!(worker.host.host_calls.get(), 6, "as without metering");
        worker.host.host_calls.set(0);
        worker.host.respond(503, Duration::from_millis(5));
        request.on_response_headers();
        assert_eq!(worker.host.host_calls.get(), 1, "its :status alone");
        request.finish();
        let counters = counted(&worker);
        assert_eq!(requests(&counters), [(2, 4), (5, 1)]);
        let (_, failed) = counters[1];
        assert_eq!((failed.duration_us, failed.buckets), (0, [0; 4]));
    }

    #[test]
    fn body_bytes_are_counted_without_a_host_call() {
        let worker = metered_worker("{}");
        store(&worker, record(KEY));
        let (mut request, _) = send_key(&worker, KEY);
        worker.host.respond(200, Duration::from_millis(2));
        request.on_request_body(100);
        request.on_request_body(23);
        request.on_response_headers();
        let calls = worker.host.host_calls.get();
        request.on_response_body(4_000);
        request.finish();
        assert_eq!(worker.host.host_calls.get(), calls);
        let (_, counts) = counted(&worker)[0];
        assert_eq!((counts.request_bytes, counts.response_bytes), (123, 4_000));
    }

    #[test]
    fn counting_a_request_costs_one_clock_read_on_its_request_path() {
        let worker = metered_worker("{}");
        store(&worker, record(KEY));
        send_key(&worker, KEY);
        let (mut request, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
        assert_eq!(
            worker.host.host_calls.get(),
            7,
            "as without metering, and the clock at admission"
        );
        worker.host.respond(200, Duration::from_millis(5));
        request.on_response_headers();
        assert_eq!(
            worker.host.host_calls.get(),
            2,
            "the response path: its :status and the clock"
        );
        assert!(worker.host.property_reads.borrow().is_empty());
        worker.host.host_calls.set(0);
        request.finish();
        drop(request);
        assert_eq!(worker.host.host_calls.get(), 0, "counting itself is free");
        // Refusals and requests without a key pay nothing on any path.
        send(&worker, &[(":path", "/orders")]);
        let calls = worker.host.host_calls.get();
        assert_eq!(
            requests(&counted(&worker)),
            [(1, 1), (2, 1)],
            "the first request ended without response headers: 'other'"
        );
        assert_eq!(
            calls, 4,
            "authorization, x-api-key, :path (public-path check), the reply: as without metering"
        );
    }

    #[test]
    fn a_request_that_waited_for_its_rate_limit_counts_as_it_ended() {
        use crate::local_rate_limit::{check, Leases};
        let worker = metered_worker("{}");
        let limited = limited(KEY, 128);
        store(&worker, limited.clone());
        let (subject, limit) = limited.limit_subject().unwrap();
        // Another worker holds a lease that never comes back.
        check(
            &worker.host,
            &mut Leases::default(),
            &subject,
            limit,
            NOW_MS / 1000,
        )
        .unwrap();
        let mut forwarded_before = 0;
        let waiting = loop {
            let (mut request, action) = send_key(&worker, KEY);
            if action == Action::Pause {
                break request;
            }
            worker.host.respond(200, Duration::ZERO);
            request.on_response_headers();
            forwarded_before += 1;
        };
        for _ in 0..5 {
            worker.host.new_request(&[]);
            worker.on_tick();
        }
        assert_eq!(status(&worker), Some(429));
        drop(waiting);
        assert_eq!(requests(&counted(&worker)), [(2, forwarded_before), (6, 1)]);
    }

    #[test]
    fn metering_off_counts_nothing_and_reads_nothing() {
        let worker = synced_worker("{}");
        Meta {
            enabled: false,
            instance_id: [9; 16],
        }
        .write(&worker.host)
        .unwrap();
        worker.on_tick();
        store(&worker, record(KEY));
        let (mut request, _) = send_key(&worker, KEY);
        worker.host.respond(200, Duration::from_millis(5));
        request.on_response_headers();
        assert_eq!(worker.host.host_calls.get(), 0, "no response-path reads");
        request.finish();
        send(&worker, &[(":path", "/orders")]);
        worker.on_tick();
        assert!(worker
            .host
            .shared
            .value(&usage::slot_name(usage::slot_of(&KEY_ID)))
            .is_none());
        assert_eq!(worker.host.shared.value(usage::TOTALS_ENTRY), None);
    }

    #[test]
    fn counts_wait_in_the_worker_until_the_sync_service_made_the_slots() {
        let worker = synced_worker("{}");
        store(&worker, record(KEY));
        forwarded(&worker, 200, Duration::from_millis(1));
        worker.on_tick();
        assert_eq!(worker.host.shared.value(usage::TOTALS_ENTRY), None);
        usage::ensure_slots(&worker.host).unwrap();
        Meta {
            enabled: true,
            instance_id: [9; 16],
        }
        .write(&worker.host)
        .unwrap();
        assert_eq!(requests(&counted(&worker)), [(2, 1)]);
    }

    // ---- quotas ----

    use keysync_contract::subject::Subject;

    /// A worker whose list names `subjects`, each with `granted` requests of `limit`.
    fn quota_worker(subjects: &[Subject], limit: u64, granted: u64, exhausted: bool) -> Worker {
        let worker = synced_worker("{}");
        crate::quota::ensure_slots(&worker.host).unwrap();
        let now_ms = i64::try_from(worker.host.now_unix_ms()).unwrap();
        for subject in subjects {
            crate::quota::update(&worker.host, subject, |record| {
                record.limit = limit;
                record.period_start_ms = now_ms - 1_000;
                record.resets_at_ms = now_ms + 3_600_000;
                record.granted = granted;
                record.exhausted = exhausted;
            })
            .unwrap();
        }
        let list = crate::quota::QuotaList {
            revision: 1,
            subjects: subjects.iter().copied().collect(),
        };
        worker.host.shared.put(crate::quota::LIST, &list.encode());
        worker
            .host
            .shared
            .put(crate::quota::REVISION, &1u64.to_le_bytes());
        worker.on_tick();
        store(&worker, record(KEY));
        worker
    }

    #[test]
    fn an_exhausted_org_quota_answers_429_with_the_quota_and_its_reset() {
        let worker = quota_worker(&[Subject::Org(ORG)], 1_000, 2, true);
        for _ in 0..2 {
            let (_, action) = send_key(&worker, KEY);
            assert_forwarded_with_identity(&worker, action);
        }
        let (request, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause);
        let reply = worker.host.reply().expect("refused");
        assert_eq!(reply.status, 429);
        assert!(reply.body.contains("quota_exceeded"), "{}", reply.body);
        assert_eq!(reply.header("retry-after"), Some("3600"));
        assert_eq!(
            reply.header("ratelimit"),
            Some("limit=1000, remaining=0, reset=3600")
        );
        assert_eq!(reply.header("ratelimit-policy"), Some("1000;w=3601"));
        assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
        drop(request);
        worker.on_tick();
        assert_eq!(worker.host.metric("keysync.quota_exceeded"), Some(1));
    }

    #[test]
    fn a_spent_grant_waits_for_the_next_lease_then_goes_on() {
        let worker = quota_worker(&[Subject::Key(KEY_ID)], 1_000, 0, false);
        // Credit first: a thousandth of 1,000 is 1.
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
        let (request, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause, "parked for the lease");
        assert_eq!(worker.host.reply(), None, "not refused");
        // The sync service writes the next grant; the tick admits the parked request.
        crate::quota::update(&worker.host, &Subject::Key(KEY_ID), |r| r.granted = 10).unwrap();
        worker.on_tick();
        assert_eq!(worker.host.resumed.get(), 1);
        assert_eq!(worker.host.request_values(ORG_ID_HEADER).len(), 1);
        drop(request);
    }

    #[test]
    fn a_lease_that_never_comes_refuses_with_retry_after_1_within_a_second() {
        let worker = quota_worker(&[Subject::Org(ORG)], 1_000, 0, false);
        send_key(&worker, KEY);
        let (request, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause);
        for _ in 0..4 {
            worker.on_tick();
            assert_eq!(worker.host.reply(), None);
        }
        worker.on_tick();
        let reply = worker.host.reply().expect("refused at last");
        assert_eq!(reply.status, 429);
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert_eq!(worker.host.resumed.get(), 0);
        drop(request);
    }

    #[test]
    fn a_key_quota_is_not_counted_twice_while_its_org_waits() {
        let worker = quota_worker(&[Subject::Key(KEY_ID), Subject::Org(ORG)], 1_000, 0, false);
        // Both credits (1 each) go to the first request.
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
        // The key's own quota gets a grant; the organization's does not yet.
        crate::quota::update(&worker.host, &Subject::Key(KEY_ID), |r| r.granted = 5).unwrap();
        let (request, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause);
        for _ in 0..2 {
            worker.on_tick();
        }
        crate::quota::update(&worker.host, &Subject::Org(ORG), |r| r.granted = 5).unwrap();
        worker.on_tick();
        assert_eq!(worker.host.resumed.get(), 1);
        let admitted = |subject: Subject| {
            let slot = worker
                .host
                .shared
                .value(&crate::quota::slot_name(crate::quota::slot_of(&subject)))
                .unwrap();
            crate::quota::decode_slot(&slot)
                .into_iter()
                .find(|r| r.subject == subject)
                .unwrap()
                .admitted
        };
        assert_eq!(admitted(Subject::Key(KEY_ID)), 2, "once per request");
        assert_eq!(admitted(Subject::Org(ORG)), 2);
        drop(request);
    }

    #[test]
    fn keys_without_a_quota_never_touch_the_quota_states() {
        let other_org = Subject::Org(Id([0x77; 16]));
        let worker = quota_worker(&[other_org], 1_000, 0, true);
        let writes = worker.host.shared.writes.get();
        for _ in 0..5 {
            let (_, action) = send_key(&worker, KEY);
            assert_forwarded_with_identity(&worker, action);
        }
        assert_eq!(worker.host.shared.writes.get(), writes);
    }
}
