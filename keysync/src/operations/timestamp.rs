//! A point in time as operators read it: RFC 3339 in UTC, to the second
//! (`2026-03-01T12:00:00Z`), the same in text and in JSON.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Timestamp(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_in_utc_with_a_z() {
        let at = Timestamp(DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap());
        assert_eq!(at.to_string(), "2023-11-14T22:13:20Z");
        assert_eq!(
            serde_json::to_string(&at).unwrap(),
            "\"2023-11-14T22:13:20Z\""
        );
    }
}
