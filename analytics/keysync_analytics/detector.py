"""One organization's anomaly detection as the stream goes by: its hourly sums, kept
for the baseline weeks, and the judgement of each hour at the moments keysync's own
evaluator would judge it (keysync/src/anomaly/evaluation.rs), with the stream's event
time (the flushes' cut time, the hour an event counts in) standing for keysync's clock.

- Every usage event adds to its hour's sums (repeats of an event, which keysync's
  at-least-once export may send, are dropped before: `tables.USAGE_ONCE_VIEW`).
- The hour still running is judged for spikes on every event (keysync: every
  evaluation period); an event of an hour whose close is past but whose next hour is
  still open is judged as a whole hour (keysync judges the last hour over until the
  next one is over too).
- An hour is judged whole once the stream's time (the watermark) passes its end plus
  the close delay. An organization is judged in hour H when H or one of its baseline
  hours had traffic (keysync reads exactly those organizations), so each hour with
  traffic asks for the judgement of its own close and of the same hour in each of the
  next baseline weeks: a busy organization that goes silent is still judged (a drop).
- An organization is judged only if its first traffic is at or before the oldest
  baseline hour of the hour judged whole (too new otherwise), as keysync does.
- One alert per organization, kind and hour: a spike raised while its hour ran is not
  raised again at its close.
- What no later judgement reads is forgotten at each close, a constant amount of work:
  the hour that has just left the baseline weeks, and the alerts of the hour no longer
  judged.

The state lives behind `OrgState` (a dict in the tests, Flink's keyed state in the
job), so this file holds the rules and no Flink."""

from typing import Dict, List, Optional, Protocol, Set, Tuple

from .anomaly_event import anomaly_event
from .judgement import DROP, REFUSALS, SPIKE, UPSTREAM_5XX, HourSums, judge
from .settings import Thresholds

HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS
# Flink's watermark before any event: Long.MIN_VALUE.
NO_WATERMARK = -(2**63)

REFUSED_OUTCOMES = frozenset(("rate_limited", "quota_exceeded", "policy_denied"))
UPSTREAM_5XX_OUTCOME = "5xx"
KINDS = (SPIKE, DROP, REFUSALS, UPSTREAM_5XX)


class OrgState(Protocol):
    """One organization's state: its hours, its first hour, its alerts."""

    def hour(self, hour_ms: int) -> Optional[HourSums]: ...
    def put_hour(self, hour_ms: int, sums: HourSums) -> None: ...
    def remove_hour(self, hour_ms: int) -> None: ...
    def first_hour(self) -> Optional[int]: ...
    def set_first_hour(self, hour_ms: int) -> None: ...
    def alerted(self, key: str) -> bool: ...
    def mark_alerted(self, key: str) -> None: ...
    def remove_alert(self, key: str) -> None: ...


def hour_of(time_ms: int) -> int:
    return time_ms - time_ms % HOUR_MS


def sums_of(outcome: str, requests: int) -> HourSums:
    """What one usage event adds to its hour."""
    return HourSums(
        requests=requests,
        refused=requests if outcome in REFUSED_OUTCOMES else 0,
        upstream_5xx=requests if outcome == UPSTREAM_5XX_OUTCOME else 0,
    )


