"""The anomaly detector on Flink: a keyed process function (one key per organization)
holding `detector.Detector`'s state in Flink's keyed state (checkpointed, restored) and
its hour closes as event-time timers."""

import time

from pyflink.common import Row, Types
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

    def hours(self):
        return list(self.f.hours.keys())

    def remove_hour(self, hour_ms):
        self.f.hours.remove(hour_ms)

    def first_hour(self):
        return self.f.first_hour.value()

    def set_first_hour(self, hour_ms):
        self.f.first_hour.update(hour_ms)

    def alerted(self, key):
        return self.f.alert_hours.contains(key)

    def mark_alerted(self, key, hour_ms):
        self.f.alert_hours.put(key, hour_ms)

    def alerts(self):
        return list(self.f.alert_hours.items())

    def remove_alert(self, key):
        self.f.alert_hours.remove(key)

    def seen(self, event_key):
        return self.f.seen_ids.contains(event_key)

    def mark_seen(self, event_key, hour_ms):
        self.f.seen_ids.put(event_key, hour_ms)

    def seen_ids(self):
        return list(self.f.seen_ids.items())

    def remove_seen(self, event_key):
        self.f.seen_ids.remove(event_key)


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
        self.alert_hours = runtime_context.get_map_state(
            MapStateDescriptor("alerts", Types.STRING(), Types.LONG())
        )
        self.seen_ids = runtime_context.get_map_state(
            MapStateDescriptor("seen_ids", Types.STRING(), Types.LONG())
        )
        self.state = _KeyedState(self)

    def process_element(self, row, ctx: "KeyedProcessFunction.Context"):
        org_id = row["org_id"]
        alerts, timers = self.detector.on_usage(
            self.state,
            org_id,
            f"{row['source']}\0{row['id']}",
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
        for event in self.detector.on_close(self.state, org_id, timestamp, _now_ms()):
            yield Row(org_id, event)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
