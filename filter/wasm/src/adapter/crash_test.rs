//! Test builds only (`--features crash-test`): crashes a VM on request, so the fault
//! suite can show what clients see when the auth VM or the sync VM dies and how Envoy
//! (`failure_policy: FAIL_RELOAD`) brings it back. Never in a release build.
#![allow(clippy::panic)]

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

/// A request carrying this header crashes a VM: `auth` the worker's, `sync` the sync
/// service's (at its next tick).
const HEADER: &str = "x-keysync-crash-test";
/// Shared data that tells the sync service to crash.
const SYNC_ENTRY: &str = "keysync.crash-test";

/// Called first on every request of a crash-test build.
pub fn on_request() {
    match hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, HEADER) {
        Ok(Some(value)) if value == b"auth" => panic!("crash test: the auth VM dies"),
        Ok(Some(value)) if value == b"sync" => {
            let _ = hostcalls::set_shared_data(SYNC_ENTRY, Some(b"sync"), None);
        }
        _ => {}
    }
}

/// Called on every tick of the sync service in a crash-test build.
pub fn on_sync_tick() {
    if let Ok((Some(value), _)) = hostcalls::get_shared_data(SYNC_ENTRY) {
        if value == b"sync" {
            // Cleared first, so the VM Envoy reloads does not die again.
            let _ = hostcalls::set_shared_data(SYNC_ENTRY, Some(b""), None);
            panic!("crash test: the sync VM dies");
        }
    }
}
