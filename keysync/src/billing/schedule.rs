//! An organization's plan over time: its plan changes (`org_plans`, each in effect from
//! its instant until the next), when a new change takes effect, and the segments they
//! cut a billing period into.
//!
//! A change takes effect at the start of the next period, so a month is billed on the
//! plan it began with; `--now` makes it take effect at once, from the start of the
//! current hour (the usage rollup's grain: the hour it was made in is billed on the new
//! plan). An organization without a plan in effect gets its first one at once: there is
//! no current plan to keep.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use super::period::BillingPeriod;

/// A plan change: `plan_id` in effect from `from` (a whole hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanChange {
    pub from: DateTime<Utc>,
    pub plan_id: Uuid,
}

/// Part of a period billed on one plan, `[from, to)` in whole hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub plan_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// When a change made at `now` takes effect: the start of the current hour when `at_once`
/// or when the organization has no plan in effect, else the start of the next period.
pub fn takes_effect(now: DateTime<Utc>, at_once: bool, has_plan: bool) -> DateTime<Utc> {
    if at_once || !has_plan {
        now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now)
    } else {
        BillingPeriod::containing(now).end
    }
}

/// The plan in effect at `at`: the latest change from `at` or before. `changes` in any
/// order.
pub fn plan_at(changes: &[PlanChange], at: DateTime<Utc>) -> Option<Uuid> {
    changes
        .iter()
        .filter(|change| change.from <= at)
        .max_by_key(|change| change.from)
        .map(|change| change.plan_id)
}

/// The segments of `period`, in order: from the period's start on the plan in effect
/// then (or from the first change within it, when there was none), each change within
/// the period starting a new segment. Empty when no plan is in effect at any time of it.
/// `changes` in any order.
pub fn segments(changes: &[PlanChange], period: BillingPeriod) -> Vec<Segment> {
    let mut starts: Vec<PlanChange> = Vec::new();
    if let Some(plan_id) = plan_at(changes, period.start) {
        starts.push(PlanChange {
            from: period.start,
            plan_id,
        });
    }
    let mut within: Vec<PlanChange> = changes
        .iter()
        .filter(|change| period.start < change.from && change.from < period.end)
        .copied()
        .collect();
    within.sort_by_key(|change| change.from);
    starts.extend(within);
    let mut cut = Vec::with_capacity(starts.len());
    for (index, start) in starts.iter().enumerate() {
        let to = starts.get(index + 1).map_or(period.end, |next| next.from);
        match cut.last_mut() {
            // A change to the plan already in effect does not cut the period.
            Some(Segment {
                plan_id, to: end, ..
            }) if *plan_id == start.plan_id => *end = to,
            _ => cut.push(Segment {
                plan_id: start.plan_id,
                from: start.from,
                to,
            }),
        }
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn change(from: &str, plan: u128) -> PlanChange {
        PlanChange {
            from: at(from),
            plan_id: Uuid::from_u128(plan),
        }
    }

    fn december() -> BillingPeriod {
        BillingPeriod::parse("period", "2026-12").unwrap()
    }

    #[test]
    fn a_change_waits_for_the_next_period_unless_at_once_or_the_first() {
        let now = at("2026-12-07T10:27:00Z");
        assert_eq!(takes_effect(now, false, true), at("2027-01-01T00:00:00Z"));
        assert_eq!(takes_effect(now, true, true), at("2026-12-07T10:00:00Z"));
        assert_eq!(takes_effect(now, false, false), at("2026-12-07T10:00:00Z"));
    }

    #[test]
    fn a_period_is_cut_where_the_plan_changes() {
        // On plan 1 since November, plan 2 from the 16th, plan 3 from January.
        let changes = [
            change("2027-01-01T00:00:00Z", 3),
            change("2026-11-03T00:00:00Z", 1),
            change("2026-12-16T00:00:00Z", 2),
        ];
        assert_eq!(
            segments(&changes, december()),
            [
                Segment {
                    plan_id: Uuid::from_u128(1),
                    from: at("2026-12-01T00:00:00Z"),
                    to: at("2026-12-16T00:00:00Z"),
                },
                Segment {
                    plan_id: Uuid::from_u128(2),
                    from: at("2026-12-16T00:00:00Z"),
                    to: at("2027-01-01T00:00:00Z"),
                },
            ]
        );
        assert_eq!(
            plan_at(&changes, at("2027-01-01T00:00:00Z")),
            Some(Uuid::from_u128(3))
        );
        assert_eq!(plan_at(&changes, at("2026-11-01T00:00:00Z")), None);
        let january = segments(&changes, december().next());
        assert_eq!(january.len(), 1);
        assert_eq!(january[0].plan_id, Uuid::from_u128(3));
    }

    #[test]
    fn time_before_the_first_plan_is_not_billed_and_repeats_do_not_cut() {
        let changes = [
            change("2026-12-10T05:00:00Z", 1),
            change("2026-12-20T00:00:00Z", 1),
        ];
        assert_eq!(
            segments(&changes, december()),
            [Segment {
                plan_id: Uuid::from_u128(1),
                from: at("2026-12-10T05:00:00Z"),
                to: at("2027-01-01T00:00:00Z"),
            }]
        );
        assert!(segments(&changes, december().previous()).is_empty());
        assert!(segments(&[], december()).is_empty());
    }
}
