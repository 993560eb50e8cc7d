//! What `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` decides (served by
//! [`crate::grpc::rate_limit`]): counts each request against the budget its descriptors
//! name, in Redis, and tells Envoy whether to let it through.
//!
//! Without `REDIS_URL` there is nothing to count with and every call is answered `OK`.

use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tracing::warn;

use super::counter::{counter_name, CounterError, Hit, HitCounter};
use super::descriptor::{self, Descriptor};
use super::failure_mode::FailureMode;
use super::metrics::RateLimitResult;
use super::redis_health::RedisHealth;
use super::response::{self, Counted};
use super::window::{Usage, Window};
use crate::clock::now_unix;
use crate::log_throttle::{held_back_note, LogThrottle, LOG_PERIOD};

/// What the service counts with.
#[derive(Debug)]
struct Counting<C> {
    counter: Arc<C>,
    health: Arc<RedisHealth>,
    failure_mode: FailureMode,
}

/// The decisions; all state is shared.
#[derive(Debug)]
pub struct GlobalLimiter<C> {
    /// `None` without `REDIS_URL`.
    counting: Option<Counting<C>>,
    /// Unix seconds now; a parameter so tests can stand at a window's edge.
    clock: fn() -> u64,
    bad_descriptors: LogThrottle,
}

/// One descriptor of ours and the hits the request adds to it.
#[derive(Debug, Clone, Copy)]
struct Ours {
    descriptor: Descriptor,
    hits: u64,
}

impl<C: HitCounter> GlobalLimiter<C> {
    /// Counts with `counter`, reporting to `health`, answering by `failure_mode` when
    /// the counter fails.
    pub fn counting(counter: Arc<C>, health: Arc<RedisHealth>, failure_mode: FailureMode) -> Self {
        GlobalLimiter {
            counting: Some(Counting {
                counter,
                health,
                failure_mode,
            }),
            clock: unix_now,
            bad_descriptors: LogThrottle::new(LOG_PERIOD),
        }
    }

    /// Counts nothing and answers `OK` (no `REDIS_URL`).
    pub fn disabled() -> Self {
        GlobalLimiter {
            counting: None,
            clock: unix_now,
            bad_descriptors: LogThrottle::new(LOG_PERIOD),
        }
    }

    /// The same limiter reading the time from `clock` (unix seconds).
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    /// The answer to one request, and how it ended for the metrics.
    pub async fn decide(&self, request: &RateLimitRequest) -> (RateLimitResponse, RateLimitResult) {
        let ours: Vec<Option<Ours>> = request
            .descriptors
            .iter()
            .map(|descriptor| self.ours(descriptor, request.hits_addend))
            .collect();
        let mask: Vec<bool> = ours.iter().map(Option::is_some).collect();
        let Some(counting) = self.counting.as_ref().filter(|_| mask.contains(&true)) else {
            return (response::uncounted(&mask, Code::Ok), RateLimitResult::Ok);
        };
        let failed = || {
            (
                response::uncounted(&mask, counting.failure_mode.code()),
                RateLimitResult::Error,
            )
        };
        if !counting.health.may_call(Instant::now()) {
            return failed();
        }
        let window = Window::at((self.clock)());
        let hits: Vec<Hit> = ours
            .iter()
            .flatten()
            .map(|ours| Hit {
                counter: counter_name(&ours.descriptor.subject, window),
                amount: ours.hits,
            })
            .collect();
        let counts = match counting.counter.add(&hits).await {
            Ok(counts) if counts.len() == hits.len() => counts,
            Ok(counts) => {
                let error = CounterError::Reply(format!(
                    "{} counts for {} counters",
                    counts.len(),
                    hits.len()
                ));
                counting.health.record_failure(Instant::now(), &error);
                return failed();
            }
            Err(error) => {
                counting.health.record_failure(Instant::now(), &error);
                return failed();
            }
        };
        counting.health.record_success();
        let mut counts = counts.into_iter();
        let counted: Vec<Option<Counted>> = ours
            .iter()
            .map(|ours| {
                let ours = ours.as_ref()?;
                Some(Counted {
                    descriptor: ours.descriptor,
                    usage: Usage {
                        budget: u64::from(ours.descriptor.limit.budget()),
                        count: counts.next()?,
                    },
                })
            })
            .collect();
        let over = counted.iter().flatten().any(|c| c.usage.over_limit());
        let result = if over {
            RateLimitResult::OverLimit
        } else {
            RateLimitResult::Ok
        };
        (response::counted(&counted, window), result)
    }

