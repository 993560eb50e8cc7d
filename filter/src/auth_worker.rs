//! What the auth filter keeps per Envoy worker: its configuration, the host, batched
//! stats, the negative cache, the count of lookups in flight, its rate-limit leases,
//! its copies of recently used records and its usage tally. The worker's tick keeps them
//! honest.

use crate::config::{AuthConfig, RateLimitMode, UsageDurations};
use crate::duration_sample::DurationSample;
use crate::host::{Action, Host};
use crate::key_store::KeyStore;
use crate::local_rate_limit::{self, Decision, Leases, LimitError, Quota};
use crate::negative_cache::NegativeCache;
use crate::quota::{self, QuotaError, QuotaView, Refusal, Take};
use crate::record::KeyRecord;
use crate::record_cache::{CachedRecord, RecordCache};
use crate::schedule::millis;
use crate::staleness::StoreAge;
use crate::stats::{Counter, RequestStats};
use crate::store_meta::NEVER;
use crate::usage::{self, Counts, Tally, UsageKey};
use keysync_contract::credential::Source;
use keysync_contract::limit::Limit;
use keysync_contract::rate_limit_headers::{
    self, POLICY_HEADER, RATELIMIT_HEADER, RETRY_AFTER_HEADER,
};
use keysync_contract::rate_window::Window;
use keysync_contract::reply::{self as response, Denial, QUOTA_EXCEEDED_BODY, RATE_LIMITED_BODY};
use keysync_contract::subject::Subject;
use keysync_contract::{
    KEY_ID_HEADER, ORG_ID_HEADER, RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_SUBJECT_HEADER,
};
use log::{info, warn};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// How often each worker flushes its request counters to Envoy's stats, gives back
/// unused rate-limit leases, drops stale record copies and checks staleness.
pub const WORKER_TICK: Duration = Duration::from_millis(250);

/// Records each worker keeps (about 100 bytes each).
const RECORD_CACHE_ENTRIES: usize = 10_000;

/// Ticks a request waits for other workers' leases before it is refused anyway: their
/// ticks give leases back within one, unless the machine is very busy.
const MAX_WAIT_TICKS: u32 = 4;

/// What counting a request against its local rate limit said.
pub enum Counted {
    /// Go on (with the quota to report, or none when the counter could not count).
    Allowed(Option<Quota>),
    /// The 429 was sent.
    Refused,
    /// Other workers hold leased requests: the decision waits for the next tick.
    Wait,
}

/// The credential headers of an accepted request, removed before it goes upstream
/// (unless `forward_credential`): `x-api-key` always, whichever header the key came in,
/// and `Authorization` when it carries a credential
/// (`credential::authorization_is_credential`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Carried {
    pub authorization: bool,
}

/// A request waiting for a rate-limit decision, shared by the request and its worker.
pub struct RateWait {
    /// The rate limit it waits for; `None` (or once counted) when it waits for a quota
    /// lease only.
    pub rate_limit: Option<(Subject, Limit)>,
    pub rate_counted: Cell<bool>,
    /// The quota subjects that admitted it already (see [`QuotaTaken`]).
    pub quota_taken: Cell<QuotaTaken>,
    pub identity: Rc<CachedRecord>,
    pub carried: Carried,
    /// Set when the worker allowed it: the request reports it on its response.
    pub quota: Cell<Option<Quota>>,
    /// Set when the worker's tick answered it itself (its usage outcome: refused by the
    /// rate limit, or failed).
    pub answered: Cell<Option<u8>>,
}

/// Which of a request's quotas (its key's, its organization's) admitted it already: a
/// request parked for one is never counted twice against the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaTaken {
    pub key: bool,
    pub org: bool,
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

/// Whether this worker counts usage, as the sync service said (`usage::Meta`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metering {
    /// Not said yet (the sync service is starting): count, and keep the counts in the
    /// tally (bounded) until the slots exist.
    Unknown,
    On,
    Off,
}

struct Waiting {
    context_id: u32,
    wait: Rc<RateWait>,
    ticks_left: u32,
}

pub struct AuthWorker<H> {
    pub host: H,
    pub config: AuthConfig,
    pub stats: RequestStats,
    pub negative: RefCell<NegativeCache>,
    pub lookups_in_flight: Cell<u32>,
    /// Set on the tick when the store's data was last confirmed against PostgreSQL
    /// longer ago than `max_staleness` (or never); read per request at no host-call
    /// cost. A stale store is not trusted: keys are then asked of keysync, whose answers
    /// carry their own age.
    pub stale: Cell<bool>,
    store_age: RefCell<StoreAge>,
    /// Local rate limiting: requests this worker took from shared counters, not used yet.
    pub leases: RefCell<Leases>,
    waiting: RefCell<Vec<Waiting>>,
    pub records: RefCell<RecordCache>,
    /// Usage counted since the last tick (see `usage`): in memory, no host call.
    usage: RefCell<Tally>,
    metering: Cell<Metering>,
    /// Ticks so far (wrapping): the period of `duration_sample`.
    ticks: Cell<u32>,
    /// The subjects with a monthly quota (see `quota`), re-read when their list changes.
    quotas: RefCell<QuotaView>,
}

