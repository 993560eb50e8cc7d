//! The Envoys `compare` races, each started afresh every round: one worker, a route Envoy
//! answers itself, and one way of checking keys in front of it.

use crate::api_key_auth_config::BuiltIn;
use crate::gateways::{
    baseline_gateway, baseline_options, keysync_gateway, keysync_options, KeysyncFilter,
};
use keysync_e2e::gateway::Gateway;
use keysync_e2e::keysync::Keysync;
use keysync_e2e::paths;
use std::time::{Duration, Instant};

/// How long a fresh Envoy may take to hold every key.
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);

/// What checks the keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// Nothing (`envoy/bench.yaml`, `none`).
    None,
    /// An empty Rust wasm filter: the wasm floor.
    EmptyWasm,
    /// A wasm filter making only the contract's host calls (`bench/contract-calls-filter`).
    ContractCalls,
    /// Envoy's built-in `api_key_auth` with the keys in clear in its configuration.
    ApiKeyAuth,
    /// The same forwarding the client in a header and hiding the key: the contract's job
    /// (what Envoy Gateway's `apiKeyAuth` configures).
    ApiKeyAuthForwarding,
    /// A native module making only the contract's calls, with the same keys in a
    /// `HashMap` (`filter/native`'s `contract-calls` feature): what the dynamic-module ABI
    /// itself costs, beside (c).
    NativeContractCalls,
    /// The same module's filter making no call at all: what Envoy's side of the ABI
    /// costs a stream before a module does anything (the floor of any dynamic module).
    EmptyNative,
    /// Envoy's `ext_authz` asking keysync over gRPC.
    ExtAuthz,
    /// keysync's wasm filter (`envoy/gateway.yaml`).
    Wasm,
    /// keysync's native filter, the dynamic module (`envoy/native.yaml`).
    Native,
    /// The native filter with usage metering off (and with it quotas) and no endpoint
    /// read: what the request path costs without the metering of every request.
    NativeUnmetered,
}

/// [`KeyCheck::NativeUnmetered`]'s plugin configurations.
const UNMETERED_SYNC: &str =
    r#"{"role":"sync","refresh_interval":"15m","usage_flush_interval":"off"}"#;
const UNMETERED_AUTH: &str = r#"{"role":"auth","usage_endpoints":"off"}"#;

impl KeyCheck {
    /// keysync's filters, which hold the keys in a store they sync.
    pub fn syncs_keys(self) -> bool {
        matches!(
            self,
            KeyCheck::Wasm | KeyCheck::Native | KeyCheck::NativeUnmetered
        )
    }

    /// keysync's filters as shipped, whose memory and sync time a run reports.
    pub fn weighed(self) -> bool {
        matches!(self, KeyCheck::Wasm | KeyCheck::Native)
    }

    fn template(self) -> &'static str {
        match self {
            KeyCheck::Native | KeyCheck::NativeUnmetered => KeysyncFilter::Native.template(),
            KeyCheck::ExtAuthz => "ext-authz.yaml",
            _ => KeysyncFilter::Wasm.template(),
        }
    }

    /// An Envoy with this check in front of the route. `keysync` feeds keysync's filters
    /// and ext_authz; `api_key_auth` starts api_key_auth (`api_key_auth_config`).
    /// keysync's filters are returned once their store holds `keys` keys.
    pub fn start(self, keysync: &Keysync, api_key_auth: &BuiltIn, keys: usize) -> Started {
        let started = Instant::now();
        let gateway = match self {
            KeyCheck::None => baseline_gateway(keysync, "none", None),
            KeyCheck::EmptyWasm => baseline_gateway(keysync, "empty-wasm", None),
            KeyCheck::ContractCalls => baseline_gateway(keysync, "contract-calls", None),
            KeyCheck::ApiKeyAuth => Gateway::start(api_key_auth.plain.clone()),
            KeyCheck::ApiKeyAuthForwarding => Gateway::start(api_key_auth.forwarding.clone()),
            KeyCheck::NativeContractCalls | KeyCheck::EmptyNative => {
                let auth = if self == KeyCheck::EmptyNative {
                    "empty-native"
                } else {
                    "contract-calls-native"
                };
                let mut options = baseline_options(keysync, auth, None);
                // The keys of the HashMap (the empty filter has none: render.py ignores it).
                options
                    .env
                    .push(("BENCH_NATIVE_KEYS".into(), keys.to_string()));
                options.process_env.push((
                    "ENVOY_DYNAMIC_MODULES_SEARCH_PATH".into(),
                    paths::native_control_filter_dir().display().to_string(),
                ));
                Gateway::start(options)
            }
            KeyCheck::ExtAuthz | KeyCheck::Wasm | KeyCheck::Native => {
                keysync_gateway(keysync, self.template())
            }
            KeyCheck::NativeUnmetered => {
                let mut options = keysync_options(keysync, self.template());
                options.sync_config = UNMETERED_SYNC.into();
                options.auth_config = UNMETERED_AUTH.into();
                Gateway::start(options)
            }
        };
        let mut synced_in = None;
        if self.syncs_keys() {
            let line = gateway
                .process
                .wait_for_log("cache refresh complete", SYNC_TIMEOUT);
            synced_in = Some(started.elapsed());
            assert_eq!(
                refreshed_total(&line),
                Some(keys),
                "{self:?} synced another key set: {line}"
            );
        }
        Started { gateway, synced_in }
    }
}

