//! What happens to a request, decided from what is known about its key. Plain logic:
//! the request flow (`auth::request`) gathers the facts through the host and carries the
//! verdicts out.

use crate::config::FailureMode;
use crate::keysync_api::provenance::Provenance;
use crate::store::key_policy::{self, KeyPolicy};
use crate::store::key_record::KeyRecord;
use crate::store::store_meta::StoreMeta;
pub use keysync_contract::reply::Denial;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow(KeyRecord),
    Deny(Denial),
    /// Not in the store: ask keysync (the key may be newer than the last sync).
    AskKeysync,
}

/// A key found in the store, or just returned by keysync.
pub fn judge_record(record: KeyRecord, now_unix_secs: i64) -> Verdict {
    if record.is_expired(now_unix_secs) {
        Verdict::Deny(Denial::InvalidKey)
    } else {
        Verdict::Allow(record)
    }
}

/// A valid key with an allowlist, used from `address` (Envoy's `source.address`; `None`
/// when Envoy has none): refused unless an allowlisted network holds it.
pub fn judge_source(policy: &KeyPolicy, address: Option<&[u8]>) -> Option<Denial> {
    (!policy.admits(address)).then_some(Denial::IpNotAllowed)
}

/// A valid key on a route whose scope requirement reads `required`: `Some(None)` when
/// the route names none, `None` when it could not be read (refused, like a malformed
/// one: a route must not open because its configuration cannot be read).
pub fn judge_route(policy: Option<&KeyPolicy>, required: Option<Option<&[u8]>>) -> Option<Denial> {
    match required {
        Some(None) => None,
        Some(Some(required)) if key_policy::grants(policy, required) => None,
        _ => Some(Denial::InsufficientScope),
    }
}

/// A key the store does not hold.
pub fn judge_unknown(recently_refused: bool, may_ask_keysync: bool, synced: bool) -> Verdict {
    if recently_refused {
        Verdict::Deny(Denial::InvalidKey)
    } else if may_ask_keysync {
        Verdict::AskKeysync
    } else {
        Verdict::Deny(judge_from_store_alone(synced))
    }
}

/// When keysync cannot be asked: a synced store is the best knowledge there is, so an
/// absent key is invalid; a store that never synced knows nothing, so nobody can tell.
pub fn judge_from_store_alone(synced: bool) -> Denial {
    if synced {
        Denial::InvalidKey
    } else {
        Denial::Unavailable
    }
}

/// Whether keysync's answer to a lookup may admit a key. Never when it is older than
/// the store (a lower revision of the store's history: the store may have dropped the
/// key since), and never when keysync confirmed it longer ago than `max_age_ms`. A store
/// that is not trusted itself (`store_stale`) has no revision to compare with.
pub fn answer_trusted(
    answer: Provenance,
    answer_revision: u64,
    store: &StoreMeta,
    store_stale: bool,
    max_age_ms: Option<u64>,
) -> bool {
    if max_age_ms.is_some_and(|max| answer.confirmed_age_ms > max) {
        return false;
    }
    if store_stale || store.epoch == 0 {
        return true;
    }
    answer.epoch == store.epoch && answer_revision >= store.revision
}

/// What becomes of a refused request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Forward upstream anyway (a public path, or `failure_mode: open`), without identity.
    Forward,
    Reply(Denial),
}

