//! What the fleet's calls of one kind (health checks, usage reports) came to over a
//! measuring window: how many succeeded, how many failed and why, and how long each took.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::latency::Samples;

/// Calls made since the last [`CallLog::take`].
#[derive(Default)]
pub struct CallLog(Mutex<Window>);

/// One window's calls.
#[derive(Default)]
pub struct Window {
    pub ok: u64,
    /// Failures by what went wrong (a gRPC code, a timeout).
    pub failed: BTreeMap<String, u64>,
    pub latencies: Vec<Duration>,
}

impl CallLog {
    pub fn record(&self, outcome: Result<(), String>, took: Duration) {
        let mut window = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(()) => window.ok += 1,
            Err(why) => *window.failed.entry(why).or_default() += 1,
        }
        window.latencies.push(took);
    }

    /// The calls since the last take; starts a new window.
    pub fn take(&self) -> Window {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Window {
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    /// `n=…, p50 …, p99 …, max …` of the calls' times.
    pub fn latency_summary(&self) -> String {
        let mut samples = Samples::new();
        for took in &self.latencies {
            samples.push(*took);
        }
        samples.summary()
    }

    /// The window's figures as rows named after `what` (`health checks`): calls a second
    /// over `seconds` and failures, and their times.
    pub fn rows(&self, what: &str, seconds: f64) -> Vec<(String, String)> {
        vec![
            (
                format!("steady: {what} a second / failed"),
                format!(
                    "{:.1} / {} ({})",
                    (self.ok + self.failures()) as f64 / seconds,
                    self.failures(),
                    self.failure_summary()
                ),
            ),
            (format!("steady: {what} time"), self.latency_summary()),
        ]
    }

    /// The failures, as `code: count` pairs, or `none`.
    pub fn failure_summary(&self) -> String {
        if self.failed.is_empty() {
            return "none".to_string();
        }
        self.failed
            .iter()
            .map(|(why, count)| format!("{why}: {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
