//! The Envoys the benchmarks measure: one worker in front of a route Envoy answers
//! itself, with keysync's filter (or ext_authz) or a baseline filter (`envoy/bench.yaml`)
//! in place, all built the same way so that only the auth layer differs between them.

use keysync_e2e::gateway::{Gateway, GatewayOptions};
use keysync_e2e::keysync::Keysync;
use std::path::Path;

/// keysync's filter as a benchmark names it: the wasm filter or the native one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeysyncFilter {
    Wasm,
    Native,
}

impl KeysyncFilter {
    /// Its configuration in `envoy/`.
    pub fn template(self) -> &'static str {
        match self {
            KeysyncFilter::Wasm => "gateway.yaml",
            KeysyncFilter::Native => "native.yaml",
        }
    }
}

/// The sync service's configuration for benchmarks: the full refresh at 15 minutes, so
/// no refresh lands inside a measurement; changes arrive through the watch stream.
pub const SYNC_EVERY_15M: &str = r#"{"role":"sync","refresh_interval":"15m"}"#;

/// `envoy/<template>` (keysync's filter in `gateway.yaml`, ext_authz in
/// `ext-authz.yaml`) fed by `keysync`, one worker, direct responses.
pub fn keysync_gateway(keysync: &Keysync, template: &str) -> Gateway {
    Gateway::start(keysync_options(keysync, template))
}

/// The options of [`keysync_gateway`].
pub fn keysync_options(keysync: &Keysync, template: &str) -> GatewayOptions {
    let mut options = GatewayOptions::new(keysync.grpc, "direct");
    options.template = template.into();
    options.concurrency = 1;
    options.sync_config = SYNC_EVERY_15M.into();
    options
}

/// `envoy/bench.yaml` with the baseline `auth` (`none`, `empty-wasm`, `contract-calls`,
/// `api-key-auth`), one worker, direct responses; `api_keys` is the key file
/// `api-key-auth` reads.
pub fn baseline_gateway(keysync: &Keysync, auth: &str, api_keys: Option<&Path>) -> Gateway {
    Gateway::start(baseline_options(keysync, auth, api_keys))
}

/// The options of [`baseline_gateway`].
pub fn baseline_options(keysync: &Keysync, auth: &str, api_keys: Option<&Path>) -> GatewayOptions {
    let mut options = GatewayOptions::new(keysync.grpc, "direct");
    options.template = "bench.yaml".into();
    options.concurrency = 1;
    options.env.push(("BENCH_AUTH".into(), auth.into()));
    if let Some(api_keys) = api_keys {
        options
            .env
            .push(("API_KEYS_FILE".into(), api_keys.display().to_string()));
    }
    options
}
