//! The CloudEvents 1.0 envelope keysync exports (structured JSON mode, what OpenMeter's
//! and Kong's metering ingest read), and the usage event: one grown counter of one flush.
//!
//! A usage event's `id` is derived from what identifies the increment (the Envoy
//! instance, the flush's cut time, the organization, the key, the endpoint, the
//! outcome), never drawn at random: an event sent twice (a batch retried after its
//! acknowledgement was lost) carries the same `source` and `id` both times, so a
//! consumer can drop the second.
//!
//! The endpoint came after the first consumers: `data.endpoint` was added under the same
//! type, `io.keysync.usage.v1`. Every field kept its meaning and every sum its value (a
//! meter summing `requests` by key and outcome counts what it did; a counter is now per
//! endpoint too, so such a group gets one event per endpoint and flush, each with its own
//! `id`), while a new type would have silently emptied every meter defined on this one.
//! The id of an increment of the endpoint `-` is made as before endpoints existed.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::flush::Counter;
use keysync_contract::usage_endpoint::NO_NAME;

/// The CloudEvents version of the envelope.
pub const SPEC_VERSION: &str = "1.0";
/// The `type` of a usage event. Versioned: a change to `data`'s shape that a consumer
/// would notice gets a new type (an added field, such as `endpoint`, is not one).
pub const USAGE_EVENT_TYPE: &str = "io.keysync.usage.v1";
/// The media type of `data` (always JSON here).
pub const DATA_CONTENT_TYPE: &str = "application/json";
/// The Kafka record's `content-type` header in structured mode.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// A CloudEvent, any type: the envelope's fields and the data as JSON. The usage export
/// and, later, quota alerts build these; the exporter only serializes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudEvent {
    pub specversion: &'static str,
    /// Unique within `source`; repeated only when the same event is sent again.
    pub id: String,
    /// Where the event happened, as a URI reference.
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Who the event is about: the metered customer, by its external id (the id in the
    /// operator's billing system, `orgs create --external-id`) when it has one, else
    /// the organization's id.
    pub subject: String,
    /// RFC 3339.
    pub time: String,
    pub datacontenttype: &'static str,
    pub data: serde_json::Value,
    /// The Kafka record's key (not part of the envelope): records of one key keep their
    /// order on one partition.
    #[serde(skip)]
    pub partition_key: String,
}

