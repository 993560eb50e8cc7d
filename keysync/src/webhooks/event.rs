//! The event types a webhook can subscribe to, as named on the wire (`type` in the body)
//! and in `webhooks create --event`.

use std::fmt;
use std::str::FromStr;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    KeyCreated,
    KeyRevoked,
    /// A key replaced by a new one (the old key's grace period in `data`).
    KeyRotated,
    /// A key's expiry passed (found by `serve`'s scan, once per key).
    KeyExpired,
    /// A secret scanner reported the key leaked (revoked or flagged: `data` says).
    KeyLeaked,
    /// An organization's or key's use crossed 80% or 100% of its monthly quota.
    QuotaThreshold,
    /// `webhooks test`: sent to one endpoint only, whatever it subscribes to.
    WebhookTest,
}

impl EventType {
    /// The types an endpoint may subscribe to.
    pub const SUBSCRIBABLE: [EventType; 6] = [
        EventType::KeyCreated,
        EventType::KeyRevoked,
        EventType::KeyRotated,
        EventType::KeyExpired,
        EventType::KeyLeaked,
        EventType::QuotaThreshold,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::KeyCreated => "key.created",
            EventType::KeyRevoked => "key.revoked",
            EventType::KeyRotated => "key.rotated",
            EventType::KeyExpired => "key.expired",
            EventType::KeyLeaked => "key.leaked",
            EventType::QuotaThreshold => "quota.threshold",
            EventType::WebhookTest => "webhook.test",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event type that is not one an endpoint may subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event '{0}': expected key.created, key.revoked, key.rotated, key.expired, key.leaked or quota.threshold")]
pub struct UnknownEvent(pub String);

impl FromStr for EventType {
    type Err = UnknownEvent;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EventType::SUBSCRIBABLE
            .into_iter()
            .find(|event| event.as_str() == text.trim())
            .ok_or_else(|| UnknownEvent(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribable_types_read_back_and_the_test_event_is_not_one() {
        for event in EventType::SUBSCRIBABLE {
            assert_eq!(event.as_str().parse(), Ok(event));
        }
        assert!("webhook.test".parse::<EventType>().is_err());
        assert_eq!(
            "key.deleted".parse::<EventType>(),
            Err(UnknownEvent("key.deleted".to_owned()))
        );
    }
}
