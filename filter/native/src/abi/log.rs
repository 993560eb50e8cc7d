//! Log lines into Envoy's own log (its `dynamic_modules` logger), from any thread.

use super::callbacks::{
    envoy_dynamic_module_callback_log, envoy_dynamic_module_callback_log_enabled,
};
use super::types::{LogLevel, ModuleBuffer};

/// Whether Envoy's `dynamic_modules` logger lets `level` through now (it can change at run
/// time, through Envoy's admin `/logging`).
pub fn log_enabled(level: LogLevel) -> bool {
    // SAFETY: a plain query, valid on any thread.
    unsafe { envoy_dynamic_module_callback_log_enabled(level as u32) }
}

/// Logs `message` at `level` if Envoy's `dynamic_modules` logger lets that level through.
/// Never put a key, a token or a password in `message`.
pub fn log(level: LogLevel, message: &str) {
    if !log_enabled(level) {
        return;
    }
    // SAFETY: the message is lent for the call and copied by Envoy.
    unsafe {
        envoy_dynamic_module_callback_log(level as u32, ModuleBuffer::new(message.as_bytes()))
    }
}
