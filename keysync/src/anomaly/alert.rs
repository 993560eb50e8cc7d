//! An anomaly alert: one organization, one kind, one hour, with what was observed and
//! what it was judged against; a row of `anomaly_alerts` (migration 0014), whose primary
//! key `(org_id, kind, hour)` makes it the only one of its kind that hour.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::judgement::Finding;
use super::kind::AnomalyKind;

/// An alert as raised and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub org_id: Uuid,
    pub kind: AnomalyKind,
    /// The start of the UTC hour judged.
    pub hour: DateTime<Utc>,
    /// Whether the hour was over when judged (false: a spike seen while it ran, its
    /// `observed` the requests so far).
    pub hour_complete: bool,
    /// Requests (spike, drop) or a share of them (refusals, upstream_5xx).
    pub observed: f64,
    /// The baseline's median of requests, or its share.
    pub baseline: f64,
    /// What `observed` had to reach (at least; at most for a drop).
    pub threshold: f64,
    /// Every request of the hour (so far).
    pub requests: i64,
    /// The requests the kind counts: all (spike, drop), refused, or answered 5xx.
    pub matching_requests: i64,
    /// Weeks of the same hour the baseline was made of.
    pub baseline_weeks: u8,
    /// The export's event id: derived from the organization, the kind and the hour.
    pub event_id: Uuid,
    /// When it was stored (the evaluation's transaction time).
    pub raised_at: DateTime<Utc>,
}

impl Alert {
    /// The alert of `finding` in `hour` of `org_id`, not yet stored (`raised_at` is
    /// filled in from the row).
    pub fn of(
        org_id: Uuid,
        hour: DateTime<Utc>,
        hour_complete: bool,
        baseline_weeks: u8,
        finding: &Finding,
    ) -> Alert {
        Alert {
            org_id,
            kind: finding.kind,
            hour,
            hour_complete,
            observed: finding.observed,
            baseline: finding.baseline,
            threshold: finding.threshold,
            requests: finding.requests,
            matching_requests: finding.matching_requests,
            baseline_weeks,
            event_id: super::event::event_id(org_id, finding.kind, hour),
            raised_at: hour,
        }
    }

    /// One line for the log: who, what, when, and the numbers.
    pub fn describe(&self) -> String {
        let hour = self.hour.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let running = if self.hour_complete { "" } else { " (so far)" };
        let numbers = match self.kind {
            AnomalyKind::Spike => format!(
                "{} requests{running}, at least {} needed (median {} over {} weeks)",
                self.requests,
                self.threshold.ceil(),
                self.baseline,
                self.baseline_weeks
            ),
            AnomalyKind::Drop => format!(
                "{} requests, at most {} for a drop (median {} over {} weeks)",
                self.requests,
                self.threshold.floor(),
                self.baseline,
                self.baseline_weeks
            ),
            AnomalyKind::Refusals | AnomalyKind::Upstream5xx => format!(
                "{} of {} requests ({:.1}%), at least {:.1}% needed (usually {:.1}% over {} \
                 weeks)",
                self.matching_requests,
                self.requests,
                self.observed * 100.0,
                self.threshold * 100.0,
                self.baseline * 100.0,
                self.baseline_weeks
            ),
        };
        format!(
            "anomaly alert: org {} {} in the hour from {hour}: {numbers}",
            self.org_id, self.kind
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: AnomalyKind, hour_complete: bool) -> Alert {
        let finding = Finding {
            kind,
            observed: 0.125,
            baseline: 0.01,
            threshold: 0.05,
            requests: 2_000,
            matching_requests: 250,
        };
        Alert::of(
            Uuid::from_u128(1),
            "2026-12-01T14:00:00Z".parse().unwrap(),
            hour_complete,
            4,
            &finding,
        )
    }

    #[test]
    fn one_line_names_the_org_the_kind_the_hour_and_the_numbers() {
        assert_eq!(
            alert(AnomalyKind::Refusals, true).describe(),
            "anomaly alert: org 00000000-0000-0000-0000-000000000001 refusals in the hour \
             from 2026-12-01T14:00:00Z: 250 of 2000 requests (12.5%), at least 5.0% needed \
             (usually 1.0% over 4 weeks)"
        );
        let mut spike = alert(AnomalyKind::Spike, false);
        (spike.observed, spike.baseline, spike.threshold) = (2_000.0, 250.5, 1_252.5);
        assert_eq!(
            spike.describe(),
            "anomaly alert: org 00000000-0000-0000-0000-000000000001 spike in the hour from \
             2026-12-01T14:00:00Z: 2000 requests (so far), at least 1253 needed (median 250.5 \
             over 4 weeks)"
        );
        let line = alert(AnomalyKind::Drop, true).describe();
        assert!(!line.contains('\n'), "{line}");
    }
}
