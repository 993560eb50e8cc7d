//! The gateway's contract with clients and backends (see the README's "What the gateway
//! answers"), in one place for both ways of enforcing it: the wasm filter inside Envoy
//! and keysync's ext_authz service. Also the wire vocabulary the filter and keysync must
//! agree on byte for byte: subject kind codes (`subject`), usage outcome codes
//! (`usage_outcome`), usage endpoint names (`usage_endpoint`), gateway modes
//! (`gateway_mode`) and the key hash (`key_hash`). Plain Rust whose only dependencies are
//! `sha2` and `serde` (the credential sources deserialize into either enforcer's
//! configuration): it runs in wasm.
#![forbid(unsafe_code)]
// Runs inside Envoy's wasm VM, where a panic kills the VM of a whole worker.
#![deny(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unimplemented,
    clippy::unreachable
)]

pub mod credential;
pub mod credential_sources;
pub mod gateway_mode;
pub mod id;
pub mod key_format;
pub mod key_hash;
pub mod key_policy;
pub mod limit;
pub mod public_path;
pub mod rate_limit_headers;
pub mod rate_window;
pub mod reply;
pub mod subject;
pub mod usage_endpoint;
pub mod usage_outcome;

/// Set by the gateway on allowed requests (client-sent values are removed first).
pub const ORG_ID_HEADER: &str = "x-org-id";
pub const KEY_ID_HEADER: &str = "x-api-key-id";

/// Global rate limiting: who is counted (a [`subject::Subject`]: `org:<uuid>` or
/// `key:<uuid>`), read into the `keysync_subject` descriptor entry by the gateway's
/// `rate_limits` actions.
pub const RATE_LIMIT_SUBJECT_HEADER: &str = "x-keysync-rl-subject";
/// Global rate limiting: the limit (a [`limit::Limit`]: `<requests_per_minute>+<burst>`),
/// read into `keysync_limit`.
pub const RATE_LIMIT_LIMIT_HEADER: &str = "x-keysync-rl-limit";
