"""What the Flink job runs with, read from its environment: where the events are
(`KEYSYNC_ANALYTICS_*`) and the anomaly thresholds, under keysync's own names and with
its defaults and bounds (`KEYSYNC_ANOMALY_*`, keysync/src/anomaly/settings.rs), so that
one set of values configures both. A bad value stops the job before it starts, naming
the variable and what it expects (never echoing the value: it may be anything)."""

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping


class SettingsError(ValueError):
    """A variable whose value is not what it must be."""


@dataclass(frozen=True)
class Thresholds:
    """The thresholds of the four kinds (keysync's `Thresholds`, same defaults)."""

    baseline_weeks: int = 4
    spike_factor: float = 5.0
    spike_floor: int = 1000
    drop_busy_floor: int = 1000
    drop_ratio: float = 0.05
    share_factor: float = 3.0
    share_min: float = 0.05
    share_floor: int = 100


@dataclass(frozen=True)
class Settings:
    """Everything the job is configured with."""

    # Kafka bootstrap servers, `host:port[,host:port...]`.
    brokers: str
    # The topic keysync exports usage events to (its KEYSYNC_USAGE_EXPORT_TOPIC).
    usage_topic: str = "keysync.usage"
    # Where the job writes its anomaly alerts (io.keysync.anomaly.v1 events).
    alerts_topic: str = "keysync.analytics.alerts"
    # Where the job writes the per-minute aggregates (an upsert topic: compact it).
    minutes_topic: str = "keysync.analytics.minutes"
    # The consumer group whose committed offsets the job resumes from.
    group_id: str = "keysync-analytics"
    # Where a group without committed offsets starts: `earliest` or `latest`.
    starting_offsets: str = "earliest"
    # How long after an hour ends it is judged whole (keysync's close delay), in ms.
    close_delay_ms: int = 60_000
    thresholds: Thresholds = field(default_factory=Thresholds)


MAX_BASELINE_WEEKS = 12


# Every variable the job reads, with its default as keysync's documentation writes it
# (docs/configuration.md); each is read by its parser in PARSERS.
DEFAULTS = {
    "KEYSYNC_ANALYTICS_BROKERS": "",
    "KEYSYNC_ANALYTICS_USAGE_TOPIC": "keysync.usage",
    "KEYSYNC_ANALYTICS_ALERTS_TOPIC": "keysync.analytics.alerts",
    "KEYSYNC_ANALYTICS_MINUTES_TOPIC": "keysync.analytics.minutes",
    "KEYSYNC_ANALYTICS_GROUP_ID": "keysync-analytics",
    "KEYSYNC_ANALYTICS_STARTING_OFFSETS": "earliest",
    "KEYSYNC_ANOMALY_CLOSE_DELAY": "1m",
    "KEYSYNC_ANOMALY_BASELINE_WEEKS": "4",
    "KEYSYNC_ANOMALY_SPIKE_FACTOR": "5",
    "KEYSYNC_ANOMALY_SPIKE_FLOOR": "1000",
    "KEYSYNC_ANOMALY_DROP_BUSY_FLOOR": "1000",
    "KEYSYNC_ANOMALY_DROP_RATIO": "5%",
    "KEYSYNC_ANOMALY_SHARE_FACTOR": "3",
    "KEYSYNC_ANOMALY_SHARE_MIN": "5%",
    "KEYSYNC_ANOMALY_SHARE_FLOOR": "100",
}


def from_environment(environment: Mapping[str, str]) -> Settings:
    """The settings of `environment` (`os.environ`, or a dict in tests)."""

    def read(name: str) -> Any:
        value = environment.get(name) or DEFAULTS[name]
        try:
            return PARSERS[name](value)
        except SettingsError as error:
            raise SettingsError(f"{name}: {error}") from None

    if not environment.get("KEYSYNC_ANALYTICS_BROKERS"):
        raise SettingsError("KEYSYNC_ANALYTICS_BROKERS: required (host:port of Kafka)")
    return Settings(
        brokers=read("KEYSYNC_ANALYTICS_BROKERS"),
        usage_topic=read("KEYSYNC_ANALYTICS_USAGE_TOPIC"),
        alerts_topic=read("KEYSYNC_ANALYTICS_ALERTS_TOPIC"),
        minutes_topic=read("KEYSYNC_ANALYTICS_MINUTES_TOPIC"),
        group_id=read("KEYSYNC_ANALYTICS_GROUP_ID"),
        starting_offsets=read("KEYSYNC_ANALYTICS_STARTING_OFFSETS"),
        close_delay_ms=read("KEYSYNC_ANOMALY_CLOSE_DELAY"),
        thresholds=Thresholds(
            baseline_weeks=read("KEYSYNC_ANOMALY_BASELINE_WEEKS"),
            spike_factor=read("KEYSYNC_ANOMALY_SPIKE_FACTOR"),
            spike_floor=read("KEYSYNC_ANOMALY_SPIKE_FLOOR"),
            drop_busy_floor=read("KEYSYNC_ANOMALY_DROP_BUSY_FLOOR"),
            drop_ratio=read("KEYSYNC_ANOMALY_DROP_RATIO"),
            share_factor=read("KEYSYNC_ANOMALY_SHARE_FACTOR"),
            share_min=read("KEYSYNC_ANOMALY_SHARE_MIN"),
            share_floor=read("KEYSYNC_ANOMALY_SHARE_FLOOR"),
        ),
    )


