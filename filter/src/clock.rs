//! Envoy's wall clock (a host call: used only where a decision needs the time).

use proxy_wasm::hostcalls;
use std::time::UNIX_EPOCH;

pub fn now_unix_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn now_unix_secs() -> u64 {
    now_unix_ms() / 1000
}
