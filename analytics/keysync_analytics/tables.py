"""The job's Kafka tables, in Flink SQL: keysync's usage events as they come (the
topic keysync exports to), the per-minute aggregates (an upsert topic), and the
anomaly alerts (CloudEvents records as keysync writes them: key the organization,
header `content-type: application/cloudevents+json`)."""

from .settings import Settings

USAGE_EVENT_TYPE = "io.keysync.usage.v1"
# The eight values of a usage counter, as the events' data and `keysync usage` name them.
VALUES = (
    "requests",
    "duration_us",
    "le_10ms",
    "le_100ms",
    "le_1s",
    "over_1s",
    "request_bytes",
    "response_bytes",
)


def _kafka(settings: Settings, topic: str) -> str:
    return (
        f"'topic' = '{topic}', 'properties.bootstrap.servers' = '{settings.brokers}'"
    )


def usage_events(settings: Settings) -> str:
    """Every event of the export's topic. Other types (quota and anomaly alerts) share
    it: their fields are left null and the queries keep `io.keysync.usage.v1` alone.
    The event time is the flush's cut time (`data.window_end`), what keysync counts an
    hour by; the watermark follows it (lateness is the close delay's business)."""
    values = ", ".join(f"{name} BIGINT" for name in VALUES)
    return f"""
CREATE TABLE usage_events (
  `type` STRING,
  `id` STRING,
  `source` STRING,
  `data` ROW<org_id STRING, key_id STRING, endpoint STRING, outcome STRING, {values},
             window_end TIMESTAMP_LTZ(3)>,
  event_time AS `data`.window_end,
  proc_time AS PROCTIME(),
  WATERMARK FOR event_time AS event_time
) WITH (
  'connector' = 'kafka', {_kafka(settings, settings.usage_topic)},
  'properties.group.id' = '{settings.group_id}',
  'properties.auto.offset.reset' = '{settings.starting_offsets}',
  'scan.startup.mode' = 'group-offsets',
  'scan.watermark.idle-timeout' = '1 min',
  'format' = 'json',
  'json.timestamp-format.standard' = 'ISO-8601',
  'json.ignore-parse-errors' = 'true',
  'json.fail-on-missing-field' = 'false'
)"""


def usage_minutes(settings: Settings) -> str:
    """The per-minute aggregates: one record per (org, key, endpoint, outcome, minute),
    written again whenever a later flush adds to it; the last one of a key holds the
    sums (a compacted topic keeps just that)."""
    values = ", ".join(f"{name} BIGINT" for name in VALUES)
    return f"""
CREATE TABLE usage_minutes (
  org_id STRING, key_id STRING, endpoint STRING, outcome STRING, `minute` STRING,
  {values},
  events BIGINT,
  PRIMARY KEY (org_id, key_id, endpoint, outcome, `minute`) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka', {_kafka(settings, settings.minutes_topic)},
  'key.format' = 'json',
  'value.format' = 'json'
)"""


def anomaly_alerts(settings: Settings) -> str:
    """The alerts: the event's JSON as the value, the organization as the key."""
    return f"""
CREATE TABLE anomaly_alerts (
  org_id STRING,
  event STRING,
  headers MAP<STRING, BYTES> METADATA
) WITH (
  'connector' = 'kafka', {_kafka(settings, settings.alerts_topic)},
  'key.format' = 'raw',
  'key.fields' = 'org_id',
  'value.format' = 'raw',
  'value.fields-include' = 'EXCEPT_KEY',
  'sink.partitioner' = 'default'
)"""


# Each event once (keysync's export is at least once: a retried batch repeats its
# `source` and `id`), for the minutes and the detector alike: the first of each is kept
# (Flink's deduplication on processing time, its state kept `table.exec.state.ttl`),
# and the event time stays the stream's time.
USAGE_ONCE_VIEW = f"""
CREATE TEMPORARY VIEW usage_once AS
SELECT `source`, `id`, org_id, key_id, endpoint, outcome, event_time,
       {", ".join(VALUES)}
FROM (
  SELECT `source`, `id`, `data`.org_id AS org_id, `data`.key_id AS key_id,
         COALESCE(`data`.endpoint, '-') AS endpoint, `data`.outcome AS outcome, event_time,
         {", ".join(f"`data`.{name} AS {name}" for name in VALUES)},
         ROW_NUMBER() OVER (PARTITION BY `source`, `id` ORDER BY proc_time) AS nth
  FROM usage_events
  WHERE `type` = '{USAGE_EVENT_TYPE}' AND `data`.org_id IS NOT NULL
        AND `data`.requests IS NOT NULL
)
WHERE nth = 1"""

# Summed by minute of the flush's cut time.
MINUTE = "DATE_FORMAT(event_time, 'yyyy-MM-dd''T''HH:mm:00.000''Z''')"
MINUTES_QUERY = f"""
INSERT INTO usage_minutes
SELECT org_id, key_id, endpoint, outcome, {MINUTE},
       {", ".join(f"SUM({name})" for name in VALUES)},
       COUNT(*)
FROM usage_once
GROUP BY org_id, key_id, endpoint, outcome, {MINUTE}"""

# What the anomaly detector reads, to be keyed by organization; the event time travels
# as the records' timestamp.
DETECTOR_QUERY = "SELECT org_id, outcome, requests, event_time FROM usage_once"

ALERTS_QUERY = """
SELECT org_id, event, MAP['content-type', CAST('application/cloudevents+json' AS BYTES)]
FROM raised_alerts"""
