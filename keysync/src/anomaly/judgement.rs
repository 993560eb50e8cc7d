//! Judging one hour of one organization against its baseline: the same hour of the
//! week in each of the last weeks. Plain arithmetic on the hour's sums, no I/O; the
//! formulas are the export's contract (`docs/export.md`), which a stream job must
//! reproduce to the bit: IEEE doubles, in this order.
//!
//! - **spike**: requests `>= max(spike_factor * median, spike_floor)`, where `median`
//!   is the median of the baseline hours' requests (the mean of the two middle ones
//!   for an even number of weeks; an hour without traffic counts 0).
//! - **drop**: only a busy hour (`median >= drop_busy_floor`): requests
//!   `<= drop_ratio * median`.
//! - **refusals**, **upstream_5xx**: the share of the hour's requests refused by the
//!   gateway (or answered 5xx by the upstream), `count / requests`, against the
//!   baseline's share, `sum(count) / sum(requests)` over the baseline hours (0 without
//!   requests): share `>= max(share_min, min(share_factor * baseline, (1 + baseline) /
//!   2))` and `> baseline`, with `count >= share_floor`. The cap at halfway to 100% lets
//!   an organization that is often refused still jump; the strict `>` keeps one that is
//!   always refused quiet.
//!
//! An hour still running is judged for spikes only: requests only grow within an hour,
//! so a spike seen early stands at the close, while a drop or a share can still change.

use super::kind::AnomalyKind;
use super::settings::Thresholds;

/// An organization's requests in one hour, over its keys and endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HourSums {
    /// Every request counted, whatever its outcome.
    pub requests: i64,
    /// Refused by the gateway: `rate_limited`, `quota_exceeded`, `policy_denied`.
    pub refused: i64,
    /// Answered 5xx by the upstream.
    pub upstream_5xx: i64,
}

/// How one hour of one organization departed from its baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finding {
    pub kind: AnomalyKind,
    /// Requests (spike, drop) or a share of them (refusals, upstream_5xx).
    pub observed: f64,
    /// The baseline's median of requests, or its share.
    pub baseline: f64,
    /// What `observed` had to reach (at least, or at most for a drop).
    pub threshold: f64,
    /// Every request of the hour.
    pub requests: i64,
    /// The requests the kind counts: all (spike, drop), refused, or answered 5xx.
    pub matching_requests: i64,
}

/// Whether the hour judged is over (and its close delay passed) or still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HourState {
    Complete,
    Running,
}

/// What `hour` departed in, judged against `baseline` (one entry per week, an hour
/// without traffic as zeros).
pub fn judge(
    hour: HourSums,
    baseline: &[HourSums],
    thresholds: &Thresholds,
    state: HourState,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if baseline.is_empty() {
        return findings;
    }
    let median = median(baseline.iter().map(|sums| sums.requests));
    let observed = hour.requests as f64;
    let spike_threshold = (thresholds.spike_factor * median).max(thresholds.spike_floor as f64);
    if observed >= spike_threshold {
        findings.push(Finding {
            kind: AnomalyKind::Spike,
            observed,
            baseline: median,
            threshold: spike_threshold,
            requests: hour.requests,
            matching_requests: hour.requests,
        });
    }
    if state == HourState::Running {
        return findings;
    }
    let drop_threshold = thresholds.drop_ratio * median;
    if median >= thresholds.drop_busy_floor as f64 && observed <= drop_threshold {
        findings.push(Finding {
            kind: AnomalyKind::Drop,
            observed,
            baseline: median,
            threshold: drop_threshold,
            requests: hour.requests,
            matching_requests: hour.requests,
        });
    }
    let total = sum(baseline.iter().map(|sums| sums.requests));
    for (kind, count, baseline_count) in [
        (
            AnomalyKind::Refusals,
            hour.refused,
            sum(baseline.iter().map(|sums| sums.refused)),
        ),
        (
            AnomalyKind::Upstream5xx,
            hour.upstream_5xx,
            sum(baseline.iter().map(|sums| sums.upstream_5xx)),
        ),
    ] {
        if let Some(finding) = share_jump(
            kind,
            hour.requests,
            count,
            total,
            baseline_count,
            thresholds,
        ) {
            findings.push(finding);
        }
    }
    findings
}

