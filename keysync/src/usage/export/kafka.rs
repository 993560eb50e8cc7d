//! Publishing batches of events to a Kafka topic with `rskafka` (pure Rust): one record
//! per event, the CloudEvent as the value in structured mode (`content-type:
//! application/cloudevents+json`), keyed by the event's partition key, on the partition
//! Kafka's default partitioner picks for that key.
//!
//! The connection is made on the first batch and dropped after any failure, so a
//! broker that restarted, moved its partitions or got the topic back is found again on
//! the next attempt. keysync never creates the topic: a missing one is an error, retried.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rskafka::BackoffConfig;

use super::partitioner::partition_of;
use super::{ExportError, Sink};
use crate::usage::cloud_event::{CloudEvent, STRUCTURED_CONTENT_TYPE};

/// The longest a batch may take, connection included, before it counts as failed
/// (rskafka's own retries stop sooner: see [`client_backoff`]).
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the events go.
#[derive(Debug)]
pub struct KafkaSink {
    brokers: Vec<String>,
    topic: String,
    connection: Option<Connection>,
}

struct Connection {
    /// Kept for the partition clients' shared broker connections.
    _client: Client,
    /// By partition id, 0..n.
    partitions: Vec<PartitionClient>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("partitions", &self.partitions.len())
            .finish_non_exhaustive()
    }
}

/// rskafka retries a failed request itself; bounded here so a failure comes back to the
/// exporter (which counts it and backs off) instead of retrying forever inside.
fn client_backoff() -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        base: 2.0,
        deadline: Some(Duration::from_secs(5)),
    }
}

impl KafkaSink {
    pub fn new(brokers: Vec<String>, topic: String) -> KafkaSink {
        KafkaSink {
            brokers,
            topic,
            connection: None,
        }
    }

    async fn connect(&self) -> Result<Connection, ExportError> {
        let client = ClientBuilder::new(self.brokers.clone())
            .client_id("keysync")
            .backoff_config(client_backoff())
            .build()
            .await
            .map_err(|error| ExportError::Connect(error.to_string()))?;
        let topics = client
            .list_topics()
            .await
            .map_err(|error| ExportError::Connect(error.to_string()))?;
        let mut ids: Vec<i32> = topics
            .into_iter()
            .find(|topic| topic.name == self.topic)
            .ok_or_else(|| ExportError::NoTopic(self.topic.clone()))?
            .partitions
            .into_iter()
            .collect();
        ids.sort_unstable();
        // The default partitioner counts partitions 0..n; anything else is not a topic
        // a producer can use.
        if ids.is_empty()
            || ids
                .iter()
                .enumerate()
                .any(|(at, id)| usize::try_from(*id) != Ok(at))
        {
            return Err(ExportError::Connect(format!(
                "topic {} has partitions {ids:?}, expected 0..n",
                self.topic
            )));
        }
        let mut partitions = Vec::with_capacity(ids.len());
        for id in ids {
            let partition = client
                .partition_client(self.topic.clone(), id, UnknownTopicHandling::Error)
                .await
                .map_err(|error| ExportError::Produce {
                    partition: id,
                    cause: error.to_string(),
                })?;
            partitions.push(partition);
        }
        Ok(Connection {
            _client: client,
            partitions,
        })
    }

    async fn send_batch(&mut self, batch: &[CloudEvent]) -> Result<(), ExportError> {
        if self.connection.is_none() {
            self.connection = Some(self.connect().await?);
        }
        let Some(connection) = &self.connection else {
            return Err(ExportError::Connect("no connection".to_owned()));
        };
        let now = Utc::now();
        let mut by_partition: BTreeMap<usize, Vec<Record>> = BTreeMap::new();
        for event in batch {
            let partition =
                partition_of(event.partition_key.as_bytes(), connection.partitions.len());
            by_partition
                .entry(partition)
                .or_default()
                .push(record(event, now));
        }
        for (index, records) in by_partition {
            let Some(partition) = connection.partitions.get(index) else {
                continue;
            };
            partition
                .produce(records, Compression::NoCompression)
                .await
                .map_err(|error| ExportError::Produce {
                    partition: partition.partition(),
                    cause: error.to_string(),
                })?;
        }
        Ok(())
    }
}

/// The record of `event`: key, structured-mode value and header; the record's timestamp
/// is the event's time when it parses, else `now`.
fn record(event: &CloudEvent, now: DateTime<Utc>) -> Record {
    let timestamp = DateTime::parse_from_rfc3339(&event.time)
        .map(|time| time.to_utc())
        .unwrap_or(now);
    Record {
        key: Some(event.partition_key.clone().into_bytes()),
        value: Some(event.to_json()),
        headers: BTreeMap::from([(
            "content-type".to_owned(),
            STRUCTURED_CONTENT_TYPE.as_bytes().to_vec(),
        )]),
        timestamp,
    }
}

impl Sink for KafkaSink {
    async fn send(&mut self, batch: &[CloudEvent]) -> Result<(), ExportError> {
        let sent = tokio::time::timeout(SEND_TIMEOUT, self.send_batch(batch)).await;
        let result = sent.unwrap_or(Err(ExportError::TimedOut(SEND_TIMEOUT)));
        if result.is_err() {
            // Start afresh next time: the broker may have restarted or lost the topic.
            self.connection = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_carries_the_key_the_event_and_the_content_type() {
        let event = CloudEvent {
            specversion: "1.0",
            id: "1".into(),
            source: "keysync/test".into(),
            event_type: "io.keysync.test".into(),
            subject: "org".into(),
            time: "2026-12-01T14:00:05.250Z".into(),
            datacontenttype: "application/json",
            data: serde_json::json!({"n": 1}),
            partition_key: "org".into(),
        };
        let now = Utc::now();
        let record = record(&event, now);
        assert_eq!(record.key.as_deref(), Some(&b"org"[..]));
        assert_eq!(record.value, Some(event.to_json()));
        assert_eq!(
            record.headers.get("content-type").map(Vec::as_slice),
            Some(&b"application/cloudevents+json"[..])
        );
        assert_eq!(record.timestamp.timestamp_millis(), 1_796_133_605_250);
        let mut untimed = event;
        untimed.time = "not a time".into();
        assert_eq!(super::record(&untimed, now).timestamp, now);
    }
}