class Detector:
    """The rules; one instance serves every organization (the state is passed in)."""

    def __init__(self, thresholds: Thresholds, close_delay_ms: int):
        self.thresholds = thresholds
        self.close_delay_ms = close_delay_ms

    def close_of(self, hour_ms: int) -> int:
        """When `hour_ms` is judged whole: its end plus the close delay."""
        return hour_ms + HOUR_MS + self.close_delay_ms

    def on_usage(
        self,
        state: OrgState,
        org_id: str,
        time_ms: int,
        outcome: str,
        requests: int,
        watermark_ms: int,
        now_ms: int,
    ) -> Tuple[List[str], List[int]]:
        """Counts one usage event; returns the alert events it raised and the times at
        which hours must be judged whole (event-time timers)."""
        hour = hour_of(time_ms)
        before = state.hour(hour)
        state.put_hour(hour, (before or HourSums()).plus(sums_of(outcome, requests)))
        first = state.first_hour()
        if first is None or hour < first:
            state.set_first_hour(hour)
        timers = []
        if before is None:
            # This hour judged whole at its close and, as a baseline hour, in each of the
            # next weeks; forgotten once the last of those is no longer judged.
            weeks = self.thresholds.baseline_weeks
            timers = [self.close_of(hour + week * WEEK_MS) for week in range(weeks + 1)]
            timers.append(self.close_of(hour + weeks * WEEK_MS + HOUR_MS))
        alerts: List[str] = []
        if watermark_ms < self.close_of(hour):
            # Running: spikes only, with keysync's clock at the event's time.
            judged_whole = hour_of(time_ms - self.close_delay_ms) - HOUR_MS
            alerts = self._judge(state, org_id, hour, judged_whole, False, now_ms)
        elif watermark_ms < self.close_of(hour + HOUR_MS):
            # Over, and still the last hour over: judged again with this event in it.
            alerts = self._judge(state, org_id, hour, hour, True, now_ms)
        if alerts:
            # Its alerts are forgotten once it is no longer judged.
            timers.append(self.close_of(hour + HOUR_MS))
        return alerts, timers

    def on_close(
        self, state: OrgState, org_id: str, close_ms: int, now_ms: int
    ) -> Tuple[List[str], List[int]]:
        """Judges whole the hour whose close is `close_ms` (the watermark passed it),
        forgets what no later judgement reads; returns the alert events and timers."""
        hour = close_ms - self.close_delay_ms - HOUR_MS
        alerts = self._judge(state, org_id, hour, hour, True, now_ms)
        self._forget(state, hour)
        return alerts, [self.close_of(hour + HOUR_MS)] if alerts else []

    def _judge(
        self,
        state: OrgState,
        org_id: str,
        hour: int,
        judged_whole: int,
        complete: bool,
        now_ms: int,
    ) -> List[str]:
        weeks = self.thresholds.baseline_weeks
        first = state.first_hour()
        if first is None or first > judged_whole - weeks * WEEK_MS:
            return []  # too new to judge
        baseline = [
            state.hour(hour - week * WEEK_MS) or HourSums() for week in range(1, weeks + 1)
        ]
        sums = state.hour(hour) or HourSums()
        raised = []
        for finding in judge(sums, baseline, self.thresholds, complete):
            key = alert_key(finding.kind, hour)
            if state.alerted(key):
                continue
            state.mark_alerted(key)
            raised.append(anomaly_event(org_id, hour, complete, weeks, finding, now_ms))
        return raised

    def _forget(self, state: OrgState, hour: int) -> None:
        """At the close of `hour`, the hour before is no longer judged: its alerts go,
        and so does the oldest baseline hour it read, which no later hour reads."""
        state.remove_hour(hour - HOUR_MS - self.thresholds.baseline_weeks * WEEK_MS)
        for kind in KINDS:
            state.remove_alert(alert_key(kind, hour - HOUR_MS))


def alert_key(kind: str, hour_ms: int) -> str:
    return f"{kind}@{hour_ms}"


class DictState:
    """`OrgState` in plain dictionaries (the tests)."""

    def __init__(self) -> None:
        self.sums: Dict[int, HourSums] = {}
        self.first: Optional[int] = None
        self.alert_keys: Set[str] = set()

    def hour(self, hour_ms):
        return self.sums.get(hour_ms)

    def put_hour(self, hour_ms, sums):
        self.sums[hour_ms] = sums

    def remove_hour(self, hour_ms):
        self.sums.pop(hour_ms, None)

    def first_hour(self):
        return self.first

    def set_first_hour(self, hour_ms):
        self.first = hour_ms

    def alerted(self, key):
        return key in self.alert_keys

    def mark_alerted(self, key):
        self.alert_keys.add(key)

    def remove_alert(self, key):
        self.alert_keys.discard(key)
