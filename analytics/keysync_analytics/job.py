"""The Flink job: keysync's usage events from Kafka in, the per-minute aggregates and
the anomaly alerts out, in one pipeline (one read of the topic): the aggregates in
Flink SQL, the detector as a keyed process function between two tables."""

import os
import sys
from typing import List, Sequence

from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from . import tables
from .flink_detector import ALERT_ROW, DetectorFunction
from .settings import Settings

# How often the job checkpoints its state and its Kafka offsets.
CHECKPOINT_INTERVAL_MS = 10_000


def build(settings: Settings, jars: Sequence[str]) -> StreamExecutionEnvironment:
    """The job's pipeline, ready to execute; `jars` are the Kafka connector's (none
    where the cluster has them on its class path, as in the operator's image)."""
    config = Configuration()
    if jars:
        config.set_string("pipeline.jars", ";".join(f"file://{jar}" for jar in jars))
    # The Python workers run this very interpreter (the virtualenv with PyFlink).
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    # RocksDB holds the state: with the heap backend, PyFlink 2.0.2's keyed state fails
    # once checkpoints run under load ("A serializer has already been registered for
    # the state"), and the baseline weeks of many organizations outgrow a heap anyway.
    config.set_string("state.backend.type", "rocksdb")
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.enable_checkpointing(CHECKPOINT_INTERVAL_MS)
    # The package itself, for the Python workers that run the detector.
    env.add_python_file(os.path.dirname(os.path.abspath(__file__)))
    t_env = StreamTableEnvironment.create(env)
    table_config = t_env.get_config()
    table_config.set("table.local-time-zone", "UTC")
    # The deduplication's and the minutes' state: an event repeated, or a flush late,
    # by more than this is counted as new.
    table_config.set("table.exec.state.ttl", "2 h")
    table_config.set("pipeline.name", "keysync-analytics")
    for ddl in (
        tables.usage_events(settings),
        tables.usage_minutes(settings),
        tables.anomaly_alerts(settings),
        tables.USAGE_ONCE_VIEW,
    ):
        t_env.execute_sql(ddl)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(tables.MINUTES_QUERY)
    # A changelog stream: `to_data_stream` refuses the deduplication (it plans it as a
    # rank that may update); it only ever inserts, and the event time and watermarks
    # come along as they would.
    usage = t_env.to_changelog_stream(t_env.sql_query(tables.DETECTOR_QUERY))
    alerts = (
        usage.key_by(lambda row: row["org_id"])
        .process(
            DetectorFunction(settings.thresholds, settings.close_delay_ms),
            output_type=ALERT_ROW,
        )
        .name("anomaly detector")
    )
    t_env.create_temporary_view("raised_alerts", t_env.from_data_stream(alerts))
    statements.add_insert("anomaly_alerts", t_env.sql_query(tables.ALERTS_QUERY))
    statements.attach_as_datastream()
    return env


def jars_from(value: str) -> List[str]:
    """`KEYSYNC_FLINK_JARS`: jar paths separated by `;`."""
    return [jar for jar in value.split(";") if jar]