impl<H: Host> AuthWorker<H> {
    pub fn new(host: H, config: AuthConfig) -> Self {
        let negative = NegativeCache::new(
            config.miss_lookup.negative_cache_entries,
            u64::try_from(config.miss_lookup.negative_ttl.as_millis()).unwrap_or(u64::MAX),
        );
        // Until the first tick has looked, nothing is trusted.
        let stale = config.max_staleness.is_some();
        AuthWorker {
            stats: RequestStats::define(&host),
            host,
            config,
            negative: RefCell::new(negative),
            lookups_in_flight: Cell::new(0),
            stale: Cell::new(stale),
            store_age: RefCell::new(StoreAge::default()),
            leases: RefCell::new(Leases::default()),
            waiting: RefCell::new(Vec::new()),
            records: RefCell::new(RecordCache::new(RECORD_CACHE_ENTRIES)),
            usage: RefCell::new(Tally::default()),
            metering: Cell::new(Metering::Unknown),
            ticks: Cell::new(0),
            quotas: RefCell::new(QuotaView::default()),
        }
    }

    /// The shared key store, read through this worker's host.
    pub fn store(&self) -> KeyStore<&H> {
        KeyStore::new(&self.host)
    }

    pub fn on_tick(&self) {
        self.ticks.set(self.ticks.get().wrapping_add(1));
        self.give_back_leases();
        self.decide_waiting();
        self.merge_usage();
        if let Ok(mut quotas) = self.quotas.try_borrow_mut() {
            quotas.refresh(&self.host);
        }
        self.stats
            .add(Counter::BadPolicies, crate::policy::take_defects());
        self.stats.flush(&self.host);
        self.sync_record_cache();
        self.check_staleness();
    }

    pub fn metering(&self) -> bool {
        self.metering.get() != Metering::Off
    }

    /// Whether usage metering times this request of a key (whose sample it is).
    pub fn times(&self, sample: Option<&DurationSample>) -> bool {
        if !self.metering() {
            return false;
        }
        match (self.config.usage_durations, sample) {
            (UsageDurations::Sampled, Some(sample)) => sample.take(self.ticks.get()),
            // A record read for this request alone (keysync's answer to a miss).
            (UsageDurations::Sampled, None) | (UsageDurations::All, _) => true,
        }
    }

    /// Counts one request of a recognized key. No host call.
    pub fn count_usage(&self, key: UsageKey, counts: Counts) {
        if self.metering() {
            if let Ok(mut tally) = self.usage.try_borrow_mut() {
                tally.record(key, counts);
            }
        }
    }

    /// Counts one request without a recognized key. No host call.
    pub fn count_unattributed(&self) {
        if self.metering() {
            if let Ok(mut tally) = self.usage.try_borrow_mut() {
                tally.unattributed();
            }
        }
    }

    /// Adds what this worker counted since the last tick into shared data, where the
    /// sync service reads it. One read of the metering settings a tick, and a
    /// compare-and-swap per slot touched.
    fn merge_usage(&self) {
        let metering = match usage::Meta::read(&self.host) {
            None => Metering::Unknown,
            Some(meta) if meta.enabled => Metering::On,
            Some(_) => Metering::Off,
        };
        self.metering.set(metering);
        let Ok(mut tally) = self.usage.try_borrow_mut() else {
            return;
        };
        match metering {
            Metering::Off => *tally = Tally::default(),
            // The slots may not exist yet; the tally holds on (it is bounded).
            Metering::Unknown => {}
            Metering::On if tally.is_empty() => {}
            Metering::On => {
                let merged = usage::merge(&self.host, &mut tally);
                if merged.dropped > 0 {
                    self.stats.add(Counter::UsageDropped, merged.dropped);
                }
            }
        }
    }

    /// Drops the worker's record copies if the store moved since they were made.
    fn sync_record_cache(&self) {
        let generation = self.store().generation();
        if let Ok(mut records) = self.records.try_borrow_mut() {
            records.sync_with(generation);
        }
    }

    /// Unused rate-limit leases go back to the shared counters.
    fn give_back_leases(&self) {
        if let Ok(mut leases) = self.leases.try_borrow_mut() {
            local_rate_limit::give_back(&self.host, &mut leases, self.host.now_unix_secs());
        }
    }