/// Applies public paths and the failure mode to a refusal.
pub fn settle(denial: Denial, public_path: bool, failure_mode: FailureMode) -> Outcome {
    if public_path {
        return Outcome::Forward;
    }
    match (denial, failure_mode) {
        (Denial::Unavailable, FailureMode::Open) => Outcome::Forward,
        _ => Outcome::Reply(denial),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_contract::id::Id;
    use keysync_contract::key_hash::KeyHash;

    fn record(expires_at: i64) -> KeyRecord {
        KeyRecord {
            hash: KeyHash::of_key(b"k"),
            key_id: Id([1; 16]),
            org_id: Id([2; 16]),
            expires_at,
            rate_limit: None,
            policy: None,
        }
    }

    #[test]
    fn known_keys_pass_until_they_expire() {
        assert_eq!(judge_record(record(0), 5), Verdict::Allow(record(0)));
        assert_eq!(judge_record(record(100), 99), Verdict::Allow(record(100)));
        assert_eq!(
            judge_record(record(100), 100),
            Verdict::Deny(Denial::InvalidKey)
        );
    }

    #[test]
    fn unknown_keys() {
        assert_eq!(
            judge_unknown(true, true, true),
            Verdict::Deny(Denial::InvalidKey),
            "recently refused keys are not looked up again"
        );
        assert_eq!(judge_unknown(false, true, false), Verdict::AskKeysync);
        assert_eq!(
            judge_unknown(false, false, true),
            Verdict::Deny(Denial::InvalidKey)
        );
        assert_eq!(
            judge_unknown(false, false, false),
            Verdict::Deny(Denial::Unavailable)
        );
    }

    fn answer(epoch: u64, confirmed_age_ms: u64) -> Provenance {
        Provenance {
            epoch,
            confirmed_age_ms,
        }
    }

    fn store(epoch: u64, revision: u64) -> StoreMeta {
        StoreMeta {
            epoch,
            revision,
            synced: epoch != 0,
            ..StoreMeta::default()
        }
    }

    #[test]
    fn answers_older_than_the_store_or_unconfirmed_never_admit() {
        let max = Some(60_000);
        let synced = store(7, 100);
        assert!(answer_trusted(answer(7, 500), 100, &synced, false, max));
        assert!(answer_trusted(answer(7, 500), 120, &synced, false, max));
        assert!(
            !answer_trusted(answer(7, 500), 99, &synced, false, max),
            "older than the store"
        );
        assert!(
            !answer_trusted(answer(8, 500), 500, &synced, false, max),
            "another history"
        );
        assert!(
            !answer_trusted(answer(7, 60_001), 120, &synced, false, max),
            "keysync cut off from PostgreSQL"
        );
        assert!(answer_trusted(answer(7, 60_001), 120, &synced, false, None));
        assert!(
            answer_trusted(answer(8, 500), 3, &synced, true, max),
            "a stale store has nothing to compare with"
        );
        assert!(answer_trusted(answer(7, 500), 1, &store(0, 0), false, max));
    }

    #[test]
    fn public_paths_and_failure_modes() {
        use FailureMode::*;
        assert_eq!(settle(Denial::MissingKey, true, Closed), Outcome::Forward);
        assert_eq!(
            settle(Denial::MissingKey, false, Open),
            Outcome::Reply(Denial::MissingKey),
            "fail-open never lets a missing key through"
        );
        assert_eq!(
            settle(Denial::InvalidKey, false, Open),
            Outcome::Reply(Denial::InvalidKey)
        );
        assert_eq!(settle(Denial::Unavailable, false, Open), Outcome::Forward);
        assert_eq!(
            settle(Denial::Unavailable, false, Closed),
            Outcome::Reply(Denial::Unavailable)
        );
    }

    #[test]
    fn allowlists_and_route_scopes() {
        let policy = KeyPolicy {
            scopes: vec!["orders:read".into()],
            networks: Some(vec!["10.0.0.0/8".parse().unwrap()]),
        };
        assert_eq!(judge_source(&policy, Some(b"10.1.2.3:80")), None);
        assert_eq!(
            judge_source(&policy, Some(b"11.1.2.3:80")),
            Some(Denial::IpNotAllowed)
        );
        assert_eq!(judge_source(&policy, None), Some(Denial::IpNotAllowed));
        assert_eq!(judge_route(None, Some(None)), None, "no requirement");
        assert_eq!(judge_route(Some(&policy), Some(Some(b"orders:read"))), None);
        assert_eq!(
            judge_route(None, Some(Some(b"orders:read"))),
            Some(Denial::InsufficientScope),
            "a key without scopes on a scoped route"
        );
        assert_eq!(
            judge_route(Some(&policy), None),
            Some(Denial::InsufficientScope),
            "an unreadable requirement"
        );
    }
}
