//! The standard gRPC health service (`grpc.health.v1.Health`) on keysync's gRPC port, so
//! Envoy's cluster health checking (`grpc_health_check`) can route gateways away from a
//! keysync that is cut off from PostgreSQL. The overall status (service name `""`),
//! `keysync.v1.KeySync` and `envoy.service.auth.v3.Authorization` follow whether keysync
//! is serving ([`crate::sync::confirmation`]: the key set confirmed within
//! `KEYSYNC_MAX_UNCONFIRMED`); the rate-limit service needs no key set and is always
//! SERVING.

use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// The services whose status follows the key set's confirmation.
pub const KEY_SET_SERVICES: [&str; 3] = [
    "",
    "keysync.v1.KeySync",
    "envoy.service.auth.v3.Authorization",
];

/// The service that does not depend on the key set.
pub const RATE_LIMIT_SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";

/// Tells the health service whether keysync is serving.
pub async fn report(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for service in KEY_SET_SERVICES {
        reporter.set_service_status(service, status).await;
    }
    reporter
        .set_service_status(RATE_LIMIT_SERVICE, ServingStatus::Serving)
        .await;
}