    /// Whether the store is too stale to trust, looking again if it was: a store that
    /// was stale at the last tick may have been confirmed since (the first sync after
    /// start, keysync back), and a request should not wait for the next tick to see it.
    /// Costs a shared-data read only while stale.
    pub fn store_is_stale(&self) -> bool {
        if self.stale.get() {
            self.check_staleness();
        }
        self.stale.get()
    }

    /// Is the store too stale to trust? Never confirmed counts as stale.
    fn check_staleness(&self) {
        let Some(max) = self.config.max_staleness else {
            return;
        };
        let meta = self.store().meta();
        let Ok(mut store_age) = self.store_age.try_borrow_mut() else {
            return;
        };
        let age = store_age.age_ms(&meta, self.host.now_unix_ms());
        let stale = age > millis(max);
        if stale != self.stale.get() {
            if stale && age == NEVER {
                info!("the store has not been synced yet: keys are asked of keysync");
            } else if stale {
                warn!(
                    "the store was last confirmed against PostgreSQL {}s ago, over max_staleness \
                     ({}s): it is not trusted; keys are asked of keysync, or get 503",
                    age / 1000,
                    max.as_secs()
                );
            } else {
                info!(
                    "the store is confirmed again ({}s ago): serving keys from it",
                    age / 1000
                );
            }
            self.stale.set(stale);
        }
    }

