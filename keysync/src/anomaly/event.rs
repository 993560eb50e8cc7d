//! The CloudEvent of an anomaly alert on the usage export (`io.keysync.anomaly.v1`).
//!
//! Its `id` is derived from the organization, the kind and the hour alone (the alert's
//! identity), never from the numbers or the time it was raised: the same alert sent
//! twice, raised by another keysync replica, or produced by a stream job following the
//! same contract (`docs/export.md`) carries the same `source` and `id`, so a consumer
//! keeps one.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::alert::Alert;
use super::kind::AnomalyKind;
use crate::usage::cloud_event::{derived_id, rfc3339, CloudEvent, DATA_CONTENT_TYPE, SPEC_VERSION};

/// The event's `type`; versioned like the others.
pub const ANOMALY_EVENT_TYPE: &str = "io.keysync.anomaly.v1";
/// The event's `source`: whichever keysync replica raised it.
pub const ANOMALY_SOURCE: &str = "keysync/anomaly";

/// The id of the alert of `kind` for `org_id` in the hour starting at `hour`: SHA-256
/// over `keysync.anomaly.v1`, a zero byte, the organization's 16 bytes, the kind's name
/// in ASCII, a zero byte, and the hour's start in Unix milliseconds (8 bytes, big
/// endian); its first 16 bytes as a UUID of version 8.
pub fn event_id(org_id: Uuid, kind: AnomalyKind, hour: DateTime<Utc>) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(b"keysync.anomaly.v1\0");
    hash.update(org_id.as_bytes());
    hash.update(kind.as_str().as_bytes());
    hash.update([0]);
    hash.update(hour.timestamp_millis().to_be_bytes());
    derived_id(hash)
}

/// The event of `alert`; its `time` is when the alert was raised.
pub fn anomaly_event(alert: &Alert) -> CloudEvent {
    let org_id = alert.org_id.to_string();
    CloudEvent {
        specversion: SPEC_VERSION,
        id: alert.event_id.to_string(),
        source: ANOMALY_SOURCE.to_owned(),
        event_type: ANOMALY_EVENT_TYPE.to_owned(),
        subject: org_id.clone(),
        time: rfc3339(alert.raised_at),
        datacontenttype: DATA_CONTENT_TYPE,
        data: serde_json::json!({
            "org_id": org_id,
            "kind": alert.kind.as_str(),
            "hour": rfc3339(alert.hour),
            "hour_complete": alert.hour_complete,
            "observed": alert.observed,
            "baseline": alert.baseline,
            "threshold": alert.threshold,
            "requests": alert.requests,
            "matching_requests": alert.matching_requests,
            "baseline_weeks": alert.baseline_weeks,
        }),
        partition_key: org_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn alert() -> Alert {
        Alert {
            org_id: Uuid::from_u128(0x0a),
            kind: AnomalyKind::Spike,
            hour: at("2026-12-01T14:00:00Z"),
            hour_complete: true,
            observed: 6_000.0,
            baseline: 1_050.0,
            threshold: 5_250.0,
            requests: 6_000,
            matching_requests: 6_000,
            baseline_weeks: 4,
            event_id: event_id(
                Uuid::from_u128(0x0a),
                AnomalyKind::Spike,
                at("2026-12-01T14:00:00Z"),
            ),
            raised_at: at("2026-12-01T15:01:02.345Z"),
        }
    }

    #[test]
    fn the_id_is_the_alerts_identity_and_never_changes() {
        let (org, hour) = (Uuid::from_u128(0x0a), at("2026-12-01T14:00:00Z"));
        let id = event_id(org, AnomalyKind::Spike, hour);
        // Consumers and the stream job derive the same id: its derivation never changes.
        // The bytes, by hand: SHA-256 of the documented input, then the version and
        // variant bits.
        let mut input = b"keysync.anomaly.v1\0".to_vec();
        input.extend_from_slice(org.as_bytes());
        input.extend_from_slice(b"spike\0");
        input.extend_from_slice(&1_796_133_600_000_i64.to_be_bytes());
        let digest = Sha256::digest(&input);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        assert_eq!(id, Uuid::from_bytes(bytes));
        assert_eq!(id.get_version_num(), 8);
        // The same recipe in Python's hashlib, from docs/export.md, gave this.
        assert_eq!(id.to_string(), "195134ae-2237-855a-82b1-e3cb722ab812");
        let mut ids = std::collections::BTreeSet::from([id]);
        ids.insert(event_id(Uuid::from_u128(0x0b), AnomalyKind::Spike, hour));
        ids.insert(event_id(org, AnomalyKind::Drop, hour));
        ids.insert(event_id(
            org,
            AnomalyKind::Spike,
            at("2026-12-01T15:00:00Z"),
        ));
        assert_eq!(ids.len(), 4);
    }

    #[test]
    fn the_event_is_structured_json_with_every_field() {
        let event = anomaly_event(&alert());
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        let org = Uuid::from_u128(0x0a).to_string();
        assert_eq!(
            json,
            serde_json::json!({
                "specversion": "1.0",
                "id": alert().event_id.to_string(),
                "source": "keysync/anomaly",
                "type": "io.keysync.anomaly.v1",
                "subject": org,
                "time": "2026-12-01T15:01:02.345Z",
                "datacontenttype": "application/json",
                "data": {
                    "org_id": org,
                    "kind": "spike",
                    "hour": "2026-12-01T14:00:00.000Z",
                    "hour_complete": true,
                    "observed": 6000.0,
                    "baseline": 1050.0,
                    "threshold": 5250.0,
                    "requests": 6000,
                    "matching_requests": 6000,
                    "baseline_weeks": 4,
                }
            })
        );
        assert_eq!(event.partition_key, org);
        // Numbers of the doubles are written as doubles.
        let text = String::from_utf8(event.to_json()).unwrap();
        assert!(text.contains("\"observed\":6000.0"), "{text}");
    }
}
