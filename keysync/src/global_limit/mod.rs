//! Global rate limiting: what Envoy's standard rate-limit service
//! (`envoy.service.ratelimit.v3.RateLimitService`, served on keysync's gRPC port by
//! [`crate::grpc::rate_limit`]) decides, with the counts in Redis so every keysync
//! process (and so every gateway) shares them.
//!
//! Envoy's rate-limit filter sends, per request, descriptors our wasm filter filled in
//! ([`descriptor`]): who is counted (`org:<uuid>` or `key:<uuid>`) and the limit
//! (`<rpm>+<burst>`). The [`limiter`] adds the hits to the subject's counter for the
//! current clock-aligned minute ([`window`], [`counter`]) with one Lua script
//! ([`redis_counter`]) and answers `OK` or `OVER_LIMIT` with `RateLimit` headers
//! ([`response`]). When Redis cannot be reached it answers by the failure mode
//! ([`failure_mode`]), and [`redis_health`] keeps the [`metrics`] and the log current.

pub mod counter;
pub mod descriptor;
pub mod failure_mode;
pub mod limiter;
pub mod metrics;
pub mod redis_counter;
pub mod redis_health;
pub mod redis_url;
pub mod response;
pub mod window;

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use self::counter::CounterError;
use self::failure_mode::FailureMode;
use self::limiter::GlobalLimiter;
use self::metrics::RateLimitMetrics;
use self::redis_counter::RedisCounter;
use self::redis_health::{RedisHealth, PING_INTERVAL};
use self::redis_url::RedisUrl;

/// What `serve` decides rate limits with, and the PING loop to run beside it until `stop` (`None`
/// without Redis). Logs whether global rate limiting is on, and where.
pub fn start(
    redis_url: Option<&RedisUrl>,
    failure_mode: FailureMode,
    metrics: Arc<RateLimitMetrics>,
    stop: CancellationToken,
) -> Result<
    (
        GlobalLimiter<RedisCounter>,
        Option<impl Future<Output = ()> + Send + 'static>,
    ),
    CounterError,
> {
    let Some(url) = redis_url else {
        info!("global rate limiting off: REDIS_URL not set, ShouldRateLimit answers OK");
        return Ok((GlobalLimiter::disabled(), None));
    };
    let counter = Arc::new(RedisCounter::new(url)?);
    let health = Arc::new(RedisHealth::new(metrics, failure_mode));
    info!("global rate limiting on: redis={url} failure_mode={failure_mode}");
    let pings = redis_health::run_pings(counter.clone(), health.clone(), PING_INTERVAL, stop);
    let limiter = GlobalLimiter::counting(counter, health, failure_mode);
    Ok((limiter, Some(pings)))
}
