"""The detector's rules over a stream: when hours are judged, once per kind and hour,
repeats dropped, organizations too new left alone, silent ones still judged."""

import json
import unittest

from keysync_analytics.detector import HOUR_MS, NO_WATERMARK, WEEK_MS, DictState, Detector
from keysync_analytics.settings import Thresholds

ORG = "00000000-0000-0000-0000-00000000000a"
# A Monday 10:00 UTC; the hour judged is this one.
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
        self.count = 0

    def event(self, time_ms, requests, outcome="2xx", event_id=None):
        self.advance(time_ms)
        self.count += 1
        alerts, timers = self.detector.on_usage(
            self.state, ORG, f"gw\0{event_id or self.count}", time_ms, outcome, requests,
            self.watermark, time_ms,
        )
        self.timers.update(timers)
        self.alerts.extend(json.loads(alert) for alert in alerts)

    def advance(self, watermark):
        for at in sorted(t for t in self.timers if t <= watermark):
            self.timers.discard(at)
            alerts = self.detector.on_close(self.state, ORG, at, at)
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
        # More of it, a repeat, the hour's close: still the one alert.
        stream.event(NOW_HOUR + 80_000, 30)
        stream.event(NOW_HOUR + 80_000, 30, event_id="3361")
        stream.event(NOW_HOUR + 80_000, 30, event_id="3361")
        stream.advance(NOW_HOUR + 2 * HOUR_MS + DELAY)
        self.assertEqual(len(stream.alerts), 1, stream.alerts)

    def test_a_repeated_event_is_counted_once(self):
        stream = Stream()
        stream.history(5, 2)
        for _ in range(3):
            stream.event(NOW_HOUR + 60_000, 40, event_id="same")
        self.assertEqual(stream.alerts, [])
        self.assertEqual(stream.state.hour(NOW_HOUR).requests, 40)

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
        oldest = min(stream.state.hours())
        self.assertGreaterEqual(oldest, NOW_HOUR + HOUR_MS - 4 * WEEK_MS)
        self.assertLessEqual(len(stream.state.hours()), 4 * 7 * 24)


if __name__ == "__main__":
    unittest.main()
