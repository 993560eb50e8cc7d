//! The gateway pod's hooks, a static program shipped in the keysync image beside
//! `keysync`, `plugin.wasm` and the native filter (`libkeysync_filter_native.so`). The Envoy image has no shell, so the chart's init
//! container runs [`install`] to put this program (and, by default, the filter built
//! with keysync) into the pod's volumes, and Envoy's `preStop` runs [`drain`] from
//! there so that a stopping pod lets its clients move elsewhere first.

#![forbid(unsafe_code)]

pub mod command;
pub mod drain;
pub mod install;
