//! Captures the `log` lines the flows write in native tests, so that a test can assert
//! what an operator sees. Each test thread keeps its own lines (libtest runs each test
//! on a thread of its own).

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    /// Log lines of the test running on this thread.
    static LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

struct CapturingLogger;

impl log::Log for CapturingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        LOG.with(|log| log.borrow_mut().push(line));
    }

    fn flush(&self) {}
}

/// The log lines written so far by this test; starts capturing on first use.
pub fn logged() -> Vec<String> {
    capture_logs();
    LOG.with(|log| log.borrow().clone())
}

/// Whether any line so far contains `text`.
pub fn logged_line(text: &str) -> Option<String> {
    logged().into_iter().find(|line| line.contains(text))
}

pub fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if log::set_logger(&CapturingLogger).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
    });
}
