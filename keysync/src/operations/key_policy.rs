//! Key policies, as operators set them: the scopes a key grants (`api_keys.scopes`) and
//! the networks it may be used from (`api_keys.allowed_networks`), checked with the
//! contract's rules ([`keysync_contract::key_policy`]) before anything is written.
//!
//! Both are replaced whole (a clear is the empty list), each in one transaction that
//! locks the key, writes it and records the values before and after in the audit trail.
//! Like limits, a change restamps the key (the revision trigger), so keysync pushes it
//! to the gateways like any other key change; a write that would change nothing is
//! skipped and records nothing.

use std::net::IpAddr;

use keysync_contract::key_policy::{check_networks, check_scopes, Network, PolicyError};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::actor::Actor;
use super::audit::AuditAction;
use super::audited_write::{self, AuditedWrite};

/// Scopes or networks the contract refuses; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPolicy(pub PolicyError);

/// A key's scopes, checked: 1 to 64 characters of `[a-z0-9:._-]` each, at most 32,
/// sorted and without repeats (as stored and served).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

impl Scopes {
    pub fn parse<S: AsRef<str>>(scopes: &[S]) -> Result<Scopes, InvalidPolicy> {
        check_scopes(scopes).map(Scopes).map_err(InvalidPolicy)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

/// A key's allowlist, checked: at most 16 IPv4 or IPv6 networks (`203.0.113.0/24`, or an
/// address alone for itself), not all of them networks no client can come from; sorted,
/// without repeats, with each network's host bits cleared (`203.0.113.7/24` is
/// `203.0.113.0/24`: the same addresses, written as PostgreSQL's `cidr` stores it).
/// Empty: the key may be used from anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist(Vec<Network>);

impl Allowlist {
    pub fn parse<S: AsRef<str>>(networks: &[S]) -> Result<Allowlist, InvalidPolicy> {
        let mut networks: Vec<Network> = check_networks(networks)
            .map_err(InvalidPolicy)?
            .into_iter()
            .map(without_host_bits)
            .collect();
        networks.sort();
        networks.dedup();
        Ok(Allowlist(networks))
    }

    pub fn networks(&self) -> &[Network] {
        &self.0
    }

    /// As the database takes and gives them, `203.0.113.0/24`.
    pub fn texts(&self) -> Vec<String> {
        self.0.iter().map(Network::to_string).collect()
    }
}

/// `network` with the bits past its prefix cleared. (A prefix that admits no address
/// keeps all its bits, so this never turns a usable allowlist into one that admits
/// nothing, nor the other way round.)
fn without_host_bits(network: Network) -> Network {
    fn mask<const N: usize>(mut octets: [u8; N], prefix_len: u8) -> [u8; N] {
        for (index, octet) in octets.iter_mut().enumerate() {
            let kept = usize::from(prefix_len).saturating_sub(index * 8).min(8);
            // kept is 0..=8; shifting a u16 keeps 8 well defined.
            *octet &= (0xff00u16 >> kept) as u8;
        }
        octets
    }
    let address = match network.address {
        IpAddr::V4(v4) => IpAddr::from(mask(v4.octets(), network.prefix_len)),
        IpAddr::V6(v6) => IpAddr::from(mask(v6.octets(), network.prefix_len)),
    };
    Network {
        address,
        prefix_len: network.prefix_len,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyOpError {
    #[error("key {0} not found")]
    KeyNotFound(Uuid),
    #[error(transparent)]
    Invalid(#[from] InvalidPolicy),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// A key's scopes after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyScopesOutcome {
    pub key_id: Uuid,
    pub org_id: Uuid,
    /// The scopes the key now grants, sorted; `[]`: none (routes that require a scope
    /// refuse it).
    pub scopes: Vec<String>,
    /// False when the key already had exactly these; nothing was written.
    pub changed: bool,
}

/// A key's allowlist after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KeyAllowlistOutcome {
    pub key_id: Uuid,
    pub org_id: Uuid,
    /// The networks the key may now be used from, sorted; `[]`: anywhere.
    pub allowed_networks: Vec<String>,
    /// False when the key already had exactly these; nothing was written.
    pub changed: bool,
}

/// Scopes as the audit trail records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct AuditedScopes {
    scopes: Vec<String>,
}

/// An allowlist as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct AuditedAllowlist {
    allowed_networks: Vec<String>,
}

/// One of a key's policy lists, as stored in `api_keys`.
#[derive(Debug, Clone, Copy)]
enum PolicyList {
    Scopes,
    Allowlist,
}

impl PolicyList {
    /// Reads the list as text.
    fn select(self) -> &'static str {
        match self {
            PolicyList::Scopes => "SELECT scopes FROM api_keys WHERE id = $1",
            PolicyList::Allowlist => "SELECT allowed_networks::text[] FROM api_keys WHERE id = $1",
        }
    }

    fn update(self) -> &'static str {
        match self {
            PolicyList::Scopes => {
                "UPDATE api_keys SET scopes = $2, changed_by_token = $3 WHERE id = $1"
            }
            PolicyList::Allowlist => {
                "UPDATE api_keys SET allowed_networks = $2::text[]::cidr[], \
                 changed_by_token = $3 WHERE id = $1"
            }
        }
    }

