//! The core's log lines (the `log` crate) in Envoy's own log, under its `dynamic_modules`
//! logger: `cache refresh complete: ...` and the rest, as the wasm filter writes them.

use crate::abi::{log, log_enabled, LogLevel};

struct EnvoyLogger;

static LOGGER: EnvoyLogger = EnvoyLogger;

fn level(level: log::Level) -> LogLevel {
    match level {
        log::Level::Error => LogLevel::Error,
        log::Level::Warn => LogLevel::Warn,
        log::Level::Info => LogLevel::Info,
        log::Level::Debug => LogLevel::Debug,
        log::Level::Trace => LogLevel::Trace,
    }
}

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        log_enabled(level(metadata.level()))
    }

    fn log(&self, record: &log::Record<'_>) {
        log(level(record.level()), &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Sends the `log` crate's lines to Envoy (once per process), at most as verbose as Envoy's
/// logger is now: a disabled level costs no formatting (a level changed later through
/// Envoy's admin is checked per line, up to this bound).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        let max = [
            (LogLevel::Trace, log::LevelFilter::Trace),
            (LogLevel::Debug, log::LevelFilter::Debug),
            (LogLevel::Info, log::LevelFilter::Info),
            (LogLevel::Warn, log::LevelFilter::Warn),
            (LogLevel::Error, log::LevelFilter::Error),
        ]
        .into_iter()
        .find(|(envoy, _)| log_enabled(*envoy))
        .map_or(log::LevelFilter::Error, |(_, filter)| filter);
        log::set_max_level(max.max(log::LevelFilter::Info));
    }
}