/// A jump of `count` in `requests` against `baseline_count` in `baseline_requests`.
fn share_jump(
    kind: AnomalyKind,
    requests: i64,
    count: i64,
    baseline_requests: i64,
    baseline_count: i64,
    thresholds: &Thresholds,
) -> Option<Finding> {
    if count < thresholds.share_floor || requests <= 0 {
        return None;
    }
    let share = count as f64 / requests as f64;
    let baseline = if baseline_requests > 0 {
        baseline_count as f64 / baseline_requests as f64
    } else {
        0.0
    };
    let threshold = (thresholds.share_factor * baseline)
        .min((1.0 + baseline) / 2.0)
        .max(thresholds.share_min);
    (share >= threshold && share > baseline).then_some(Finding {
        kind,
        observed: share,
        baseline,
        threshold,
        requests,
        matching_requests: count,
    })
}

/// The median of `values` (the mean of the two middle ones for an even number); 0 for
/// none.
pub fn median(values: impl Iterator<Item = i64>) -> f64 {
    let mut sorted: Vec<i64> = values.collect();
    sorted.sort_unstable();
    let middle = sorted.len() / 2;
    match (
        sorted.len() % 2,
        sorted.get(middle.wrapping_sub(1)),
        sorted.get(middle),
    ) {
        (1, _, Some(value)) => *value as f64,
        (0, Some(low), Some(high)) => (*low as f64 + *high as f64) / 2.0,
        _ => 0.0,
    }
}