/// N of a `cache refresh complete: updated=.., removed=.., total=N` log line.
fn refreshed_total(line: &str) -> Option<usize> {
    let rest = line.split("total=").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A fresh Envoy of a variant.
pub struct Started {
    pub gateway: Gateway,
    /// keysync's filters: from spawning Envoy to its first full sync's log line.
    pub synced_in: Option<Duration>,
}

/// One Envoy configuration raced in every round.
pub struct Variant {
    /// Its tag in the tables: `(a)`, `(a')`, `(c)`, ...
    pub tag: &'static str,
    pub name: String,
    pub check: KeyCheck,
}

/// The variants of a run with `keys` keys: no filter twice (the second is the A/A
/// control: what two identical Envoys differ by in this run), `api_key_auth` with the
/// same keys, keysync's wasm filter and its native filter, and the native filter without
/// usage metering (the control that prices metering on the native request path), and a
/// native module making only the contract's calls (the control that prices the ABI) and one
/// making none (the ABI's floor); with
/// `more`, the wasm floor, the contract's host calls alone and ext_authz too.
pub fn variants(keys: usize, more: bool) -> Vec<Variant> {
    let variant = |tag, name: &str, check| Variant {
        tag,
        name: format!("{tag} {name}"),
        check,
    };
    let mut variants = vec![
        variant("(a)", "no auth filter", KeyCheck::None),
        variant("(a')", "no auth filter again (A/A)", KeyCheck::None),
    ];
    if more {
        variants.push(variant(
            "(b)",
            "empty Rust wasm filter",
            KeyCheck::EmptyWasm,
        ));
        variants.push(variant(
            "(b')",
            "the contract's host calls only",
            KeyCheck::ContractCalls,
        ));
    }
    variants.push(variant(
        "(c)",
        &format!("api_key_auth, {keys} keys"),
        KeyCheck::ApiKeyAuth,
    ));
    variants.push(variant(
        "(cf)",
        "(c) forwarding the client, the key taken off",
        KeyCheck::ApiKeyAuthForwarding,
    ));
    if more {
        variants.push(variant(
            "(d)",
            "ext_authz to keysync (gRPC)",
            KeyCheck::ExtAuthz,
        ));
    }
    variants.push(variant(
        "(c')",
        &format!("the contract's calls through the native ABI, {keys} keys in a HashMap"),
        KeyCheck::NativeContractCalls,
    ));
    variants.push(variant(
        "(c0)",
        "an empty native module (no call)",
        KeyCheck::EmptyNative,
    ));
    variants.push(variant(
        "(e)",
        &format!("keysync wasm filter, {keys} keys"),
        KeyCheck::Wasm,
    ));
    variants.push(variant(
        "(n)",
        &format!("keysync native filter, {keys} keys"),
        KeyCheck::Native,
    ));
    variants.push(variant(
        "(n0)",
        "(n) with metering off, no endpoint",
        KeyCheck::NativeUnmetered,
    ));
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_has_the_baselines_the_targets_are_ratios_to() {
        for more in [false, true] {
            let tags: Vec<&str> = variants(1_000, more).iter().map(|v| v.tag).collect();
            for wanted in [
                "(a)", "(a')", "(c)", "(cf)", "(c')", "(c0)", "(e)", "(n)", "(n0)",
            ] {
                assert!(tags.contains(&wanted), "{wanted} missing from {tags:?}");
            }
            assert_eq!(tags.contains(&"(d)"), more);
        }
    }

    #[test]
    fn the_refresh_line_gives_its_total() {
        let line =
            "[info] wasm log keysync: cache refresh complete: updated=10, removed=0, total=10000";
        assert_eq!(refreshed_total(line), Some(10_000));
        assert_eq!(refreshed_total("cache refresh complete"), None);
    }
}