def parse_factor(value: str) -> float:
    """A factor: a number above 1, at most 1000."""
    number = _number(value)
    if number is not None and 1.0 < number <= 1000.0:
        return number
    raise SettingsError("expected a number above 1 and at most 1000, such as 5 or 2.5")


def parse_share(value: str) -> float:
    """A share: a percentage (`5%`) or a fraction (`0.05`), above 0 and below 1."""
    share = None
    if value.endswith("%"):
        percent = _number(value[:-1].strip())
        share = None if percent is None else percent / 100.0
    else:
        share = _number(value)
    if share is not None and 0.0 < share < 1.0:
        return share
    raise SettingsError(
        "expected a percentage above 0% and below 100% (5%), or a fraction (0.05)"
    )


def parse_floor(value: str) -> int:
    """A floor of requests in an hour: a whole number, at least 1."""
    if re.fullmatch(r"[+]?[0-9]+", value) and int(value) >= 1:
        return int(value)
    raise SettingsError("expected a whole number of requests, at least 1")


def parse_weeks(value: str) -> int:
    """Baseline weeks: 1 to MAX_BASELINE_WEEKS."""
    if re.fullmatch(r"[0-9]+", value) and 1 <= int(value) <= MAX_BASELINE_WEEKS:
        return int(value)
    raise SettingsError(f"expected a whole number of weeks from 1 to {MAX_BASELINE_WEEKS}")


_DURATION_PART = re.compile(r"([0-9]+)\s*(ms|s|m|h)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def parse_close_delay(value: str) -> int:
    """A duration from 0s to under an hour (`90s`, `1m`, `1m30s`), in milliseconds."""
    parts = _DURATION_PART.findall(value)
    if not parts or _DURATION_PART.sub("", value).strip():
        raise SettingsError("expected a duration such as 60s, 1m or 1m30s")
    delay = sum(int(amount) * _UNIT_MS[unit] for amount, unit in parts)
    if delay >= _UNIT_MS["h"]:
        raise SettingsError("must be shorter than an hour")
    return delay


def parse_topic(value: str) -> str:
    """A Kafka topic or group name: letters, digits, `.`, `_`, `-`."""
    if re.fullmatch(r"[A-Za-z0-9._-]{1,249}", value):
        return value
    raise SettingsError("expected a name of letters, digits, '.', '_' or '-'")


def parse_starting_offsets(value: str) -> str:
    if value in ("earliest", "latest"):
        return value
    raise SettingsError("expected earliest or latest")


def _number(value: str):
    # As Rust's f64 parse reads it: no white space, no digit separators.
    if not value or value != value.strip() or "_" in value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# How each variable of DEFAULTS is read.
PARSERS: Dict[str, Callable[[str], Any]] = {
    "KEYSYNC_ANALYTICS_BROKERS": lambda value: value,
    "KEYSYNC_ANALYTICS_USAGE_TOPIC": parse_topic,
    "KEYSYNC_ANALYTICS_ALERTS_TOPIC": parse_topic,
    "KEYSYNC_ANALYTICS_MINUTES_TOPIC": parse_topic,
    "KEYSYNC_ANALYTICS_GROUP_ID": parse_topic,
    "KEYSYNC_ANALYTICS_STARTING_OFFSETS": parse_starting_offsets,
    "KEYSYNC_ANOMALY_CLOSE_DELAY": parse_close_delay,
    "KEYSYNC_ANOMALY_BASELINE_WEEKS": parse_weeks,
    "KEYSYNC_ANOMALY_SPIKE_FACTOR": parse_factor,
    "KEYSYNC_ANOMALY_SPIKE_FLOOR": parse_floor,
    "KEYSYNC_ANOMALY_DROP_BUSY_FLOOR": parse_floor,
    "KEYSYNC_ANOMALY_DROP_RATIO": parse_share,
    "KEYSYNC_ANOMALY_SHARE_FACTOR": parse_factor,
    "KEYSYNC_ANOMALY_SHARE_MIN": parse_share,
    "KEYSYNC_ANOMALY_SHARE_FLOOR": parse_floor,
}
