//! The kinds of anomaly keysync looks for in an organization's hourly traffic, named as
//! the alerts table, the export's events, the CLI and the API spell them.

use std::fmt;
use std::str::FromStr;

/// What departed from the organization's baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// Requests far above the median of the same hour of the week.
    Spike,
    /// A normally busy hour gone quiet: requests near zero.
    Drop,
    /// The share of requests the gateway refused (rate limits, quotas, key policies) far
    /// above its usual share.
    Refusals,
    /// The share of requests the upstream answered 5xx far above its usual share.
    Upstream5xx,
}

impl AnomalyKind {
    /// Every kind, in the order they are documented.
    pub const ALL: [AnomalyKind; 4] = [
        AnomalyKind::Spike,
        AnomalyKind::Drop,
        AnomalyKind::Refusals,
        AnomalyKind::Upstream5xx,
    ];

    /// The names, for error messages.
    pub const NAMES: &'static str = "spike, drop, refusals or upstream_5xx";

    /// The kind as stored (migration 0014 checks the same names) and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::Spike => "spike",
            AnomalyKind::Drop => "drop",
            AnomalyKind::Refusals => "refusals",
            AnomalyKind::Upstream5xx => "upstream_5xx",
        }
    }
}

impl FromStr for AnomalyKind {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        AnomalyKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text.trim())
            .ok_or(())
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for kind in AnomalyKind::ALL {
            assert_eq!(kind.as_str().parse::<AnomalyKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
            assert!(AnomalyKind::NAMES.contains(kind.as_str()));
        }
        assert_eq!(" drop ".parse::<AnomalyKind>(), Ok(AnomalyKind::Drop));
        assert_eq!("Spike".parse::<AnomalyKind>(), Err(()));
        assert_eq!("5xx".parse::<AnomalyKind>(), Err(()));
    }
}
