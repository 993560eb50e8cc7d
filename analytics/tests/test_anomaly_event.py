"""The alert's event as keysync writes it (keysync/src/anomaly/event.rs)."""

import json
import unittest

from keysync_analytics.anomaly_event import anomaly_event, event_id, rfc3339_ms
from keysync_analytics.judgement import Finding

ORG = "00000000-0000-0000-0000-00000000000a"
HOUR_MS = 1_796_133_600_000  # 2026-12-01T14:00:00Z


class AnomalyEventTest(unittest.TestCase):
    def test_the_id_is_the_one_keysync_derives(self):
        # keysync's test pins the same id for the same alert.
        self.assertEqual(event_id(ORG, "spike", HOUR_MS), "195134ae-2237-855a-82b1-e3cb722ab812")
        ids = {
            event_id(ORG, "spike", HOUR_MS),
            event_id("00000000-0000-0000-0000-00000000000b", "spike", HOUR_MS),
            event_id(ORG, "drop", HOUR_MS),
            event_id(ORG, "spike", HOUR_MS + 3_600_000),
        }
        self.assertEqual(len(ids), 4)

    def test_the_event_has_every_field_of_keysyncs(self):
        finding = Finding("spike", 6000.0, 1050.0, 5250.0, 6000, 6000)
        text = anomaly_event(ORG, HOUR_MS, True, 4, finding, HOUR_MS + 3_662_345)
        self.assertEqual(
            json.loads(text),
            {
                "specversion": "1.0",
                "id": "195134ae-2237-855a-82b1-e3cb722ab812",
                "source": "keysync/anomaly",
                "type": "io.keysync.anomaly.v1",
                "subject": ORG,
                "time": "2026-12-01T15:01:02.345Z",
                "datacontenttype": "application/json",
                "data": {
                    "org_id": ORG,
                    "kind": "spike",
                    "hour": "2026-12-01T14:00:00.000Z",
                    "hour_complete": True,
                    "observed": 6000.0,
                    "baseline": 1050.0,
                    "threshold": 5250.0,
                    "requests": 6000,
                    "matching_requests": 6000,
                    "baseline_weeks": 4,
                },
            },
        )
        # Doubles written as doubles, integers as integers, as serde_json does.
        self.assertIn('"observed":6000.0', text)
        self.assertIn('"requests":6000,', text)

    def test_times_are_utc_with_milliseconds(self):
        self.assertEqual(rfc3339_ms(0), "1970-01-01T00:00:00.000Z")
        self.assertEqual(rfc3339_ms(HOUR_MS + 5_250), "2026-12-01T14:00:05.250Z")


if __name__ == "__main__":
    unittest.main()
