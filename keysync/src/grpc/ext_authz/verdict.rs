//! What keysync decides about one checked request: forward it as a key's organization
//! and key, or refuse it with one of the contract's denials.

use keysync_contract::credential_sources::{CredentialSources, Strip};
use keysync_contract::reply::Denial;

use super::metrics::ExtAuthzResult;
use crate::key_set::key_entry::KeyEntry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward with the key's identity and without the credentials `removal` names.
    Allow {
        entry: KeyEntry,
        removal: CredentialRemoval,
    },
    /// A readiness check ([`super::readiness_check`]) of a keysync that has loaded its
    /// key snapshot: passed on as it is.
    Ready,
    /// Refuse; [`Denial::Unavailable`] when keysync cannot tell (no snapshot yet).
    Deny(Denial),
}

impl Verdict {
    /// A key the key set holds, judged at `now` (unix seconds): expiry is checked here,
    /// on every request, so a key stops working at its expiry second.
    pub fn of_entry(entry: KeyEntry, removal: CredentialRemoval, now: i64) -> Verdict {
        if entry.is_expired(now) {
            Verdict::Deny(Denial::InvalidKey)
        } else {
            Verdict::Allow { entry, removal }
        }
    }

    /// The `result` label of `keysync_ext_authz_checks_total`.
    pub fn result(&self) -> ExtAuthzResult {
        match self {
            Verdict::Allow { .. } => ExtAuthzResult::Allowed,
            Verdict::Ready => ExtAuthzResult::Ready,
            Verdict::Deny(Denial::MissingKey) => ExtAuthzResult::Missing,
            Verdict::Deny(Denial::InvalidKey) => ExtAuthzResult::Invalid,
            Verdict::Deny(Denial::InsufficientScope) => ExtAuthzResult::InsufficientScope,
            Verdict::Deny(Denial::IpNotAllowed) => ExtAuthzResult::IpNotAllowed,
            Verdict::Deny(Denial::Unavailable) => ExtAuthzResult::Unavailable,
        }
    }
}

/// What is taken off an allowed request before it goes upstream, as the configured
/// credential sources found it (`keysync_contract::credential_sources`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialRemoval {
    /// The credential headers to remove.
    pub headers: Vec<String>,
    /// The new `:path`, without the credential parameters.
    pub path: Option<String>,
    /// The new `Cookie` without the credential cookies; `Some(None)`: remove it.
    pub cookie: Option<Option<String>>,
}

impl CredentialRemoval {
    pub fn of(sources: &CredentialSources, strip: Strip) -> Self {
        CredentialRemoval {
            headers: sources
                .headers_to_remove(&strip)
                .map(str::to_owned)
                .collect(),
            path: strip.path().map(str::to_owned),
            cookie: strip.cookie().map(|cookie| cookie.map(str::to_owned)),
        }
    }

    /// Removes these headers, nothing else.
    pub fn headers<const N: usize>(names: [&str; N]) -> Self {
        CredentialRemoval {
            headers: names.map(str::to_owned).to_vec(),
            ..CredentialRemoval::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use keysync_contract::key_hash::KeyHash;

    use super::*;

    fn entry(expires_at: i64) -> KeyEntry {
        KeyEntry {
            key_hash: KeyHash([1; 32]),
            key_id: Uuid::from_u128(1),
            org_id: Uuid::from_u128(2),
            expires_at,
            rate_limit: None,
            policy: None,
        }
    }

    #[test]
    fn a_key_is_refused_from_its_expiry_second() {
        let removal = CredentialRemoval::headers(["authorization"]);
        assert_eq!(
            Verdict::of_entry(entry(100), removal.clone(), 99),
            Verdict::Allow {
                entry: entry(100),
                removal: removal.clone()
            }
        );
        assert_eq!(
            Verdict::of_entry(entry(100), removal.clone(), 100),
            Verdict::Deny(Denial::InvalidKey)
        );
        assert!(matches!(
            Verdict::of_entry(entry(0), removal, i64::MAX),
            Verdict::Allow { .. }
        ));
    }

    #[test]
    fn results_name_the_outcome() {
        let allowed = Verdict::of_entry(entry(0), CredentialRemoval::default(), 1);
        assert_eq!(allowed.result(), ExtAuthzResult::Allowed);
        for (denial, result) in [
            (Denial::MissingKey, ExtAuthzResult::Missing),
            (Denial::InvalidKey, ExtAuthzResult::Invalid),
            (Denial::InsufficientScope, ExtAuthzResult::InsufficientScope),
            (Denial::IpNotAllowed, ExtAuthzResult::IpNotAllowed),
            (Denial::Unavailable, ExtAuthzResult::Unavailable),
        ] {
            assert_eq!(Verdict::Deny(denial).result(), result);
        }
    }
}
