"""The detector's rules over a stream: when hours are judged, once per kind and hour,
organizations too new left alone, silent ones still judged, the state bounded."""

import json
import unittest

from keysync_analytics.anomaly_event import rfc3339_ms
from keysync_analytics.detector import HOUR_MS, NO_WATERMARK, WEEK_MS, DictState, Detector
from keysync_analytics.settings import Thresholds

ORG = "00000000-0000-0000-0000-00000000000a"
# 2026-12-04T10:00Z, the hour judged.
NOW_HOUR = 1_796_378_400_000
DELAY = 60_000


class Stream:
    """Feeds one organization's events to a detector, in order, as Flink would: the
    watermark follows the events' time, timers fire when it passes them."""

    def __init__(self, thresholds=Thresholds(spike_floor=50)):
        self.detector = Detector(thresholds, DELAY)
        self.state = DictState()
        self.timers = set()
        self.watermark = NO_WATERMARK
        self.alerts = []

    def event(self, time_ms, requests, outcome="2xx"):
        self.advance(time_ms)
        alerts, timers = self.detector.on_usage(
            self.state, ORG, time_ms, outcome, requests, self.watermark, time_ms
        )
        self.timers.update(timers)
        self.alerts.extend(json.loads(alert) for alert in alerts)

    def advance(self, watermark):
        while any(t <= watermark for t in self.timers):
            at = min(self.timers)
            self.timers.discard(at)
            alerts, timers = self.detector.on_close(self.state, ORG, at, at)
            self.timers.update(timers)
            self.alerts.extend(json.loads(alert) for alert in alerts)
        self.watermark = max(self.watermark, watermark)

    def history(self, weeks, requests_an_hour, until=NOW_HOUR):
        hour = until - weeks * WEEK_MS
        while hour < until:
            self.event(hour + 30 * 60_000, requests_an_hour)
            hour += HOUR_MS


class DetectorTest(unittest.TestCase):
    def test_a_spike_in_the_running_hour_raises_one_alert(self):
        stream = Stream()
        stream.history(5, 2)
        self.assertEqual(stream.alerts, [])
        stream.event(NOW_HOUR + 60_000, 30)
        self.assertEqual(stream.alerts, [])
        stream.event(NOW_HOUR + 70_000, 30)
        self.assertEqual(len(stream.alerts), 1)
        data = stream.alerts[0]["data"]
        self.assertEqual(data["kind"], "spike")
        self.assertEqual(data["hour_complete"], False)
        self.assertEqual((data["observed"], data["baseline"], data["threshold"]), (60.0, 2.0, 50.0))
        # More of it, the hour's close, a late event while it is the last hour over:
        # still the one alert.
        stream.event(NOW_HOUR + 80_000, 30)
        stream.advance(NOW_HOUR + HOUR_MS + DELAY)
        stream.event(NOW_HOUR + HOUR_MS - 1, 30)
        stream.advance(NOW_HOUR + 2 * HOUR_MS + DELAY)
        self.assertEqual(len(stream.alerts), 1, stream.alerts)
        # Its alerts forgotten once it is no longer judged.
        self.assertEqual(stream.state.alert_keys, set())

    def test_an_organization_too_new_is_not_judged(self):
        stream = Stream()
        # Traffic since three weeks and a half: the baseline needs four.
        stream.history(3, 2, until=NOW_HOUR - 4 * 24 * HOUR_MS)
        stream.event(NOW_HOUR - 3 * 24 * HOUR_MS, 2)
        stream.event(NOW_HOUR + 60_000, 10_000)
        stream.advance(NOW_HOUR + 2 * HOUR_MS + DELAY)
        self.assertEqual(stream.alerts, [])

    def test_a_busy_organization_gone_silent_is_judged_at_the_close(self):
        stream = Stream(Thresholds())
        stream.history(5, 2_000)
        # Not one event this hour; the stream's time moves on with other traffic.
        stream.advance(NOW_HOUR + HOUR_MS + DELAY - 1)
        self.assertEqual(stream.alerts, [])
        stream.advance(NOW_HOUR + HOUR_MS + DELAY)
        self.assertEqual([a["data"]["kind"] for a in stream.alerts], ["drop"])
        data = stream.alerts[0]["data"]
        self.assertEqual(data["hour_complete"], True)
        self.assertEqual((data["requests"], data["baseline"], data["threshold"]), (0, 2000.0, 100.0))

    def test_shares_are_judged_once_the_hour_is_whole(self):
        stream = Stream(Thresholds())
        stream.history(5, 1_000)
        stream.event(NOW_HOUR + 60_000, 900)
        stream.event(NOW_HOUR + 70_000, 100, outcome="rate_limited")
        self.assertEqual(stream.alerts, [])
        stream.advance(NOW_HOUR + HOUR_MS + DELAY)
        self.assertEqual([a["data"]["kind"] for a in stream.alerts], ["refusals"])
        self.assertEqual(stream.alerts[0]["data"]["observed"], 0.1)

    def test_state_keeps_only_the_baseline_weeks(self):
        stream = Stream()
        stream.history(6, 2)
        stream.advance(NOW_HOUR + HOUR_MS + DELAY)
        # The baseline weeks of the hour over (it may be judged again), nothing older.
        self.assertEqual(min(stream.state.sums), NOW_HOUR - 4 * WEEK_MS)
        self.assertEqual(len(stream.state.sums), 4 * 7 * 24)
        # As the weeks go by with traffic, still as much (and the hour over).
        stream.history(2, 2, until=NOW_HOUR + 2 * WEEK_MS)
        stream.advance(NOW_HOUR + 2 * WEEK_MS + DELAY)
        self.assertEqual(min(stream.state.sums), NOW_HOUR - 2 * WEEK_MS - HOUR_MS)
        self.assertEqual(len(stream.state.sums), 4 * 7 * 24 + 1)

    def test_a_late_event_of_the_last_hour_over_is_judged_with_it(self):
        stream = Stream(Thresholds())
        stream.history(5, 1_000)
        stream.event(NOW_HOUR + 60_000, 900)
        stream.advance(NOW_HOUR + HOUR_MS + DELAY)
        self.assertEqual(stream.alerts, [])
        # A flush cut in the hour arrives after its close: the hour is judged again.
        stream.event(NOW_HOUR + HOUR_MS - 1, 100, outcome="5xx")
        self.assertEqual([a["data"]["kind"] for a in stream.alerts], ["upstream_5xx"])
        # Once the next hour is over too (a drop, that one), it is not judged any more.
        stream.advance(NOW_HOUR + 2 * HOUR_MS + DELAY)
        stream.event(NOW_HOUR + HOUR_MS - 1, 5_000, outcome="rate_limited")
        judged = [(a["data"]["hour"], a["data"]["kind"]) for a in stream.alerts]
        self.assertEqual(
            judged,
            [(rfc3339_ms(NOW_HOUR), "upstream_5xx"), (rfc3339_ms(NOW_HOUR + HOUR_MS), "drop")],
        )


if __name__ == "__main__":
    unittest.main()
