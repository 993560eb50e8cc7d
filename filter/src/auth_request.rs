//! The HTTP filter's per-request context: gathers the facts with host calls (headers,
//! one shared-data read, a lookup through keysync on a miss) and acts on the verdicts
//! of `decision`.

use crate::auth_worker::AuthWorker;
use crate::clock;
use crate::config::RateLimitMode;
use crate::decision::{self, Denial, Outcome, Verdict};
use crate::key_hash::KeyHash;
use crate::key_store::Cached;
use crate::keysync_api::{self, ApiError};
use crate::local_rate_limit::{self, Leases, LimitError, Quota, Subject};
use crate::record::KeyRecord;
use crate::record_cache::CachedRecord;
use crate::shared_data::HostSharedData;
use crate::stats::Counter;
use keysync_contract::credential::{self, Credential, Source};
use keysync_contract::rate_limit_headers::RATELIMIT_HEADER;
use keysync_contract::reply::{self as response, RATE_LIMITED_BODY};
use keysync_contract::{KEY_ID_HEADER, ORG_ID_HEADER};
use keysync_proto::v1 as proto;
use log::{info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, MapType};
use std::rc::Rc;

// Global mode: descriptor entries for Envoy's rate-limit filter, removed by the route
// before the request goes upstream.
use keysync_contract::{
    RATE_LIMIT_LIMIT_HEADER as RL_LIMIT_HEADER, RATE_LIMIT_SUBJECT_HEADER as RL_SUBJECT_HEADER,
};

pub struct AuthRequest {
    worker: Rc<AuthWorker>,
    /// Set while this request waits for keysync.
    lookup: Option<PendingLookup>,
    /// Local mode: the quota to report on the response.
    quota: Option<Quota>,
    /// The record this request was judged on, with its identity headers formatted.
    identity: Option<Rc<CachedRecord>>,
}

struct PendingLookup {
    hash: KeyHash,
    source: Source,
}

impl AuthRequest {
    pub fn new(worker: Rc<AuthWorker>) -> Self {
        AuthRequest {
            worker,
            lookup: None,
            quota: None,
            identity: None,
        }
    }

    fn authenticate(&mut self) -> Action {
        let authorization = request_header("authorization");
        let api_key = if credential::needs_api_key_header(authorization.as_deref()) {
            request_header("x-api-key")
        } else {
            None
        };
        match credential::extract(authorization.as_deref(), api_key.as_deref()) {
            Credential::Missing => self.act(Verdict::Deny(Denial::MissingKey), None),
            Credential::Malformed => self.act(Verdict::Deny(Denial::InvalidKey), None),
            Credential::Key { key, source } => {
                let hash = KeyHash::of_key(key);
                let verdict = self.judge_stored(&hash);
                self.act(verdict, Some((hash, source)))
            }
        }
    }

    fn judge_stored(&mut self, hash: &KeyHash) -> Verdict {
        if self.worker.stale.get() {
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
            let verdict = judge_record(cached.record);
            self.identity = Some(cached);
            return verdict;
        }
        match self.worker.store.find(hash) {
            Ok(Some(record)) => {
                let cached = Rc::new(CachedRecord::new(record));
                if let Ok(mut records) = self.worker.records.try_borrow_mut() {
                    records.insert(Rc::clone(&cached));
                }
                self.identity = Some(cached);
                judge_record(record)
            }
            Ok(None) => self.judge_unknown(hash),
            Err(e) => {
                warn!("unreadable bucket for key_hash={}: {e}", hash.short());
                self.judge_unknown(hash)
            }
        }
    }

    fn judge_unknown(&self, hash: &KeyHash) -> Verdict {
        let refused = self
            .worker
            .negative
            .try_borrow()
            .is_ok_and(|cache| cache.contains(hash, clock::now_unix_ms()));
        if refused {
            self.worker.stats.bump(Counter::NegativeCacheHits);
        }
        let may_ask = self.worker.may_start_lookup();
        // The metadata read is only needed when neither of the above settles it.
        let synced = refused || may_ask || self.worker.store.meta().synced();
        decision::judge_unknown(refused, may_ask, synced)
    }

    /// Carries out a verdict. `key` is the hash and source of a well-formed key.
    fn act(&mut self, verdict: Verdict, key: Option<(KeyHash, Source)>) -> Action {
        match (verdict, key) {
            (Verdict::Allow(record), Some((_, source))) => self.admit(&record, source),
            (Verdict::AskKeysync, Some((hash, source))) => self.ask_keysync(hash, source),
            (Verdict::Deny(denial), _) => self.refuse(denial),
            // A verdict about a key without a key cannot happen; refuse to be safe.
            (_, None) => self.refuse(Denial::InvalidKey),
        }
    }

