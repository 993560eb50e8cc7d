//! The CloudEvent of an organization's invoice at the close of a period on the usage
//! export (`io.keysync.invoice.v1`).
//!
//! Its `id` is derived from the organization and the period alone, and its `time` is the
//! period's end: the invoice of a period sent twice, or stored by another keysync
//! replica, carries the same `source`, `id` and `time`, so a billing system keeps one.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::invoice::Invoice;
use crate::usage::cloud_event::{derived_id, rfc3339, CloudEvent, DATA_CONTENT_TYPE, SPEC_VERSION};

/// The event's `type`; versioned like the others.
pub const INVOICE_EVENT_TYPE: &str = "io.keysync.invoice.v1";
/// The event's `source`: whichever keysync replica closed the period.
pub const INVOICE_SOURCE: &str = "keysync/billing";

/// The id of `org_id`'s invoice for the period starting at `period_start`: SHA-256 over
/// `keysync.invoice.v1`, a zero byte, the organization's 16 bytes and the period's start
/// in Unix milliseconds (8 bytes, big endian); its first 16 bytes as a UUID of version 8.
pub fn event_id(org_id: Uuid, period_start: DateTime<Utc>) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(b"keysync.invoice.v1\0");
    hash.update(org_id.as_bytes());
    hash.update(period_start.timestamp_millis().to_be_bytes());
    derived_id(hash)
}

/// The event of `invoice`, whose `data` is the invoice as `keysync usage --cost --json`
/// prints it.
pub fn invoice_event(invoice: &Invoice) -> CloudEvent {
    let org_id = invoice.org_id.to_string();
    CloudEvent {
        specversion: SPEC_VERSION,
        id: event_id(invoice.org_id, invoice.from).to_string(),
        source: INVOICE_SOURCE.to_owned(),
        event_type: INVOICE_EVENT_TYPE.to_owned(),
        subject: org_id.clone(),
        time: rfc3339(invoice.to),
        datacontenttype: DATA_CONTENT_TYPE,
        // An invoice is strings, integers and arrays of them: it always serializes.
        data: serde_json::to_value(invoice).unwrap_or_default(),
        partition_key: org_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_the_organization_and_the_period_and_never_changes() {
        let org = Uuid::from_u128(0x0a);
        let start: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let id = event_id(org, start);
        // The derivation, by hand, as docs/export.md states it.
        let mut input = b"keysync.invoice.v1\0".to_vec();
        input.extend_from_slice(org.as_bytes());
        input.extend_from_slice(&start.timestamp_millis().to_be_bytes());
        let digest = Sha256::digest(&input);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        assert_eq!(id, Uuid::from_bytes(bytes));
        assert_eq!(id.get_version_num(), 8);
        // The same recipe in Python's hashlib, from docs/export.md, gave this.
        assert_eq!(id.to_string(), "ef7ad4d8-b0d0-83e9-a60d-17db7cb6e874");
        assert_ne!(id, event_id(Uuid::from_u128(0x0b), start));
        assert_ne!(id, event_id(org, "2027-01-01T00:00:00Z".parse().unwrap()));
        assert_eq!(id, event_id(org, start));
    }
}