    /// Counts one request of a valid key against its local limit; sends the 429 when
    /// it is over.
    pub fn count(&self, subject: &Subject, limit: Limit) -> Counted {
        let now = self.host.now_unix_secs();
        let mut spare = Leases::default();
        let mut held = self.leases.try_borrow_mut();
        // Without the worker's leases (never expected) count without one: exact.
        let leases = held.as_deref_mut().unwrap_or(&mut spare);
        match local_rate_limit::check(&self.host, leases, subject, limit, now) {
            Ok(Decision::Allow(quota)) => Counted::Allowed(Some(quota)),
            Ok(Decision::Refuse(quota)) => {
                self.reply_rate_limited(&quota);
                Counted::Refused
            }
            Ok(Decision::Wait) => Counted::Wait,
            Err(LimitError::Contended(quota)) => {
                warn!(
                    "rate-limit counter for {} stayed contended; refusing",
                    subject.kind()
                );
                self.stats.bump(Counter::RateLimitContended);
                self.reply_rate_limited(&quota);
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

    /// Parks a request until the next tick decides its rate limit.
    pub fn wait(&self, context_id: u32, wait: Rc<RateWait>) {
        if let Ok(mut waiting) = self.waiting.try_borrow_mut() {
            waiting.push(Waiting {
                context_id,
                wait,
                ticks_left: MAX_WAIT_TICKS,
            });
        }
    }

    /// On the tick, after the leases went back: decides the waiting requests, each in
    /// its own context.
    fn decide_waiting(&self) {
        let Ok(mut waiting) = self.waiting.try_borrow_mut() else {
            return;
        };
        if waiting.is_empty() {
            return;
        }
        let parked = std::mem::take(&mut *waiting);
        drop(waiting);
        let mut still = Vec::new();
        for mut parked in parked {
            // The request's own handle is gone: the client left.
            if Rc::strong_count(&parked.wait) == 1 {
                continue;
            }
            if self.host.set_effective_context(parked.context_id).is_err() {
                continue;
            }
            let wait = &parked.wait;
            if let Some((subject, limit)) = wait.rate_limit.filter(|_| !wait.rate_counted.get()) {
                match self.count(&subject, limit) {
                    Counted::Allowed(quota) => {
                        wait.quota.set(quota);
                        wait.rate_counted.set(true);
                    }
                    Counted::Refused => {
                        wait.answered.set(Some(usage::outcome::RATE_LIMITED));
                        continue;
                    }
                    Counted::Wait if parked.ticks_left > 0 => {
                        parked.ticks_left -= 1;
                        still.push(parked);
                        continue;
                    }
                    Counted::Wait => {
                        warn!(
                            "rate-limit leases for {} were not given back in time; refusing",
                            subject.kind()
                        );
                        let window = Window::at(self.host.now_unix_secs());
                        wait.answered.set(Some(usage::outcome::RATE_LIMITED));
                        self.reply_rate_limited(&Quota {
                            allowed: false,
                            budget: limit.budget(),
                            remaining: 0,
                            reset_secs: window.seconds_left,
                        });
                        continue;
                    }
                }
            }
            let may_wait = parked.ticks_left > 0;
            match self.check_quotas(&wait.identity.record, &wait.quota_taken, may_wait) {
                QuotaCheck::Admit => {
                    if self.forward(&wait.identity, wait.carried) == Action::Continue {
                        if let Err(e) = self.host.resume_request() {
                            warn!("cannot resume a request after its rate limit: {e}");
                        }
                    } else {
                        wait.answered.set(Some(usage::outcome::OTHER));
                    }
                }
                QuotaCheck::Refused => wait.answered.set(Some(usage::outcome::QUOTA)),
                QuotaCheck::Pending => {
                    parked.ticks_left = parked.ticks_left.saturating_sub(1);
                    still.push(parked);
                }
            }
        }
        if let Ok(mut waiting) = self.waiting.try_borrow_mut() {
            waiting.extend(still);
        }
    }

    /// Forwards an accepted request with the gateway's identity headers, without any
    /// credential (unless `forward_credential`): also one the filter did not use, such
    /// as an `x-api-key` beside the `Authorization` that decided.
    pub fn forward(&self, identity: &CachedRecord, carried: Carried) -> Action {
        let host = &self.host;
        let mut written = host
            .set_request_header(ORG_ID_HEADER, &identity.org_id)
            .and_then(|()| host.set_request_header(KEY_ID_HEADER, &identity.key_id));
        if written.is_ok() && !self.config.forward_credential {
            if carried.authorization {
                written = host.remove_request_header(Source::Authorization.header());
            }
            written =
                written.and_then(|()| host.remove_request_header(Source::ApiKeyHeader.header()));
        }
        if written.is_err() {
            // Never forward with a client's own identity headers possibly left in place.
            return self.reply(Denial::Unavailable);
        }
        self.stats.bump(Counter::Allowed);
        Action::Continue
    }

    /// Global mode: a client must not choose whose budget its request is counted on.
    pub fn strip_rate_limit_headers(&self) -> bool {
        self.config.rate_limit != RateLimitMode::Global
            || (self
                .host
                .remove_request_header(RATE_LIMIT_SUBJECT_HEADER)
                .is_ok()
                && self
                    .host
                    .remove_request_header(RATE_LIMIT_LIMIT_HEADER)
                    .is_ok())
    }

    pub fn reply(&self, denial: Denial) -> Action {
        self.stats.bump(match denial {
            Denial::MissingKey => Counter::Missing,
            Denial::InvalidKey => Counter::Invalid,
            Denial::Unavailable => Counter::Unavailable,
            Denial::InsufficientScope => Counter::InsufficientScope,
            Denial::IpNotAllowed => Counter::IpNotAllowed,
        });
        let reply = response::reply(denial, self.config.invalid_key_status);
        if let Err(e) = self
            .host
            .send_reply(reply.status, reply.headers, reply.body)
        {
            warn!("cannot send the {} reply: {e}", reply.status);
        }
        Action::Pause
    }

    pub fn reply_rate_limited(&self, quota: &Quota) {
        self.stats.bump(Counter::RateLimited);
        let headers = quota.refusal_headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if let Err(e) = self.host.send_reply(429, &headers, RATE_LIMITED_BODY) {
            warn!("cannot send the 429 reply: {e}");
        }
    }

    /// Monthly quotas: the key's own, then its organization's (each at most once per
    /// request: `taken`). Sends the 429 when either is used up, or when a lease is on
    /// its way and the request may not wait (`may_wait`) for it any longer. A key of
    /// subjects without a quota costs a set lookup (none at all while no quota exists).
    pub fn check_quotas(
        &self,
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
            self.reply_quota_exceeded(&refusal);
            return QuotaCheck::Refused;
        }
        QuotaCheck::Admit
    }

    fn reply_quota_exceeded(&self, refusal: &Refusal) {
        self.stats.bump(Counter::QuotaExceeded);
        let (json_name, json_value) = response::JSON;
        let retry_after = refusal.retry_after_secs.to_string();
        let policy = rate_limit_headers::policy_item_over(refusal.limit, refusal.window_secs);
        let ratelimit = rate_limit_headers::ratelimit(refusal.limit, 0, refusal.reset_secs);
        let headers = [
            (json_name, json_value),
            (RETRY_AFTER_HEADER, retry_after.as_str()),
            (POLICY_HEADER, policy.as_str()),
            (RATELIMIT_HEADER, ratelimit.as_str()),
        ];
        if let Err(e) = self.host.send_reply(429, &headers, QUOTA_EXCEEDED_BODY) {
            warn!("cannot send the 429 reply: {e}");
        }
    }

    pub fn may_start_lookup(&self) -> bool {
        self.config.miss_lookup.enabled
            && self.lookups_in_flight.get() < self.config.miss_lookup.max_in_flight
    }
}
