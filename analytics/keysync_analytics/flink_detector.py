"""The anomaly detector on Flink: repeats of an event dropped (`FirstOfEach`, keyed by
the event's `source` and `id`), then a keyed process function (one key per
organization) holding `detector.Detector`'s state in Flink's keyed state (checkpointed,
restored) and its hour closes as event-time timers."""

import time

from pyflink.common import Row, Time, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, StateTtlConfig, ValueStateDescriptor

from .detector import Detector
from .judgement import HourSums
from .settings import Thresholds

ALERT_ROW = Types.ROW_NAMED(["org_id", "event"], [Types.STRING(), Types.STRING()])


# How long an event's id is remembered to drop a repeat: keysync's export sends an
# event again when a batch's acknowledgement was lost, within seconds to minutes.
REPEAT_WINDOW = Time.hours(2)


class FirstOfEach(KeyedProcessFunction):
    """Passes the first record of each key (`source` and `id`) and drops the others;
    a key is remembered for REPEAT_WINDOW (Flink's state time-to-live forgets it)."""

    def open(self, runtime_context: RuntimeContext):
        seen = ValueStateDescriptor("seen", Types.BOOLEAN())
        seen.enable_time_to_live(StateTtlConfig.new_builder(REPEAT_WINDOW).build())
        self.seen = runtime_context.get_state(seen)

    def process_element(self, row, ctx: "KeyedProcessFunction.Context"):
        if self.seen.value() is None:
            self.seen.update(True)
            yield row


def event_key(row) -> str:
    """What identifies an event: its `source` and `id` (keysync's export contract)."""
    return f"{row['source']}\0{row['id']}"


class _KeyedState:
    """`detector.OrgState` over the current key's Flink state."""

    def __init__(self, function: "DetectorFunction"):
        self.f = function

    def hour(self, hour_ms):
        sums = self.f.hours.get(hour_ms)
        return None if sums is None else HourSums(*sums)

    def put_hour(self, hour_ms, sums):
        self.f.hours.put(hour_ms, [sums.requests, sums.refused, sums.upstream_5xx])

    def remove_hour(self, hour_ms):
        self.f.hours.remove(hour_ms)

    def first_hour(self):
        return self.f.first_hour.value()

    def set_first_hour(self, hour_ms):
        self.f.first_hour.update(hour_ms)

    def alerted(self, key):
        return self.f.alert_keys.contains(key)

    def mark_alerted(self, key):
        self.f.alert_keys.put(key, True)

    def remove_alert(self, key):
        self.f.alert_keys.remove(key)


class DetectorFunction(KeyedProcessFunction):
    def __init__(self, thresholds: Thresholds, close_delay_ms: int):
        self.thresholds = thresholds
        self.close_delay_ms = close_delay_ms

    def open(self, runtime_context: RuntimeContext):
        self.detector = Detector(self.thresholds, self.close_delay_ms)
        self.hours = runtime_context.get_map_state(
            MapStateDescriptor("hours", Types.LONG(), Types.PICKLED_BYTE_ARRAY())
        )
        self.first_hour = runtime_context.get_state(
            ValueStateDescriptor("first_hour", Types.LONG())
        )
        self.alert_keys = runtime_context.get_map_state(
            MapStateDescriptor("alerts", Types.STRING(), Types.BOOLEAN())
        )
        self.state = _KeyedState(self)

    def process_element(self, row, ctx: "KeyedProcessFunction.Context"):
        org_id = row["org_id"]
        alerts, timers = self.detector.on_usage(
            self.state,
            org_id,
            ctx.timestamp(),
            row["outcome"] or "",
            int(row["requests"]),
            ctx.timer_service().current_watermark(),
            _now_ms(),
        )
        for at in timers:
            ctx.timer_service().register_event_time_timer(at)
        for event in alerts:
            yield Row(org_id, event)

    def on_timer(self, timestamp: int, ctx: "KeyedProcessFunction.OnTimerContext"):
        org_id = ctx.get_current_key()
        alerts, timers = self.detector.on_close(self.state, org_id, timestamp, _now_ms())
        for at in timers:
            ctx.timer_service().register_event_time_timer(at)
        for event in alerts:
            yield Row(org_id, event)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
