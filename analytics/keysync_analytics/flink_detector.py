"""The anomaly detector on Flink: a keyed process function (one key per organization)
holding `detector.Detector`'s state in Flink's keyed state (checkpointed, restored) and
its hour closes as event-time timers. Its input holds each event once
(`tables.USAGE_ONCE_VIEW`)."""

import time

from pyflink.common import Row, RowKind, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

from .detector import Detector
from .judgement import HourSums
from .settings import Thresholds

ALERT_ROW = Types.ROW_NAMED(["org_id", "event"], [Types.STRING(), Types.STRING()])


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
        if row.get_row_kind() != RowKind.INSERT:
            return  # never sent: each event is inserted once
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
