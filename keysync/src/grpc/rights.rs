//! What a gRPC token lets its holder call. A gateway token may call everything; a
//! read-only token only what serves keys and changes nothing: the key set (`ListKeys`,
//! `LookupKey`, `WatchKeys`), health checks, and ext_authz's `Check`, which answers for a
//! key the caller must already hold, as the gateway would, and records nothing.
//!
//! Everything else needs a gateway token: `ReportUsage` and `AcquireQuota` (they write
//! what billing and quotas read) and the rate-limit service's `ShouldRateLimit`, which
//! spends the budget of whatever organization or key it names: a read-only holder could
//! otherwise exhaust any tenant's global rate limit from the ids `ListKeys` gives it. The
//! list is of what read-only tokens may call, so a method added later needs a gateway
//! token until it is added here.

/// What a token may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rights {
    /// The key-serving methods only.
    ReadOnly,
    /// Everything a gateway calls.
    Gateway,
}

/// The gRPC paths a read-only token may call (and every health check).
const READ_ONLY_PATHS: [&str; 4] = [
    "/keysync.v1.KeySync/ListKeys",
    "/keysync.v1.KeySync/LookupKey",
    "/keysync.v1.KeySync/WatchKeys",
    "/envoy.service.auth.v3.Authorization/Check",
];
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

impl Rights {
    /// Whether these rights may call the method at `path` (`/package.Service/Method`).
    pub fn allow(self, path: &str) -> bool {
        match self {
            Rights::Gateway => true,
            Rights::ReadOnly => path.starts_with(HEALTH_PREFIX) || READ_ONLY_PATHS.contains(&path),
        }
    }

    /// How the tokens file and log lines name them.
    pub fn as_str(self) -> &'static str {
        match self {
            Rights::ReadOnly => "read-only",
            Rights::Gateway => "gateway",
        }
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
    use keysync_proto::v1::key_sync_server::KeySyncServer;
    use tonic::server::NamedService;

    use super::*;
    use crate::grpc::ext_authz::ExtAuthzService;
    use crate::grpc::key_sync::KeySyncService;
    use crate::grpc::rate_limit::GlobalRateLimitService;

    type RateLimits = GlobalRateLimitService<crate::global_limit::redis_counter::RedisCounter>;

    fn path(service: &str, method: &str) -> String {
        format!("/{service}/{method}")
    }

    #[test]
    fn read_only_tokens_serve_keys_and_change_nothing() {
        let key_sync = <KeySyncServer<KeySyncService> as NamedService>::NAME;
        let ext_authz = <AuthorizationServer<ExtAuthzService> as NamedService>::NAME;
        let rate_limit = <RateLimitServiceServer<RateLimits> as NamedService>::NAME;
        for method in ["ListKeys", "LookupKey", "WatchKeys"] {
            assert!(Rights::ReadOnly.allow(&path(key_sync, method)), "{method}");
        }
        assert!(Rights::ReadOnly.allow(&path(ext_authz, "Check")));
        assert!(Rights::ReadOnly.allow("/grpc.health.v1.Health/Check"));
        assert!(Rights::ReadOnly.allow("/grpc.health.v1.Health/Watch"));
        for denied in [
            path(key_sync, "ReportUsage"),
            path(key_sync, "AcquireQuota"),
            path(key_sync, "SomethingNew"),
            path(rate_limit, "ShouldRateLimit"),
            "/keysync.v1.KeySync/ListKeysX".to_owned(),
            String::new(),
        ] {
            assert!(!Rights::ReadOnly.allow(&denied), "{denied}");
            assert!(Rights::Gateway.allow(&denied), "{denied}");
        }
    }
}