fn sum(values: impl Iterator<Item = i64>) -> i64 {
    values.fold(0, i64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(requests: i64, refused: i64, upstream_5xx: i64) -> HourSums {
        HourSums {
            requests,
            refused,
            upstream_5xx,
        }
    }

    fn weeks(requests: &[i64]) -> Vec<HourSums> {
        requests.iter().map(|n| sums(*n, 0, 0)).collect()
    }

    fn kinds(findings: &[Finding]) -> Vec<AnomalyKind> {
        findings.iter().map(|finding| finding.kind).collect()
    }

    const COMPLETE: HourState = HourState::Complete;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median([3, 1, 2].into_iter()), 2.0);
        assert_eq!(median([4, 1, 3, 2].into_iter()), 2.5);
        assert_eq!(median([0, 0, 0, 900].into_iter()), 0.0);
        assert_eq!(median([7].into_iter()), 7.0);
        assert_eq!(median(std::iter::empty()), 0.0);
    }

    #[test]
    fn a_spike_is_several_times_the_median_and_above_the_floor() {
        let thresholds = Thresholds::default();
        let baseline = weeks(&[1_000, 1_200, 900, 1_100]);
        // Median 1,050: the threshold is 5,250.
        let findings = judge(sums(5_250, 0, 0), &baseline, &thresholds, COMPLETE);
        assert_eq!(kinds(&findings), [AnomalyKind::Spike]);
        assert_eq!(findings[0].baseline, 1_050.0);
        assert_eq!(findings[0].threshold, 5_250.0);
        assert_eq!(findings[0].observed, 5_250.0);
        assert!(judge(sums(5_249, 0, 0), &baseline, &thresholds, COMPLETE).is_empty());
        // From nothing, the floor decides.
        let quiet = weeks(&[0, 0, 3, 0]);
        assert!(judge(sums(999, 0, 0), &quiet, &thresholds, COMPLETE).is_empty());
        let findings = judge(sums(1_000, 0, 0), &quiet, &thresholds, COMPLETE);
        assert_eq!(kinds(&findings), [AnomalyKind::Spike]);
        assert_eq!(findings[0].threshold, 1_000.0);
    }

    #[test]
    fn a_drop_is_judged_in_busy_hours_only() {
        let thresholds = Thresholds::default();
        let busy = weeks(&[2_000, 2_000, 1_800, 2_200]);
        let findings = judge(sums(100, 0, 0), &busy, &thresholds, COMPLETE);
        assert_eq!(kinds(&findings), [AnomalyKind::Drop]);
        assert_eq!(findings[0].threshold, 100.0);
        assert!(judge(sums(101, 0, 0), &busy, &thresholds, COMPLETE).is_empty());
        // A quiet hour of the week going quieter is nothing.
        let quiet = weeks(&[900, 950, 990, 800]);
        assert!(judge(sums(0, 0, 0), &quiet, &thresholds, COMPLETE).is_empty());
        // Nor is a running hour: it may fill up yet.
        assert!(judge(sums(0, 0, 0), &busy, &thresholds, HourState::Running).is_empty());
    }

    #[test]
    fn a_running_hour_is_judged_for_spikes_alone() {
        let thresholds = Thresholds::default();
        let baseline = vec![sums(1_000, 0, 0); 4];
        let findings = judge(
            sums(6_000, 3_000, 3_000),
            &baseline,
            &thresholds,
            HourState::Running,
        );
        assert_eq!(kinds(&findings), [AnomalyKind::Spike]);
        let findings = judge(sums(6_000, 3_000, 3_000), &baseline, &thresholds, COMPLETE);
        assert_eq!(
            kinds(&findings),
            [
                AnomalyKind::Spike,
                AnomalyKind::Refusals,
                AnomalyKind::Upstream5xx
            ]
        );
    }

    #[test]
    fn shares_jump_against_their_baseline_share() {
        let thresholds = Thresholds::default();
        // 1% refused usually: the threshold is max(5%, min(3%, 50.5%)) = 5%.
        let baseline = vec![sums(1_000, 10, 0); 4];
        let findings = judge(sums(2_000, 100, 0), &baseline, &thresholds, COMPLETE);
        assert_eq!(kinds(&findings), [AnomalyKind::Refusals]);
        let finding = findings[0];
        assert_eq!(finding.observed, 0.05);
        assert_eq!(finding.baseline, 0.01);
        assert_eq!(finding.threshold, 0.05);
        assert_eq!((finding.requests, finding.matching_requests), (2_000, 100));
        assert!(judge(sums(2_001, 100, 0), &baseline, &thresholds, COMPLETE).is_empty());
        // Below the floor of counted requests, whatever the share.
        assert!(judge(sums(100, 99, 0), &baseline, &thresholds, COMPLETE).is_empty());
        // 40% usually: three times is impossible, halfway to all is 70%.
        let often = vec![sums(1_000, 0, 400); 4];
        assert!(judge(sums(1_000, 0, 690), &often, &thresholds, COMPLETE).is_empty());
        let findings = judge(sums(1_000, 0, 710), &often, &thresholds, COMPLETE);
        assert_eq!(kinds(&findings), [AnomalyKind::Upstream5xx]);
        assert!((findings[0].threshold - 0.7).abs() < 1e-12);
        // Always refused: never "above its usual share".
        let always = vec![sums(1_000, 1_000, 0); 4];
        assert!(judge(sums(1_000, 1_000, 0), &always, &thresholds, COMPLETE).is_empty());
        // No baseline requests at all: the minimum share decides.
        let none = vec![sums(0, 0, 0); 4];
        let findings = judge(sums(900, 0, 100), &none, &thresholds, COMPLETE);
        assert_eq!(kinds(&findings), [AnomalyKind::Upstream5xx]);
        assert_eq!(findings[0].threshold, 0.05);
    }

    /// The cases the Flink job's judgement is tested with (`analytics/`): the same
    /// findings, to the bit, here.
    #[test]
    fn the_stream_jobs_cases_are_judged_alike() {
        let cases: serde_json::Value = serde_json::from_str(include_str!(
            "../../../analytics/tests/judgement_cases.json"
        ))
        .unwrap();
        let cases = cases["cases"].as_array().unwrap();
        assert!(cases.len() >= 20);
        let sums_of = |value: &serde_json::Value| {
            let n = |i: usize| value[i].as_i64().unwrap();
            sums(n(0), n(1), n(2))
        };
        for case in cases {
            let mut thresholds = Thresholds::default();
            if let Some(changed) = case["thresholds"].as_object() {
                for (name, value) in changed {
                    match name.as_str() {
                        "spike_floor" => thresholds.spike_floor = value.as_i64().unwrap(),
                        "spike_factor" => thresholds.spike_factor = value.as_f64().unwrap(),
                        "baseline_weeks" => {
                            thresholds.baseline_weeks = value.as_u64().unwrap() as u8
                        }
                        other => panic!("no threshold {other} in the cases' reader"),
                    }
                }
            }
            let baseline: Vec<HourSums> = case["baseline"]
                .as_array()
                .unwrap()
                .iter()
                .map(sums_of)
                .collect();
            let state = if case["complete"].as_bool().unwrap() {
                COMPLETE
            } else {
                HourState::Running
            };
            let found: Vec<serde_json::Value> =
                judge(sums_of(&case["hour"]), &baseline, &thresholds, state)
                    .iter()
                    .map(|finding| {
                        serde_json::json!({
                            "kind": finding.kind.as_str(),
                            "observed": finding.observed,
                            "baseline": finding.baseline,
                            "threshold": finding.threshold,
                            "requests": finding.requests,
                            "matching_requests": finding.matching_requests,
                        })
                    })
                    .collect();
            assert_eq!(
                serde_json::Value::from(found),
                case["findings"],
                "{}",
                case["name"]
            );
        }
    }

    #[test]
    fn nothing_without_a_baseline() {
        assert!(judge(sums(1_000_000, 0, 0), &[], &Thresholds::default(), COMPLETE).is_empty());
    }
}
