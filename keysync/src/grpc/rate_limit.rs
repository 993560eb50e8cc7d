//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, served next to
//! `keysync.v1.KeySync` on the gRPC port: each call decided by the
//! [`GlobalLimiter`] (counting in Redis), timed and counted.

use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic::{Request, Response, Status};

use crate::global_limit::counter::HitCounter;
use crate::global_limit::limiter::GlobalLimiter;
use crate::global_limit::metrics::RateLimitMetrics;

/// The service; all state is shared, so it is cheap to hand to tonic.
#[derive(Debug)]
pub struct GlobalRateLimitService<C> {
    limiter: GlobalLimiter<C>,
    metrics: Arc<RateLimitMetrics>,
}

impl<C: HitCounter> GlobalRateLimitService<C> {
    pub fn new(limiter: GlobalLimiter<C>, metrics: Arc<RateLimitMetrics>) -> Self {
        GlobalRateLimitService { limiter, metrics }
    }
}

#[tonic::async_trait]
impl<C: HitCounter> RateLimitService for GlobalRateLimitService<C> {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let started = Instant::now();
        let (response, result) = self.limiter.decide(request.get_ref()).await;
        self.metrics.record_call(result, started.elapsed());
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;

    use super::*;
    use crate::global_limit::counter::{CounterError, Hit};
    use crate::global_limit::descriptor::{LIMIT_ENTRY, SUBJECT_ENTRY};
    use crate::metrics::Metrics;

    /// Never called: without Redis nothing is counted.
    struct NoCounter;

    impl HitCounter for NoCounter {
        async fn add(&self, _: &[Hit]) -> Result<Vec<u64>, CounterError> {
            unreachable!("a disabled limiter counts nothing")
        }

        async fn ping(&self) -> Result<(), CounterError> {
            unreachable!("a disabled limiter pings nothing")
        }
    }

    #[tokio::test]
    async fn every_call_is_answered_and_counted() {
        let metrics = Metrics::new();
        let service = GlobalRateLimitService::new(
            GlobalLimiter::<NoCounter>::disabled(),
            metrics.rate_limit.clone(),
        );
        let request = RateLimitRequest {
            domain: "keysync".to_owned(),
            descriptors: vec![RateLimitDescriptor {
                entries: [
                    (SUBJECT_ENTRY, "org:6f1c1f58-5d7e-4a7e-9d0e-0a1b2c3d4e5f"),
                    (LIMIT_ENTRY, "1+0"),
                ]
                .into_iter()
                .map(|(key, value)| Entry {
                    key: key.to_owned(),
                    value: value.to_owned(),
                })
                .collect(),
                ..Default::default()
            }],
            hits_addend: 1,
        };
        let answer = service
            .should_rate_limit(Request::new(request))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.overall_code, Code::Ok as i32);
        let text = metrics.encode();
        assert!(
            text.contains("keysync_ratelimit_requests_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("keysync_ratelimit_duration_seconds_count 1"),
            "{text}"
        );
    }
}
