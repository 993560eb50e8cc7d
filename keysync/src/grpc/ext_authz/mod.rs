//! ext_authz mode: keysync answers Envoy's external authorization API
//! (`envoy.service.auth.v3.Authorization/Check`) on its gRPC port, for deployments that
//! cannot load the wasm filter. Envoy's own `envoy.filters.http.ext_authz` filter asks,
//! once per request, and keysync decides from its in-memory key set exactly as the
//! filter would: the same credential rules and replies ([`keysync_contract`]), the same
//! catch-up for keys newer than the key set, expiry against the clock at request time.
//!
//! [`credential_headers`] reads the credential out of the check request,
//! [`key_policy_check`] holds a valid key to its allowlist and the route's scopes,
//! [`verdict`] is what was decided, [`check_response`] turns it into Envoy's answer, and
//! [`service`] decides and serves, [`readiness_check`] tells a readiness check from a
//! request to judge. `envoy/ext-authz.yaml` is the matching Envoy configuration.

pub mod check_response;
pub mod credential_headers;
pub mod key_policy_check;
pub mod metrics;
pub mod readiness_check;
pub mod service;
pub mod verdict;

pub use service::ExtAuthzService;
