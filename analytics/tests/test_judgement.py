"""The job's judgement against the cases keysync's own judgement is tested with
(judgement_cases.json): every finding, every number, to the bit."""

import dataclasses
import json
import os
import unittest

from keysync_analytics.judgement import HourSums, judge, median
from keysync_analytics.settings import Thresholds

CASES = os.path.join(os.path.dirname(__file__), "judgement_cases.json")


class JudgementTest(unittest.TestCase):
    def test_every_shared_case_finds_what_keysync_finds(self):
        with open(CASES, encoding="utf-8") as file:
            cases = json.load(file)["cases"]
        self.assertGreaterEqual(len(cases), 20)
        for case in cases:
            with self.subTest(case["name"]):
                thresholds = dataclasses.replace(Thresholds(), **case.get("thresholds", {}))
                findings = judge(
                    HourSums(*case["hour"]),
                    [HourSums(*week) for week in case["baseline"]],
                    thresholds,
                    case["complete"],
                )
                self.assertEqual([dataclasses.asdict(f) for f in findings], case["findings"])

    def test_medians_of_odd_and_even_counts(self):
        self.assertEqual(median([3, 1, 2]), 2.0)
        self.assertEqual(median([4, 1, 3, 2]), 2.5)
        self.assertEqual(median([0, 0, 0, 900]), 0.0)
        self.assertEqual(median([7]), 7.0)
        self.assertEqual(median([]), 0.0)

    def test_sums_saturate_as_keysyncs_do(self):
        big = HourSums(2**63 - 1, 0, 0)
        self.assertEqual(big.plus(HourSums(5, 0, 0)).requests, 2**63 - 1)


if __name__ == "__main__":
    unittest.main()
