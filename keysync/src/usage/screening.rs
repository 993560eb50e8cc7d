//! What a flush may add, counter by counter: a counter that grew is taken only when its
//! key is one keysync issued (`api_keys`, whatever its state now: a key revoked or
//! expired between its requests and the flush is still counted) and its organization is
//! the key's, and only as far as the instance's allowance ([`crate::usage::allowance`])
//! goes. So a holder of a gateway token cannot bill a tenant for a key it does not own,
//! nor add more than a gateway could have served.
//!
//! A refused increment adds nothing (to the rollup, to quota use, to the export), and
//! nothing later either: the counter's stored cumulative value moves on as for any
//! other, so the refused part never comes back in a later increment. What was refused
//! is counted by reason (`keysync_usage_refused_requests_total`).

use std::collections::HashMap;

use uuid::Uuid;

use super::flush::{Counter, Values};
use crate::metric_label::label_values;

/// Why an increment was refused.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Refusal {
    /// No key with the counter's id (never issued, or deleted outright).
    UnknownKey,
    /// The key belongs to another organization than the counter names.
    ForeignOrg,
    /// Beyond what the instance could have served since its last flush.
    OverCeiling,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [
        Refusal::UnknownKey,
        Refusal::ForeignOrg,
        Refusal::OverCeiling,
    ];
}

label_values!(Refusal {
    UnknownKey => "unknown_key",
    ForeignOrg => "foreign_org",
    OverCeiling => "over_ceiling",
});

/// Each known key's organization: key id to org id.
pub type Owners = HashMap<Uuid, Uuid>;

/// The requests refused, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Refused {
    pub unknown_key: i64,
    pub foreign_org: i64,
    pub over_ceiling: i64,
}

impl Refused {
    pub fn add(&mut self, reason: Refusal, requests: i64) {
        let slot = match reason {
            Refusal::UnknownKey => &mut self.unknown_key,
            Refusal::ForeignOrg => &mut self.foreign_org,
            Refusal::OverCeiling => &mut self.over_ceiling,
        };
        *slot = slot.saturating_add(requests);
    }

    pub fn get(&self, reason: Refusal) -> i64 {
        match reason {
            Refusal::UnknownKey => self.unknown_key,
            Refusal::ForeignOrg => self.foreign_org,
            Refusal::OverCeiling => self.over_ceiling,
        }
    }

    pub fn any(&self) -> bool {
        *self != Refused::default()
    }
}

/// The part of `increment` (a grown counter's) that may be added, spending `allowance`;
/// what is refused goes into `refused`. Past the allowance, the requests taken are what
/// is left of it, and the counter's other values (durations, buckets, bytes) shrink in
/// the same proportion.
pub fn screen(
    counter: &Counter,
    increment: Values,
    owners: &Owners,
    allowance: &mut i64,
    refused: &mut Refused,
) -> Values {
    let requests = increment[0];
    let reason = match owners.get(&counter.key_id) {
        None => Some(Refusal::UnknownKey),
        Some(org) if *org != counter.org_id => Some(Refusal::ForeignOrg),
        Some(_) => None,
    };
    if let Some(reason) = reason {
        refused.add(reason, requests);
        return [0; 8];
    }
    if requests <= *allowance {
        *allowance -= requests;
        return increment;
    }
    let taken = (*allowance).max(0);
    *allowance = 0;
    refused.add(Refusal::OverCeiling, requests - taken);
    let mut scaled = [0; 8];
    scaled[0] = taken;
    for (value, grown) in scaled.iter_mut().zip(increment).skip(1) {
        let share = i128::from(grown) * i128::from(taken) / i128::from(requests);
        *value = i64::try_from(share).unwrap_or(0);
    }
    scaled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Outcome;

    fn counter(org: u128, key: u128) -> Counter {
        Counter {
            org_id: Uuid::from_u128(org),
            key_id: Uuid::from_u128(key),
            endpoint: "-".into(),
            outcome: Outcome::Status2xx,
            values: [0; 8],
        }
    }

    const GROWN: Values = [10, 20_000, 8, 2, 0, 0, 1_000, 10_000];

    /// Screens [`GROWN`] of `org`'s counter of `key`, against key 2 of org 1.
    fn screened(org: u128, key: u128, allowance: &mut i64, refused: &mut Refused) -> Values {
        let owners = Owners::from([(Uuid::from_u128(2), Uuid::from_u128(1))]);
        screen(&counter(org, key), GROWN, &owners, allowance, refused)
    }

    #[test]
    fn a_key_of_its_own_organization_within_the_allowance_is_taken_whole() {
        let (mut allowance, mut refused) = (25, Refused::default());
        assert_eq!(screened(1, 2, &mut allowance, &mut refused), GROWN);
        assert_eq!(allowance, 15);
        assert!(!refused.any());
    }

    #[test]
    fn unknown_keys_and_other_organizations_add_nothing_and_spend_nothing() {
        let (mut allowance, mut refused) = (1_000, Refused::default());
        assert_eq!(
            screened(1, 3, &mut allowance, &mut refused),
            [0; 8],
            "unknown"
        );
        assert_eq!(
            screened(9, 2, &mut allowance, &mut refused),
            [0; 8],
            "foreign"
        );
        assert_eq!(allowance, 1_000);
        assert_eq!(
            refused,
            Refused {
                unknown_key: 10,
                foreign_org: 10,
                over_ceiling: 0
            }
        );
    }

    #[test]
    fn past_the_allowance_only_what_is_left_is_taken_and_the_rest_refused() {
        let (mut allowance, mut refused) = (4, Refused::default());
        let taken = screened(1, 2, &mut allowance, &mut refused);
        assert_eq!(taken, [4, 8_000, 3, 0, 0, 0, 400, 4_000]);
        assert_eq!(allowance, 0);
        assert_eq!(refused.get(Refusal::OverCeiling), 6);
        // Nothing left: all refused.
        assert_eq!(screened(1, 2, &mut allowance, &mut refused), [0; 8]);
        assert_eq!(refused.get(Refusal::OverCeiling), 16);
        // A forged billion, and the largest values: no overflow.
        let (mut allowance, mut refused) = (1_000, Refused::default());
        let owners = Owners::from([(Uuid::from_u128(2), Uuid::from_u128(1))]);
        let huge = [i64::MAX; 8];
        let taken = screen(&counter(1, 2), huge, &owners, &mut allowance, &mut refused);
        assert_eq!(taken, [1_000; 8]);
        assert_eq!(refused.over_ceiling, i64::MAX - 1_000);
    }
}
