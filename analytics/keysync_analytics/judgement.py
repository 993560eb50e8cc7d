"""Judging one hour of one organization against its baseline: keysync's own rules
(keysync/src/anomaly/judgement.rs, the export's contract in docs/export.md), reproduced
to the bit: IEEE doubles (Python floats), computed in the same order.

- spike: requests >= max(spike_factor * median, spike_floor), the median of the
  baseline hours' requests (the mean of the two middle ones for an even count).
- drop: only a busy hour (median >= drop_busy_floor): requests <= drop_ratio * median.
- refusals, upstream_5xx: share = count / requests against the baseline's share
  sum(count) / sum(requests) (0 without requests): share >= max(share_min,
  min(share_factor * baseline, (1 + baseline) / 2)) and share > baseline, with
  count >= share_floor.

A running hour is judged for spikes alone: requests only grow within an hour.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

from .settings import Thresholds

SPIKE = "spike"
DROP = "drop"
REFUSALS = "refusals"
UPSTREAM_5XX = "upstream_5xx"

# i64::MAX: keysync's sums saturate there.
_MAX = 9_223_372_036_854_775_807


@dataclass(frozen=True)
class HourSums:
    """An organization's requests in one hour, over its keys and endpoints."""

    requests: int = 0
    # Refused by the gateway: rate_limited, quota_exceeded, policy_denied.
    refused: int = 0
    # Answered 5xx by the upstream.
    upstream_5xx: int = 0

    def plus(self, other: "HourSums") -> "HourSums":
        return HourSums(
            _saturating(self.requests + other.requests),
            _saturating(self.refused + other.refused),
            _saturating(self.upstream_5xx + other.upstream_5xx),
        )


@dataclass(frozen=True)
class Finding:
    """How one hour departed from its baseline (the fields of the alert's data)."""

    kind: str
    observed: float
    baseline: float
    threshold: float
    requests: int
    matching_requests: int


def judge(
    hour: HourSums,
    baseline: Sequence[HourSums],
    thresholds: Thresholds,
    complete: bool,
) -> List[Finding]:
    """What `hour` departed in, judged against `baseline` (one entry per week, an hour
    without traffic as zeros); a running hour (`complete` false) for spikes alone."""
    findings: List[Finding] = []
    if not baseline:
        return findings
    middle = median([sums.requests for sums in baseline])
    observed = float(hour.requests)
    spike_threshold = max(thresholds.spike_factor * middle, float(thresholds.spike_floor))
    if observed >= spike_threshold:
        findings.append(
            Finding(SPIKE, observed, middle, spike_threshold, hour.requests, hour.requests)
        )
    if not complete:
        return findings
    drop_threshold = thresholds.drop_ratio * middle
    if middle >= float(thresholds.drop_busy_floor) and observed <= drop_threshold:
        findings.append(
            Finding(DROP, observed, middle, drop_threshold, hour.requests, hour.requests)
        )
    total = _sum(sums.requests for sums in baseline)
    for kind, count, baseline_count in (
        (REFUSALS, hour.refused, _sum(sums.refused for sums in baseline)),
        (UPSTREAM_5XX, hour.upstream_5xx, _sum(sums.upstream_5xx for sums in baseline)),
    ):
        finding = _share_jump(kind, hour.requests, count, total, baseline_count, thresholds)
        if finding is not None:
            findings.append(finding)
    return findings


def _share_jump(
    kind: str,
    requests: int,
    count: int,
    baseline_requests: int,
    baseline_count: int,
    thresholds: Thresholds,
) -> Optional[Finding]:
    if count < thresholds.share_floor or requests <= 0:
        return None
    share = float(count) / float(requests)
    baseline = float(baseline_count) / float(baseline_requests) if baseline_requests > 0 else 0.0
    threshold = max(
        min(thresholds.share_factor * baseline, (1.0 + baseline) / 2.0), thresholds.share_min
    )
    if share >= threshold and share > baseline:
        return Finding(kind, share, baseline, threshold, requests, count)
    return None


def median(values: Sequence[int]) -> float:
    """The median (the mean of the two middle ones for an even count); 0 for none."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if not ordered:
        return 0.0
    if len(ordered) % 2 == 1:
        return float(ordered[middle])
    return (float(ordered[middle - 1]) + float(ordered[middle])) / 2.0


def _sum(values) -> int:
    total = 0
    for value in values:
        total = _saturating(total + value)
    return total


def _saturating(value: int) -> int:
    return min(value, _MAX)
