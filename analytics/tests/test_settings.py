"""The job reads keysync's anomaly variables with keysync's defaults and bounds."""

import unittest

from keysync_analytics.settings import SettingsError, Thresholds, from_environment


class SettingsTest(unittest.TestCase):
    def test_the_defaults_are_keysyncs(self):
        settings = from_environment({"KEYSYNC_ANALYTICS_BROKERS": "kafka:9092"})
        self.assertEqual(settings.thresholds, Thresholds())
        self.assertEqual(
            Thresholds(),
            Thresholds(4, 5.0, 1000, 1000, 0.05, 3.0, 0.05, 100),
        )
        self.assertEqual(settings.close_delay_ms, 60_000)
        self.assertEqual(settings.usage_topic, "keysync.usage")

    def test_values_are_read_in_keysyncs_units(self):
        settings = from_environment(
            {
                "KEYSYNC_ANALYTICS_BROKERS": "a:9092,b:9092",
                "KEYSYNC_ANOMALY_SPIKE_FACTOR": "2.5",
                "KEYSYNC_ANOMALY_DROP_RATIO": "12.5 %",
                "KEYSYNC_ANOMALY_SHARE_MIN": "0.1",
                "KEYSYNC_ANOMALY_SPIKE_FLOOR": "50",
                "KEYSYNC_ANOMALY_BASELINE_WEEKS": "12",
                "KEYSYNC_ANOMALY_CLOSE_DELAY": "1m30s",
            }
        )
        thresholds = settings.thresholds
        self.assertEqual(thresholds.spike_factor, 2.5)
        self.assertEqual(thresholds.drop_ratio, 0.125)
        self.assertEqual(thresholds.share_min, 0.1)
        self.assertEqual(thresholds.spike_floor, 50)
        self.assertEqual(thresholds.baseline_weeks, 12)
        self.assertEqual(settings.close_delay_ms, 90_000)

    def test_bad_values_name_the_variable_and_not_the_value(self):
        for name, bad in [
            ("KEYSYNC_ANOMALY_SPIKE_FACTOR", "1"),
            ("KEYSYNC_ANOMALY_SPIKE_FACTOR", "NaN"),
            ("KEYSYNC_ANOMALY_SPIKE_FACTOR", "1_000"),
            ("KEYSYNC_ANOMALY_DROP_RATIO", "100%"),
            ("KEYSYNC_ANOMALY_SPIKE_FLOOR", "0"),
            ("KEYSYNC_ANOMALY_BASELINE_WEEKS", "13"),
            ("KEYSYNC_ANOMALY_CLOSE_DELAY", "1h"),
            ("KEYSYNC_ANOMALY_CLOSE_DELAY", "soon"),
            ("KEYSYNC_ANALYTICS_ALERTS_TOPIC", "no spaces"),
            ("KEYSYNC_ANALYTICS_STARTING_OFFSETS", "newest"),
        ]:
            with self.subTest(f"{name}={bad}"):
                with self.assertRaises(SettingsError) as raised:
                    from_environment({"KEYSYNC_ANALYTICS_BROKERS": "k:9092", name: bad})
                self.assertIn(name, str(raised.exception))
            with self.subTest(f"{name} never echoed"):
                with self.assertRaises(SettingsError) as raised:
                    from_environment({"KEYSYNC_ANALYTICS_BROKERS": "k:9092", name: "s3cret value"})
                self.assertNotIn("s3cret", str(raised.exception))

    def test_the_brokers_are_required(self):
        with self.assertRaises(SettingsError):
            from_environment({})


if __name__ == "__main__":
    unittest.main()