    /// Our descriptor and its hits, or `None` for a descriptor that is not ours (one
    /// whose entries are malformed is logged, at most once per [`LOG_PERIOD`]).
    fn ours(&self, descriptor: &RateLimitDescriptor, request_hits: u32) -> Option<Ours> {
        // A refund (negative hits) is not something our gateway asks for.
        if descriptor.is_negative_hits {
            return None;
        }
        let entries = descriptor
            .entries
            .iter()
            .map(|entry| (entry.key.as_str(), entry.value.as_str()));
        let parsed = descriptor::parse(entries).and_then(|found| {
            found
                .map(|descriptor_of_ours| {
                    Ok(Ours {
                        descriptor: descriptor_of_ours,
                        hits: descriptor::hits(
                            descriptor.hits_addend.map(|h| h.value),
                            request_hits,
                        )?,
                    })
                })
                .transpose()
        });
        match parsed {
            Ok(ours) => ours,
            Err(error) => {
                if let Some(held_back) = self.bad_descriptors.admit(Instant::now()) {
                    warn!(
                        "rate limit descriptor ignored: {error}{}",
                        held_back_note(held_back)
                    );
                }
                None
            }
        }
    }
}

/// Unix seconds now, as the windows count them (0 before the epoch).
fn unix_now() -> u64 {
    u64::try_from(now_unix()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::google::protobuf::UInt64Value;

    use super::*;
    use crate::global_limit::descriptor::{LIMIT_ENTRY, SUBJECT_ENTRY};
    use crate::metrics::Metrics;

    const ORG: &str = "org:6f1c1f58-5d7e-4a7e-9d0e-0a1b2c3d4e5f";
    const KEY: &str = "key:0b6b1e1e-7c9f-4a57-8b1a-5f0e9d2c3b4a";

    /// 20 s into a minute: 40 s left.
    fn clock() -> u64 {
        1_700_000_000
    }

    /// Counters in memory; `down` makes every call fail.
    #[derive(Default)]
    struct Memory {
        counts: Mutex<HashMap<String, u64>>,
        down: AtomicBool,
        calls: AtomicUsize,
    }

    impl HitCounter for Memory {
        async fn add(&self, hits: &[Hit]) -> Result<Vec<u64>, CounterError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(CounterError::Redis("connection refused".into()));
            }
            let mut counts = self.counts.lock().unwrap();
            Ok(hits
                .iter()
                .map(|hit| {
                    let count = counts.entry(hit.counter.clone()).or_default();
                    *count += hit.amount;
                    *count
                })
                .collect())
        }

        async fn ping(&self) -> Result<(), CounterError> {
            Ok(())
        }
    }

    fn service(mode: FailureMode) -> (Arc<Memory>, Metrics, GlobalLimiter<Memory>) {
        let metrics = Metrics::new();
        let memory = Arc::new(Memory::default());
        let health = Arc::new(RedisHealth::new(metrics.rate_limit.clone(), mode));
        let service = GlobalLimiter::counting(memory.clone(), health, mode).with_clock(clock);
        (memory, metrics, service)
    }

    fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(key, value)| Entry {
                    key: (*key).to_owned(),
                    value: (*value).to_owned(),
                })
                .collect(),
            ..RateLimitDescriptor::default()
        }
    }

    fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
        RateLimitRequest {
            domain: "keysync".to_owned(),
            descriptors,
            hits_addend: 0,
        }
    }

    fn limited(subject: &str, limit: &str) -> RateLimitRequest {
        request(vec![descriptor(&[
            (SUBJECT_ENTRY, subject),
            (LIMIT_ENTRY, limit),
        ])])
    }

    fn header<'a>(response: &'a RateLimitResponse, name: &str) -> Option<&'a str> {
        response
            .response_headers_to_add
            .iter()
            .find(|h| h.key == name)
            .map(|h| h.value.as_str())
    }

    #[tokio::test]
    async fn exactly_the_budget_passes_then_over_limit() {
        let (_, metrics, service) = service(FailureMode::Open);
        for n in 1..=12u64 {
            let (response, result) = service.decide(&limited(ORG, "10+2")).await;
            assert_eq!(response.overall_code, Code::Ok as i32, "request {n}");
            assert_eq!(result, RateLimitResult::Ok);
            assert_eq!(
                header(&response, "ratelimit"),
                Some(format!("limit=12, remaining={}, reset=40", 12 - n).as_str())
            );
        }
        let (response, result) = service.decide(&limited(ORG, "10+2")).await;
        assert_eq!(response.overall_code, Code::OverLimit as i32);
        assert_eq!(result, RateLimitResult::OverLimit);
        assert_eq!(header(&response, "retry-after"), Some("40"));
        assert_eq!(header(&response, "ratelimit-policy"), Some("12;w=60"));
        assert!(metrics.encode().contains("keysync_ratelimit_redis_up 1"));
    }

    #[tokio::test]
    async fn subjects_are_counted_apart() {
        let (_, _, service) = service(FailureMode::Open);
        assert_eq!(
            service.decide(&limited(ORG, "1+0")).await.1,
            RateLimitResult::Ok
        );
        assert_eq!(
            service.decide(&limited(KEY, "1+0")).await.1,
            RateLimitResult::Ok
        );
        assert_eq!(
            service.decide(&limited(ORG, "1+0")).await.1,
            RateLimitResult::OverLimit
        );
    }

    #[tokio::test]
    async fn hits_addend_counts_and_zero_means_one() {
        let (memory, _, service) = service(FailureMode::Open);
        let mut heavy = limited(ORG, "10+0");
        heavy.hits_addend = 7;
        service.decide(&heavy).await;
        let mut own = limited(ORG, "10+0");
        own.descriptors[0].hits_addend = Some(UInt64Value { value: 2 });
        own.hits_addend = 50;
        service.decide(&own).await;
        let (response, _) = service.decide(&limited(ORG, "10+0")).await;
        assert_eq!(response.statuses[0].limit_remaining, 0);
        let counts = memory.counts.lock().unwrap();
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), [10]);
    }

    #[tokio::test]
    async fn descriptors_over_the_caps_are_not_counted() {
        let (memory, _, service) = service(FailureMode::Closed);
        let mut burning = limited(ORG, "10+0");
        burning.descriptors[0].hits_addend = Some(UInt64Value {
            value: descriptor::MAX_HITS + 1,
        });
        let mut request_wide = limited(ORG, "10+0");
        request_wide.hits_addend = u32::MAX;
        for request in [burning, request_wide, limited(ORG, "2147483648+0")] {
            let (response, result) = service.decide(&request).await;
            assert_eq!(result, RateLimitResult::Ok);
            assert_eq!(response.overall_code, Code::Ok as i32);
        }
        assert!(memory.counts.lock().unwrap().is_empty(), "nothing counted");
        assert_eq!(memory.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn descriptors_not_ours_are_ok_and_not_counted() {
        let (memory, _, service) = service(FailureMode::Closed);
        let (response, result) = service
            .decide(&request(vec![
                descriptor(&[("generic_key", "x")]),
                descriptor(&[(SUBJECT_ENTRY, ORG)]),
                descriptor(&[(SUBJECT_ENTRY, "org:"), (LIMIT_ENTRY, "100+0")]),
                descriptor(&[(SUBJECT_ENTRY, ORG), (LIMIT_ENTRY, "100+")]),
            ]))
            .await;
        assert_eq!(result, RateLimitResult::Ok);
        assert_eq!(response.overall_code, Code::Ok as i32);
        assert_eq!(response.statuses.len(), 4);
        assert!(response.response_headers_to_add.is_empty());
        assert_eq!(memory.calls.load(Ordering::SeqCst), 0);

        let mut refund = limited(ORG, "1+0");
        refund.descriptors[0].is_negative_hits = true;
        assert_eq!(service.decide(&refund).await.1, RateLimitResult::Ok);
        assert_eq!(memory.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_mixed_request_counts_only_ours() {
        let (memory, _, service) = service(FailureMode::Open);
        let (response, _) = service
            .decide(&request(vec![
                descriptor(&[("generic_key", "x")]),
                descriptor(&[(SUBJECT_ENTRY, KEY), (LIMIT_ENTRY, "5+0")]),
            ]))
            .await;
        assert_eq!(response.statuses[0].current_limit, None);
        assert_eq!(response.statuses[1].limit_remaining, 4);
        assert_eq!(memory.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn redis_down_fails_open_by_default() {
        let (memory, metrics, service) = service(FailureMode::Open);
        memory.down.store(true, Ordering::SeqCst);
        let (response, result) = service.decide(&limited(ORG, "1+0")).await;
        assert_eq!(result, RateLimitResult::Error);
        assert_eq!(response.overall_code, Code::Ok as i32);
        assert!(response.response_headers_to_add.is_empty());
        let text = metrics.encode();
        assert!(
            text.contains("keysync_ratelimit_redis_errors_total 1"),
            "{text}"
        );
        assert!(text.contains("keysync_ratelimit_redis_up 0"), "{text}");

        // Held off: the next call does not wait for Redis at all.
        let (response, result) = service.decide(&limited(ORG, "1+0")).await;
        assert_eq!(result, RateLimitResult::Error);
        assert_eq!(response.overall_code, Code::Ok as i32);
        assert_eq!(memory.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn redis_down_fails_closed_when_asked() {
        let (memory, _, service) = service(FailureMode::Closed);
        memory.down.store(true, Ordering::SeqCst);
        let (response, result) = service.decide(&limited(KEY, "100+0")).await;
        assert_eq!(result, RateLimitResult::Error);
        assert_eq!(response.overall_code, Code::OverLimit as i32);
        assert_eq!(response.statuses[0].code, Code::OverLimit as i32);
        // Requests with nothing of ours still pass.
        let (response, _) = service
            .decide(&request(vec![descriptor(&[("generic_key", "x")])]))
            .await;
        assert_eq!(response.overall_code, Code::Ok as i32);
    }

    #[tokio::test]
    async fn counting_resumes_once_redis_answers_again() {
        let (memory, metrics, service) = service(FailureMode::Open);
        memory.down.store(true, Ordering::SeqCst);
        service.decide(&limited(ORG, "1+0")).await;
        memory.down.store(false, Ordering::SeqCst);
        // What the periodic PING does when Redis is back.
        service.counting.as_ref().unwrap().health.record_success();
        let (response, result) = service.decide(&limited(ORG, "1+0")).await;
        assert_eq!(result, RateLimitResult::Ok);
        assert_eq!(
            header(&response, "ratelimit"),
            Some("limit=1, remaining=0, reset=40")
        );
        assert!(metrics.encode().contains("keysync_ratelimit_redis_up 1"));
    }

    #[tokio::test]
    async fn without_redis_everything_is_ok() {
        let service = GlobalLimiter::<Memory>::disabled();
        let (response, result) = service.decide(&limited(ORG, "1+0")).await;
        assert_eq!(result, RateLimitResult::Ok);
        assert_eq!(response.overall_code, Code::Ok as i32);
        assert!(response.response_headers_to_add.is_empty());
    }
}
