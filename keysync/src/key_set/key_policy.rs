//! A key's policy as keysync serves it: the scopes it grants (a route may require some)
//! and the networks it may be used from, read from `api_keys.scopes` and
//! `api_keys.allowed_networks` (migration 0008). The names, bounds and checks are the
//! contract's ([`keysync_contract::key_policy`]), shared with the filter.
//!
//! Most keys have neither, and carry no policy at all: a key entry holds
//! `Option<Arc<KeyPolicy>>`, one pointer that is `None` for them, and reading their
//! empty columns allocates nothing. A key with a policy pays for it on the heap once,
//! shared by the key set, the change log and the watch streams.
//!
//! The same columns serve the loader (what gateways enforce) and the operator listings
//! (what `keys list` shows), like [`crate::key_set::limit_columns`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use keysync_contract::key_policy::{check_networks, check_scopes, Network, PolicyError};
use tracing::warn;
use uuid::Uuid;

/// What a key is limited to beyond being valid. Never empty: a key without scopes and
/// allowlist has no `KeyPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Sorted, without repeats ([`check_scopes`]), so routes can binary-search them.
    scopes: Vec<String>,
    /// Empty: usable from anywhere.
    networks: Vec<Network>,
}

impl KeyPolicy {
    /// The policy of a key with these (checked) scopes and networks; `None` when it has
    /// neither.
    pub fn new(scopes: Vec<String>, networks: Vec<Network>) -> Option<Arc<KeyPolicy>> {
        if scopes.is_empty() && networks.is_empty() {
            None
        } else {
            Some(Arc::new(KeyPolicy { scopes, networks }))
        }
    }

    /// A policy that admits no client address: what a key gets whose stored policy
    /// fails the contract's checks. Its allowlist holds only the unspecified addresses,
    /// from which no client can connect, so the filter (which sees only the wire form)
    /// and ext_authz both refuse the key, `ip_not_allowed`, wherever it is used.
    pub fn locked_out() -> Arc<KeyPolicy> {
        Arc::new(KeyPolicy {
            scopes: Vec::new(),
            networks: vec![
                Network {
                    address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    prefix_len: 32,
                },
                Network {
                    address: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    prefix_len: 128,
                },
            ],
        })
    }

    /// The scopes the key grants, sorted.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The networks the key may be used from; empty: anywhere.
    pub fn networks(&self) -> &[Network] {
        &self.networks
    }

    /// Whether the key has an allowlist (and so needs the client's address).
    pub fn has_allowlist(&self) -> bool {
        !self.networks.is_empty()
    }

    /// Whether a request from `address` may use the key. With an allowlist, a request
    /// whose address is unknown is refused: an allowlist that a missing address got
    /// round would protect nothing.
    pub fn admits(&self, address: Option<IpAddr>) -> bool {
        self.networks.is_empty()
            || address.is_some_and(|address| self.networks.iter().any(|net| net.contains(address)))
    }
}

/// A key's policy columns as read from the database (`allowed_networks` cast to text,
/// `203.0.113.0/24`).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct PolicyColumns {
    pub scopes: Vec<String>,
    pub allowed_networks: Vec<String>,
}

impl PolicyColumns {
    /// Whether the key has neither scopes nor an allowlist.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.allowed_networks.is_empty()
    }

    /// The columns checked by the contract: scopes sorted, networks parsed and sorted.
    pub fn check(&self) -> Result<(Vec<String>, Vec<Network>), PolicyError> {
        Ok((
            check_scopes(&self.scopes)?,
            check_networks(&self.allowed_networks)?,
        ))
    }

    /// The policy to serve for key `key_id`. Values the contract refuses (the schema's
    /// checks make them unlikely, but a hand-written row could hold an allowlist that
    /// admits no address, or a future schema a scope this keysync does not accept) must
    /// not fail a load of the whole key set, nor leave the key usable more widely than
    /// its owner meant: the key is served [`KeyPolicy::locked_out`], and a warning names
    /// the key by id (the values are not secret; the key is never logged).
    pub fn resolve(&self, key_id: Uuid) -> Option<Arc<KeyPolicy>> {
        if self.is_empty() {
            return None;
        }
        match self.check() {
            Ok((scopes, networks)) => KeyPolicy::new(scopes, networks),
            Err(error) => {
                warn!(
                    "key {key_id}: stored scopes or allowlist refused ({error}); the key is \
                     served locked out (no address admitted) until they are set again"
                );
                Some(KeyPolicy::locked_out())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(scopes: &[&str], networks: &[&str]) -> PolicyColumns {
        PolicyColumns {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            allowed_networks: networks.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn keys_without_scopes_or_allowlist_carry_no_policy() {
        assert_eq!(PolicyColumns::default().resolve(Uuid::nil()), None);
        assert_eq!(KeyPolicy::new(Vec::new(), Vec::new()), None);
    }

    #[test]
    fn stored_values_are_checked_and_sorted() {
        let policy = columns(
            &["orders:write", "orders:read"],
            &["2001:db8::/32", "10.0.0.0/8"],
        )
        .resolve(Uuid::nil())
        .unwrap();
        assert_eq!(policy.scopes(), ["orders:read", "orders:write"]);
        let networks: Vec<String> = policy.networks().iter().map(|n| n.to_string()).collect();
        assert_eq!(networks, ["10.0.0.0/8", "2001:db8::/32"]);
        assert!(policy.admits(Some(ip("10.1.2.3"))));
        assert!(policy.admits(Some(ip("::ffff:10.1.2.3"))));
        assert!(policy.admits(Some(ip("2001:db8::7"))));
        assert!(!policy.admits(Some(ip("192.0.2.1"))));
        assert!(!policy.admits(None), "an unknown address is refused");
    }

    #[test]
    fn scopes_alone_admit_every_address() {
        let policy = columns(&["a"], &[]).resolve(Uuid::nil()).unwrap();
        assert!(!policy.has_allowlist());
        assert!(policy.admits(None));
        assert!(policy.admits(Some(ip("192.0.2.1"))));
    }

    #[test]
    fn values_the_contract_refuses_lock_the_key_out() {
        for bad in [
            columns(&["Orders"], &[]),
            columns(&[], &["0.0.0.0/32", "::/128"]),
            columns(&[], &["not a network"]),
        ] {
            let policy = bad.resolve(Uuid::nil()).unwrap();
            assert_eq!(*policy, *KeyPolicy::locked_out());
            for address in ["10.0.0.1", "192.0.2.1", "2001:db8::1", "::ffff:8.8.8.8"] {
                assert!(!policy.admits(Some(ip(address))), "{address}");
            }
            assert!(policy.scopes().is_empty(), "grants no scope either");
        }
    }
}