    fn action(self) -> AuditAction {
        match self {
            PolicyList::Scopes => AuditAction::KeyScopesSet,
            PolicyList::Allowlist => AuditAction::KeyAllowlistSet,
        }
    }

    /// The list as the audit trail records it.
    fn audited(self, list: &[String]) -> Audited {
        match self {
            PolicyList::Scopes => Audited::Scopes(AuditedScopes {
                scopes: list.to_vec(),
            }),
            PolicyList::Allowlist => Audited::Allowlist(AuditedAllowlist {
                allowed_networks: list.to_vec(),
            }),
        }
    }
}

/// A policy list as the audit trail records it: an object named for the list.
#[derive(Serialize)]
#[serde(untagged)]
enum Audited {
    Scopes(AuditedScopes),
    Allowlist(AuditedAllowlist),
}

/// Replaces one of a key's policy lists with `new` (checked, in stored form) and records
/// the change; returns the key's organization and whether anything changed. Any key may
/// be given a policy, revoked and expired keys included (like limits).
async fn replace_list(
    pool: &PgPool,
    actor: Actor,
    key_id: Uuid,
    list: PolicyList,
    new: &[String],
) -> Result<(Uuid, bool), PolicyOpError> {
    let write = ListWrite { key_id, list, new };
    let applied = audited_write::apply(pool, actor, &write).await?;
    Ok((applied.org_id, applied.changed))
}

/// One of a key's policy lists, replaced whole.
struct ListWrite<'a> {
    key_id: Uuid,
    list: PolicyList,
    new: &'a [String],
}

impl AuditedWrite for ListWrite<'_> {
    type Value = Vec<String>;
    type Audited = Audited;
    type Answer = ();
    type Error = PolicyOpError;

    fn action(&self) -> AuditAction {
        self.list.action()
    }

    fn object_id(&self) -> Uuid {
        self.key_id
    }

    async fn lock(&self, connection: &mut PgConnection) -> Result<Uuid, PolicyOpError> {
        audited_write::lock_key(connection, self.key_id)
            .await?
            .ok_or(PolicyOpError::KeyNotFound(self.key_id))
    }

    async fn read(
        &self,
        connection: &mut PgConnection,
        _: Uuid,
    ) -> Result<Vec<String>, PolicyOpError> {
        Ok(sqlx::query_scalar(self.list.select())
            .bind(self.key_id)
            .fetch_one(connection)
            .await?)
    }

    fn wanted(&self, _: &Vec<String>) -> Vec<String> {
        self.new.to_vec()
    }

    async fn write(
        &self,
        connection: &mut PgConnection,
        actor: Actor,
        _: Uuid,
        _: &Vec<String>,
        new: &Vec<String>,
    ) -> Result<(), PolicyOpError> {
        sqlx::query(self.list.update())
            .bind(self.key_id)
            .bind(new)
            .bind(actor.token_id())
            .execute(connection)
            .await?;
        Ok(())
    }

    fn audited(&self, value: &Vec<String>) -> Audited {
        self.list.audited(value)
    }

    async fn answer(
        &self,
        _: &mut PgConnection,
        _: Uuid,
        _: &Vec<String>,
    ) -> Result<(), PolicyOpError> {
        Ok(())
    }
}

