//! Quota alerts: when an organization's or key's use crosses 80% and then 100% of its
//! quota in a period, keysync says so once (a log line, a metric, an event on the usage
//! export). `quota_usage.alerted` remembers the highest threshold announced.

use chrono::{DateTime, SecondsFormat, Utc};
use keysync_contract::subject::SubjectKind;
use uuid::Uuid;

/// The thresholds, in percent of the quota.
pub const THRESHOLDS: [i16; 2] = [80, 100];

/// A threshold a flush crossed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crossing {
    pub kind: SubjectKind,
    pub subject_id: Uuid,
    /// The organization (itself, or the key's).
    pub org_id: Uuid,
    pub period_start: DateTime<Utc>,
    /// 80 or 100.
    pub threshold: i16,
    pub used: i64,
    pub limit: i64,
}

impl Crossing {
    /// What announcements of the crossing say (the usage export's alert event and the
    /// `quota.threshold` webhook): the subject, the threshold, the use and the quota.
    pub fn data(&self) -> serde_json::Value {
        let org_id = self.org_id.to_string();
        let key_id = (self.kind == SubjectKind::Key).then(|| self.subject_id.to_string());
        serde_json::json!({
            "subject_kind": self.kind.as_str(),
            "org_id": org_id,
            "key_id": key_id,
            "threshold_percent": self.threshold,
            "used": self.used,
            "monthly": self.limit,
            "period_start": self.period_start.to_rfc3339_opts(SecondsFormat::Millis, true),
        })
    }
}

/// The highest threshold `used` of `limit` has reached that is above `alerted` (the one
/// announced already), if any.
pub fn crossed(used: i64, limit: i64, alerted: i16) -> Option<i16> {
    if limit <= 0 {
        return None;
    }
    let percent = i128::from(used) * 100 / i128::from(limit);
    THRESHOLDS
        .iter()
        .rev()
        .find(|threshold| percent >= i128::from(**threshold) && **threshold > alerted)
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_threshold_once_and_the_highest_reached() {
        assert_eq!(crossed(7_999, 10_000, 0), None);
        assert_eq!(crossed(8_000, 10_000, 0), Some(80));
        assert_eq!(crossed(9_000, 10_000, 80), None);
        assert_eq!(crossed(10_000, 10_000, 80), Some(100));
        assert_eq!(crossed(12_000, 10_000, 100), None);
        // Straight past both in one flush: the one line says 100.
        assert_eq!(crossed(10_500, 10_000, 0), Some(100));
        assert_eq!(crossed(5, 0, 0), None);
        assert_eq!(crossed(i64::MAX, 1, 0), Some(100));
    }
}