impl CloudEvent {
    /// The structured-mode JSON of the event (the Kafka record's value).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing strings and a `Value` cannot fail; an empty object would be a bug
        // the tests catch, not a reason to stop exporting.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// RFC 3339 in UTC with milliseconds, as every time in the export is written.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The `source` of the usage events counted by one Envoy process: the same whichever
/// keysync stored the flush, so that `source` and `id` together stay deterministic.
pub fn usage_source(instance_id: Uuid) -> String {
    format!("keysync/gateway/{instance_id}")
}

/// The deterministic id of the increment of `counter` flushed by `instance_id` at
/// `cut_at`: the first 16 bytes of a SHA-256 over those, shaped as a UUID (version 8,
/// "custom"). The endpoint is hashed after the outcome, except `-`, whose ids are made
/// as they were before endpoints.
pub fn usage_event_id(instance_id: Uuid, cut_at: DateTime<Utc>, counter: &Counter) -> String {
    let mut hash = Sha256::new();
    hash.update(b"keysync.usage.v1\0");
    hash.update(instance_id.as_bytes());
    hash.update(cut_at.timestamp_millis().to_be_bytes());
    hash.update(counter.org_id.as_bytes());
    hash.update(counter.key_id.as_bytes());
    // The code as two bytes, as the ids have always been made (a smallint).
    hash.update(i16::from(counter.outcome.code()).to_be_bytes());
    if counter.endpoint != NO_NAME {
        // Length-prefixed: no two endpoints hash alike.
        hash.update((counter.endpoint.len() as u64).to_be_bytes());
        hash.update(counter.endpoint.as_bytes());
    }
    derived_id(hash).to_string()
}

/// An event id derived from what identifies the event (hashed into `hash`): the first
/// 16 bytes of the SHA-256, shaped as a UUID of version 8 ("custom": the version and
/// variant bits overwritten).
pub fn derived_id(hash: Sha256) -> Uuid {
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The usage event of one grown counter: `increment.values` are what the flush added
/// for it in the window `(window_start, window_end]` (`window_start` is `None` on an
/// instance's first flush). `external_id` is its organization's, if it has one: the
/// event's `subject` (the `id` does not depend on it, so it stays what it always was).
pub fn usage_event(
    instance_id: Uuid,
    window_start: Option<DateTime<Utc>>,
    window_end: DateTime<Utc>,
    increment: &Counter,
    external_id: Option<&str>,
) -> CloudEvent {
    let [requests, duration_us, le_10ms, le_100ms, le_1s, over_1s, request_bytes, response_bytes] =
        increment.values;
    let org_id = increment.org_id.to_string();
    let time = rfc3339(window_end);
    CloudEvent {
        specversion: SPEC_VERSION,
        id: usage_event_id(instance_id, window_end, increment),
        source: usage_source(instance_id),
        event_type: USAGE_EVENT_TYPE.to_owned(),
        subject: external_id.map_or_else(|| org_id.clone(), str::to_owned),
        time: time.clone(),
        datacontenttype: DATA_CONTENT_TYPE,
        data: serde_json::json!({
            "org_id": org_id,
            "key_id": increment.key_id.to_string(),
            "endpoint": increment.endpoint,
            "outcome": increment.outcome.as_str(),
            "requests": requests,
            "duration_us": duration_us,
            "le_10ms": le_10ms,
            "le_100ms": le_100ms,
            "le_1s": le_1s,
            "over_1s": over_1s,
            "request_bytes": request_bytes,
            "response_bytes": response_bytes,
            "window_start": window_start.map(rfc3339),
            "window_end": time,
            "instance_id": instance_id.to_string(),
        }),
        partition_key: org_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Outcome;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn counter(outcome: Outcome) -> Counter {
        Counter {
            org_id: Uuid::from_u128(0x0a),
            key_id: Uuid::from_u128(0x0b),
            endpoint: "-".to_owned(),
            outcome,
            values: [12, 34_000, 10, 1, 1, 0, 560, 7_800],
        }
    }

    #[test]
    fn ids_depend_on_every_part_and_nothing_else() {
        let instance = Uuid::from_u128(7);
        let cut = at("2026-12-01T14:00:05.250Z");
        let base = usage_event_id(instance, cut, &counter(Outcome::Status2xx));
        // Consumers drop repeats by id: its derivation never changes (the outcome code
        // hashed as two bytes; the endpoint `-` not hashed, as before endpoints).
        assert_eq!(base, "a78ec702-f98c-8b2e-a94d-a6e6f39eba60");
        // Same inputs, same id (a re-sent event), whatever the values say.
        let mut other_values = counter(Outcome::Status2xx);
        other_values.values = [1; 8];
        assert_eq!(usage_event_id(instance, cut, &other_values), base);
        let mut ids = std::collections::BTreeSet::from([base.clone()]);
        ids.insert(usage_event_id(
            Uuid::from_u128(8),
            cut,
            &counter(Outcome::Status2xx),
        ));
        ids.insert(usage_event_id(
            instance,
            cut + chrono::TimeDelta::milliseconds(1),
            &counter(Outcome::Status2xx),
        ));
        ids.insert(usage_event_id(
            instance,
            cut,
            &counter(Outcome::RateLimited),
        ));
        let mut other_org = counter(Outcome::Status2xx);
        other_org.org_id = Uuid::from_u128(0x0c);
        ids.insert(usage_event_id(instance, cut, &other_org));
        let mut other_key = counter(Outcome::Status2xx);
        other_key.key_id = Uuid::from_u128(0x0c);
        ids.insert(usage_event_id(instance, cut, &other_key));
        for endpoint in ["orders", "search", "(other)"] {
            let mut named = counter(Outcome::Status2xx);
            named.endpoint = endpoint.to_owned();
            ids.insert(usage_event_id(instance, cut, &named));
        }
        assert_eq!(ids.len(), 9, "{ids:?}");
        // A UUID, version 8.
        let parsed = Uuid::parse_str(&base).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
    }

    #[test]
    fn the_usage_event_is_structured_json_with_every_field() {
        let instance = Uuid::from_u128(7);
        let event = usage_event(
            instance,
            Some(at("2026-12-01T13:59:55Z")),
            at("2026-12-01T14:00:05.250Z"),
            &counter(Outcome::RateLimited),
            None,
        );
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        let org = Uuid::from_u128(0x0a).to_string();
        assert_eq!(
            json,
            serde_json::json!({
                "specversion": "1.0",
                "id": usage_event_id(
                    instance,
                    at("2026-12-01T14:00:05.250Z"),
                    &counter(Outcome::RateLimited)
                ),
                "source": format!("keysync/gateway/{instance}"),
                "type": "io.keysync.usage.v1",
                "subject": org,
                "time": "2026-12-01T14:00:05.250Z",
                "datacontenttype": "application/json",
                "data": {
                    "org_id": org,
                    "key_id": Uuid::from_u128(0x0b).to_string(),
                    "endpoint": "-",
                    "outcome": "rate_limited",
                    "requests": 12,
                    "duration_us": 34000,
                    "le_10ms": 10,
                    "le_100ms": 1,
                    "le_1s": 1,
                    "over_1s": 0,
                    "request_bytes": 560,
                    "response_bytes": 7800,
                    "window_start": "2026-12-01T13:59:55.000Z",
                    "window_end": "2026-12-01T14:00:05.250Z",
                    "instance_id": instance.to_string(),
                }
            })
        );
        assert_eq!(event.partition_key, org);
    }

    #[test]
    fn a_first_flush_has_no_window_start() {
        let event = usage_event(
            Uuid::from_u128(7),
            None,
            at("2026-12-01T14:00:05Z"),
            &counter(Outcome::Status2xx),
            None,
        );
        assert_eq!(event.data["window_start"], serde_json::Value::Null);
        assert_eq!(event.data["outcome"], "2xx");
    }

    #[test]
    fn an_external_id_is_the_subject_and_changes_nothing_else() {
        let instance = Uuid::from_u128(7);
        let cut = at("2026-12-01T14:00:05Z");
        let plain = usage_event(instance, None, cut, &counter(Outcome::Status2xx), None);
        let billed = usage_event(
            instance,
            None,
            cut,
            &counter(Outcome::Status2xx),
            Some("cus_42"),
        );
        assert_eq!(billed.subject, "cus_42");
        assert_eq!(plain.subject, Uuid::from_u128(0x0a).to_string());
        // The same increment keeps its id (consumers deduplicate by it), its data and
        // its partition.
        assert_eq!(billed.id, plain.id);
        assert_eq!(billed.data, plain.data);
        assert_eq!(billed.partition_key, plain.partition_key);
    }
}