/// Replaces a key's scopes (`Scopes::default()` clears them) and records the change.
pub async fn set_scopes(
    pool: &PgPool,
    actor: Actor,
    key_id: Uuid,
    scopes: &Scopes,
) -> Result<KeyScopesOutcome, PolicyOpError> {
    let new = scopes.as_slice();
    let (org_id, changed) = replace_list(pool, actor, key_id, PolicyList::Scopes, new).await?;
    Ok(KeyScopesOutcome {
        key_id,
        org_id,
        scopes: new.to_vec(),
        changed,
    })
}

/// Replaces a key's allowlist (`Allowlist::default()` clears it: anywhere) and records
/// the change.
pub async fn set_allowlist(
    pool: &PgPool,
    actor: Actor,
    key_id: Uuid,
    allowlist: &Allowlist,
) -> Result<KeyAllowlistOutcome, PolicyOpError> {
    let new = allowlist.texts();
    let (org_id, changed) = replace_list(pool, actor, key_id, PolicyList::Allowlist, &new).await?;
    Ok(KeyAllowlistOutcome {
        key_id,
        org_id,
        allowed_networks: new,
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked_sorted_and_deduplicated() {
        let scopes = Scopes::parse(&["orders:write", "orders:read", "orders:write"]).unwrap();
        assert_eq!(scopes.as_slice(), ["orders:read", "orders:write"]);
        let error = Scopes::parse(&["Orders:Read"]).unwrap_err();
        assert!(error.to_string().contains("[a-z0-9:._-]"), "{error}");
        let many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
        assert!(Scopes::parse(&many).is_err());
        assert_eq!(Scopes::parse::<&str>(&[]).unwrap(), Scopes::default());
    }

    #[test]
    fn networks_lose_their_host_bits_and_repeats() {
        let list = Allowlist::parse(&[
            "203.0.113.77/24",
            "203.0.113.0/24",
            "2001:db8::1/32",
            "198.51.100.7",
            "10.200.0.0/9",
            "0.0.0.0/0",
        ])
        .unwrap();
        assert_eq!(
            list.texts(),
            [
                "0.0.0.0/0",
                "10.128.0.0/9",
                "198.51.100.7/32",
                "203.0.113.0/24",
                "2001:db8::/32"
            ]
        );
    }

    #[test]
    fn bad_allowlists_are_refused() {
        for bad in [
            &["203.0.113.0/33"][..],
            &["not-a-network"],
            &["0.0.0.0/32", "::/128"],
            &["255.255.255.255"],
        ] {
            assert!(Allowlist::parse(bad).is_err(), "{bad:?}");
        }
        let many: Vec<String> = (0..17).map(|i| format!("10.0.{i}.0/24")).collect();
        let error = Allowlist::parse(&many).unwrap_err();
        assert!(error.to_string().contains("at most 16"), "{error}");
    }

    #[test]
    fn audited_values_are_objects() {
        let scopes = vec!["a".to_owned()];
        assert_eq!(
            serde_json::to_value(AuditedScopes { scopes }).unwrap(),
            serde_json::json!({"scopes": ["a"]})
        );
        assert_eq!(
            serde_json::to_value(AuditedAllowlist {
                allowed_networks: Vec::new()
            })
            .unwrap(),
            serde_json::json!({"allowed_networks": []})
        );
    }
}
