//! Whether the keysync filter itself held up through a case, in either build: the wasm
//! filter's VMs did not fail, the native module caught no panic, and Envoy did not crash
//! (a crash in a native module takes the whole Envoy with it, so it is checked, not
//! assumed).

use std::process::ExitStatus;

use super::figures::{Figures, Verdict};
use crate::gateway::Gateway;

/// Lines in an Envoy log that say the filter failed: a wasm VM's panic, trap or failed
/// callback, or a panic the native module caught in one of its hooks (Envoy served on,
/// but that request or tick was lost).
pub fn filter_failures(envoy_log: &str) -> usize {
    envoy_log
        .lines()
        .filter(|line| {
            line.contains("[critical][wasm]")
                || line.contains("panicked at")
                || (line.contains("[wasm]") && line.contains("Uncaught"))
                || line.contains("keysync native filter: a panic in")
                || line.contains("keysync native module: a panic in")
                || line.contains("keysync sync service: a panic")
        })
        .count()
}

/// The filter's failures and Envoy's exit, read at the end of a case.
pub struct FilterHealth {
    failures: usize,
    envoy_exit: Option<ExitStatus>,
}

impl FilterHealth {
    pub fn of(gateway: &Gateway) -> FilterHealth {
        FilterHealth {
            failures: filter_failures(&gateway.process.log()),
            envoy_exit: gateway.process.exit_status(),
        }
    }

    pub fn add_figures(&self, figures: &mut Figures) {
        figures.add(
            "filter failures in Envoy's log: wasm VM failures, panics caught in the native module (must be 0)",
            self.failures,
        );
        figures.add(
            "Envoy crashed (must be no)",
            self.envoy_exit
                .map_or("no".to_string(), |status| format!("yes: {status}")),
        );
    }

    pub fn check(&self, verdict: &mut Verdict, gateway: &Gateway) {
        verdict.check(
            self.failures == 0,
            "no filter failure (wasm VM or native module)",
            || gateway.process.log_tail(60),
        );
        verdict.check(self.envoy_exit.is_none(), "Envoy does not crash", || {
            gateway.process.log_tail(60)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_failures_are_found_in_envoy_logs() {
        let log = "[info][wasm] fine\n[critical][wasm] wasm log: panicked at x\n\
                   [error][wasm] Function: proxy_on_tick failed: Uncaught RuntimeError: unreachable\n\
                   [error][dynamic_modules] keysync native filter: a panic in on_request_headers \
                   (at src/x.rs:1:1: message withheld); answered 500\n\
                   [info][dynamic_modules] keysync: cache refresh complete\n";
        assert_eq!(filter_failures(log), 3);
    }
}