    fn ask_keysync(&mut self, hash: KeyHash, source: Source) -> Action {
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
            &config.keysync_cluster,
            keysync_api::LOOKUP_KEY,
            &request,
            config.miss_lookup.timeout,
        ) {
            Ok(_) => {
                let in_flight = &self.worker.lookups_in_flight;
                in_flight.set(in_flight.get().saturating_add(1));
                self.lookup = Some(PendingLookup { hash, source });
                Action::Pause
            }
            Err(e) => {
                self.lookup_failed(&hash, &e);
                let denial = decision::judge_from_store_alone(self.worker.store.meta().synced());
                self.refuse(denial)
            }
        }
    }

    fn on_lookup_response(&mut self, pending: PendingLookup, status: u32, size: usize) {
        let verdict = match keysync_api::response::<proto::LookupKeyResponse>(status, size) {
            Ok(answer) => self.judge_answer(&pending.hash, answer),
            Err(e) => {
                self.lookup_failed(&pending.hash, &e);
                Verdict::Deny(decision::judge_from_store_alone(
                    self.worker.store.meta().synced(),
                ))
            }
        };
        if let Action::Continue = self.act(verdict, Some((pending.hash, pending.source))) {
            if let Err(e) = hostcalls::resume_http_request() {
                warn!("cannot resume request after lookup: {e:?}");
            }
        }
    }

    fn judge_answer(&self, hash: &KeyHash, answer: proto::LookupKeyResponse) -> Verdict {
        let Some(found) = answer.key else {
            info!("cache miss: key_hash={} unknown to keysync", hash.short());
            if let Ok(mut cache) = self.worker.negative.try_borrow_mut() {
                cache.insert(*hash, clock::now_unix_ms());
            }
            return Verdict::Deny(Denial::InvalidKey);
        };
        match KeyRecord::from_proto(&found) {
            Ok(record) if record.hash == *hash => {
                let cached = self.worker.store.cache_lookup(&record, answer.revision);
                info!(
                    "cache miss: key_hash={} found by keysync ({})",
                    hash.short(),
                    match cached {
                        Cached::Stored | Cached::AlreadyThere => "cached",
                        Cached::Stale => "not cached: the store is newer",
                        Cached::Failed(_) => "not cached: store busy",
                    }
                );
                judge_record(record)
            }
            Ok(_) => {
                self.lookup_failed(hash, &ApiError::Decode("answer for another key".into()));
                Verdict::Deny(decision::judge_from_store_alone(
                    self.worker.store.meta().synced(),
                ))
            }
            Err(e) => {
                self.lookup_failed(hash, &ApiError::Decode(e.to_string()));
                Verdict::Deny(decision::judge_from_store_alone(
                    self.worker.store.meta().synced(),
                ))
            }
        }
    }

    fn lookup_failed(&self, hash: &KeyHash, error: &ApiError) {
        self.worker.stats.bump(Counter::MissLookupErrors);
        warn!(
            "cache miss: lookup of key_hash={} failed: {error}",
            hash.short()
        );
    }

    /// A valid key: apply its rate limit, then forward it with its identity.
    fn admit(&mut self, record: &KeyRecord, source: Source) -> Action {
        let limited = Subject::of(record);
        match (self.worker.config.rate_limit, limited) {
            (RateLimitMode::Local, Some((subject, limit))) => {
                let now = clock::now_unix_secs();
                let mut spare = Leases::default();
                let mut held = self.worker.leases.try_borrow_mut();
                // Without the worker's leases (never expected) count without one: exact.
                let leases = held.as_deref_mut().unwrap_or(&mut spare);
                match local_rate_limit::check(&HostSharedData, leases, &subject, limit, now) {
                    Ok(quota) if quota.allowed => self.quota = Some(quota),
                    Ok(quota) => return self.reply_rate_limited(&quota),
                    Err(LimitError::Contended(quota)) => {
                        warn!(
                            "rate-limit counter for {} stayed contended; refusing",
                            subject.kind()
                        );
                        self.worker.stats.bump(Counter::RateLimitContended);
                        return self.reply_rate_limited(&quota);
                    }
                    // Rate limiting is not authentication: a broken counter lets the
                    // request through rather than fail it.
                    Err(LimitError::Host(status)) => {
                        warn!("rate-limit counter unavailable (status {status}); not limiting")
                    }
                }
            }
            (RateLimitMode::Global, Some((subject, limit))) => {
                let ok = set_request_header(RL_SUBJECT_HEADER, &subject.descriptor())
                    && set_request_header(
                        RL_LIMIT_HEADER,
                        &format!("{}+{}", limit.requests_per_minute, limit.burst),
                    );
                if !ok {
                    return self.reply(Denial::Unavailable);
                }
            }
            (RateLimitMode::Global, None) => {
                if !self.strip_rate_limit_headers() {
                    return self.reply(Denial::Unavailable);
                }
            }
            (RateLimitMode::Local | RateLimitMode::Off, _) => {}
        }
        self.forward_identity(record, source)
    }

    /// Global mode: a client must not choose whose budget its request is counted on.
    fn strip_rate_limit_headers(&self) -> bool {
        self.worker.config.rate_limit != RateLimitMode::Global
            || (remove_request_header(RL_SUBJECT_HEADER) && remove_request_header(RL_LIMIT_HEADER))
    }

    fn reply_rate_limited(&self, quota: &Quota) -> Action {
        self.worker.stats.bump(Counter::RateLimited);
        let headers = quota.refusal_headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if let Err(e) = hostcalls::send_http_response(429, headers, Some(RATE_LIMITED_BODY)) {
            warn!("cannot send the 429 reply: {e:?}");
        }
        Action::Pause
    }

    fn forward_identity(&self, record: &KeyRecord, source: Source) -> Action {
        let formatted;
        let (org_id, key_id) = match &self.identity {
            Some(cached) if cached.record.hash == record.hash => {
                (cached.org_id.as_str(), cached.key_id.as_str())
            }
            _ => {
                formatted = (record.org_id.hyphenated(), record.key_id.hyphenated());
                (formatted.0.as_str(), formatted.1.as_str())
            }
        };
        let mut ok =
            set_request_header(ORG_ID_HEADER, org_id) && set_request_header(KEY_ID_HEADER, key_id);
        if ok && !self.worker.config.forward_credential {
            ok = remove_request_header(source.header());
        }
        if !ok {
            // Never forward with a client's own identity headers possibly left in place.
            return self.reply(Denial::Unavailable);
        }
        self.worker.stats.bump(Counter::Allowed);
        Action::Continue
    }

    fn refuse(&self, denial: Denial) -> Action {
        let config = &self.worker.config;
        let public = !config.public_paths.is_empty()
            && request_header(":path")
                .is_some_and(|path| config.public_paths.iter().any(|rule| rule.matches(&path)));
        match decision::settle(denial, public, config.failure_mode) {
            Outcome::Reply(denial) => self.reply(denial),
            Outcome::Forward(_) => {
                if !(remove_request_header(ORG_ID_HEADER)
                    && remove_request_header(KEY_ID_HEADER)
                    && self.strip_rate_limit_headers())
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

    fn reply(&self, denial: Denial) -> Action {
        self.worker.stats.bump(match denial {
            Denial::MissingKey => Counter::Missing,
            Denial::InvalidKey => Counter::Invalid,
            Denial::Unavailable => Counter::Unavailable,
        });
        let reply = response::reply(denial, self.worker.config.invalid_key_status);
        if let Err(e) =
            hostcalls::send_http_response(reply.status, reply.headers.to_vec(), Some(reply.body))
        {
            warn!("cannot send the {} reply: {e:?}", reply.status);
        }
        Action::Pause
    }
}

/// Expiry needs the clock, a host call: only keys that expire pay for it.
fn judge_record(record: KeyRecord) -> Verdict {
    let now = if record.expires_at == 0 {
        0
    } else {
        i64::try_from(clock::now_unix_secs()).unwrap_or(i64::MAX)
    };
    decision::judge_record(record, now)
}

fn request_header(name: &str) -> Option<Vec<u8>> {
    // The bytes form: a non-UTF-8 value must not reach the SDK's String conversion.
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn set_request_header(name: &str, value: &str) -> bool {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).is_ok()
}

fn remove_request_header(name: &str) -> bool {
    hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).is_ok()
}

/// Replaces, not adds: `RateLimit` is a structured field that must appear once, so one
/// the upstream sent is overwritten by the gateway's own.
fn set_response_header(name: &str, value: &str) {
    if let Err(e) = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)) {
        warn!("cannot set the {name} response header: {e:?}");
    }
}

impl Context for AuthRequest {
    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        let Some(pending) = self.lookup.take() else {
            return;
        };
        let in_flight = &self.worker.lookups_in_flight;
        in_flight.set(in_flight.get().saturating_sub(1));
        self.on_lookup_response(pending, status_code, response_size);
    }
}

impl HttpContext for AuthRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.authenticate()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(quota) = self.quota.take() {
            set_response_header(RATELIMIT_HEADER, &quota.ratelimit_header());
        }
        Action::Continue
    }
}

impl Drop for AuthRequest {
    fn drop(&mut self) {
        // The client went away while keysync was being asked.
        if self.lookup.is_some() {
            let in_flight = &self.worker.lookups_in_flight;
            in_flight.set(in_flight.get().saturating_sub(1));
        }
    }
}
