//! How `serve` delivers webhooks (the `KEYSYNC_WEBHOOK_*` variables): how often it looks
//! for due deliveries, how long an attempt may take, how retries are spaced and for how
//! long, how many attempts run at once, and how often it looks for expired keys.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    /// How often the outbox is read when nothing woke the sender: a queued delivery
    /// notifies it at once, a retry is looked for when due, an ended attempt frees a
    /// slot; this is the safety net for a notification lost with its connection.
    pub poll_interval: Duration,
    /// The longest one attempt may take, from the address lookup to the answer's status.
    pub timeout: Duration,
    /// The delay after the first failed attempt; doubled after each further failure, up
    /// to `retry_max`, with jitter (half to all of it).
    pub retry_first: Duration,
    pub retry_max: Duration,
    /// How long after the event a failing delivery keeps being retried; then it is
    /// given up (`failed`).
    pub retry_for: Duration,
    /// Attempts to one endpoint at once: a slow endpoint holds at most this many.
    pub endpoint_concurrency: usize,
    /// Attempts in progress at once in this keysync, over every endpoint.
    pub max_in_flight: usize,
    /// How often keys whose expiry passed are looked for (`key.expired`).
    pub expiry_scan_interval: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            poll_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            retry_first: Duration::from_secs(5),
            retry_max: Duration::from_secs(60 * 60),
            retry_for: Duration::from_secs(24 * 60 * 60),
            endpoint_concurrency: 4,
            max_in_flight: 64,
            expiry_scan_interval: Duration::from_secs(30),
        }
    }
}

impl DeliverySettings {
    /// How long a claimed delivery is held by the attempt in progress: past it, another
    /// replica (or this one after a restart) may attempt it again. Longer than any
    /// attempt can take, so a live attempt is never sent twice.
    pub fn lease(&self) -> Duration {
        self.timeout.saturating_mul(2) + Duration::from_secs(1)
    }
}
