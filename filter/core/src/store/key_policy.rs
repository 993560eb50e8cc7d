//! What a key may do beyond being valid, as the gateway keeps and checks it: the scopes
//! it grants and the networks it may be used from (names, bounds and set arithmetic are
//! the contract's `key_policy`; keysync calls the same thing `KeyPolicy`). Most keys have
//! neither and carry no policy at all. Stored beside the key's record in its bucket.
//!
//! A policy keysync sent that the gateway cannot use whole (a bad scope name, network
//! bytes of the wrong length, more than the bounds allow) is narrowed, never widened: the
//! bad scope is not granted, the bad network admits nobody. Each such defect is logged
//! and counted (`keysync.bad_policies`).

use keysync_contract::key_policy::{self, Network, MAX_NETWORKS, MAX_SCOPES, MAX_SCOPE_LEN};
use keysync_proto::v1 as proto;
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPolicy {
    /// Sorted, without repeats (the contract's `grants_all` binary-searches it).
    pub scopes: Vec<String>,
    /// `None`: usable from anywhere. `Some`: only from these networks; an empty list
    /// admits nobody (what an allowlist keysync sent becomes when none of it is usable).
    pub networks: Option<Vec<Network>>,
}

thread_local! {
    /// Defects found in policies from keysync since the last `take_defects`. The VM is
    /// single-threaded; the tick moves them into a stat, so converting a record needs no
    /// handle on the stats.
    static DEFECTS: Cell<u64> = const { Cell::new(0) };
}

/// The defects counted since the last call, for the `keysync.bad_policies` stat.
pub fn take_defects() -> u64 {
    DEFECTS.with(|defects| defects.replace(0))
}

fn defect(what: std::fmt::Arguments<'_>) {
    log::warn!("keysync sent a bad key policy: {what}; the key gets less, never more");
    DEFECTS.with(|defects| defects.set(defects.get().saturating_add(1)));
}

impl KeyPolicy {
    /// The policy of a record from keysync; `None` when it restricts nothing.
    pub fn from_proto(record: &proto::KeyRecord) -> Option<KeyPolicy> {
        let mut scopes: Vec<String> = Vec::new();
        for scope in &record.scopes {
            if key_policy::is_scope_name(scope) {
                scopes.push(scope.clone());
            } else {
                defect(format_args!("scope {scope:?} is not a scope name"));
            }
        }
        scopes.sort();
        scopes.dedup();
        if scopes.len() > MAX_SCOPES {
            defect(format_args!("{} scopes, over {MAX_SCOPES}", scopes.len()));
            scopes.truncate(MAX_SCOPES);
        }
        let networks = (!record.allowed_networks.is_empty()).then(|| {
            let mut networks = Vec::new();
            for network in &record.allowed_networks {
                match Network::from_parts(&network.address, network.prefix_len) {
                    Some(network) => networks.push(network),
                    None => defect(format_args!(
                        "network of {} address bytes, prefix {}",
                        network.address.len(),
                        network.prefix_len
                    )),
                }
            }
            networks.sort();
            networks.dedup();
            if networks.len() > MAX_NETWORKS {
                defect(format_args!(
                    "{} networks, over {MAX_NETWORKS}",
                    networks.len()
                ));
                // Fewer networks admit fewer addresses: safe, if harsh.
                networks.truncate(MAX_NETWORKS);
            }
            networks
        });
        let policy = KeyPolicy { scopes, networks };
        (!policy.is_empty()).then_some(policy)
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.networks.is_none()
    }

    /// The policy back in keysync's form (tests, and answers to compare).
    #[cfg(test)]
    pub fn to_proto(&self, record: &mut proto::KeyRecord) {
        record.scopes = self.scopes.clone();
        record.allowed_networks = self
            .networks
            .iter()
            .flatten()
            .map(|network| proto::Network {
                address: network.address_bytes(),
                prefix_len: u32::from(network.prefix_len),
            })
            .collect();
    }

    pub fn has_allowlist(&self) -> bool {
        self.networks.is_some()
    }

    /// Whether a request from `address` (Envoy's `source.address`) may use the key. An
    /// address that is absent or cannot be read is outside every allowlist.
    pub fn admits(&self, address: Option<&[u8]>) -> bool {
        let Some(networks) = &self.networks else {
            return true;
        };
        let Some(ip) = address.and_then(parse_source_address) else {
            return false;
        };
        networks.iter().any(|network| network.contains(ip))
    }

    /// Stored form, after a `u16` length (see `key_bucket`): the scopes, then the networks,
    /// each list a count byte and its items; a scope is a length byte and its bytes, a
    /// network its address length (4 or 16), address and prefix length.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        // The bounds were applied on the way in (`from_proto`): counts and lengths fit a byte.
        out.push(u8::try_from(self.scopes.len()).unwrap_or(u8::MAX));
        for scope in self.scopes.iter().take(usize::from(u8::MAX)) {
            let bytes = scope.as_bytes();
            let bytes = bytes.get(..MAX_SCOPE_LEN).unwrap_or(bytes);
            out.push(u8::try_from(bytes.len()).unwrap_or(0));
            out.extend_from_slice(bytes);
        }
        let networks = self.networks.as_deref().unwrap_or(&[]);
        out.push(u8::try_from(networks.len()).unwrap_or(u8::MAX));
        for network in networks.iter().take(usize::from(u8::MAX)) {
            let address = network.address_bytes();
            out.push(u8::try_from(address.len()).unwrap_or(0));
            out.extend_from_slice(&address);
            out.push(network.prefix_len);
        }
        let len = u16::try_from(out.len() - start - 2).unwrap_or(u16::MAX);
        if let Some(prefix) = out.get_mut(start..start + 2) {
            prefix.copy_from_slice(&len.to_le_bytes());
        }
    }

    /// Splits one stored policy (length included) off the front of `bytes`.
    pub fn split_stored(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        (rest.len() >= len).then(|| rest.split_at(len))
    }

    /// Reads a stored policy (without its length); `allowlist` comes from the record's
    /// flags. `None` unless the bytes are exactly one well-formed policy.
    pub fn decode(bytes: &[u8], allowlist: bool) -> Option<KeyPolicy> {
        let mut reader = Reader(bytes);
        let scope_count = reader.byte()?;
        let mut scopes = Vec::with_capacity(usize::from(scope_count));
        for _ in 0..scope_count {
            let len = reader.byte()?;
            let name = std::str::from_utf8(reader.take(usize::from(len))?).ok()?;
            scopes.push(name.to_string());
        }
        let network_count = reader.byte()?;
        let mut networks = Vec::with_capacity(usize::from(network_count));
        for _ in 0..network_count {
            let len = reader.byte()?;
            let address = reader.take(usize::from(len))?;
            let prefix_len = reader.byte()?;
            networks.push(Network::from_parts(address, u32::from(prefix_len))?);
        }
        if !reader.0.is_empty() || (!allowlist && !networks.is_empty()) {
            return None;
        }
        Some(KeyPolicy {
            scopes,
            networks: allowlist.then_some(networks),
        })
    }

    /// What a record flagged with a policy that cannot be read gets: nothing.
    pub fn unusable() -> KeyPolicy {
        KeyPolicy {
            scopes: Vec::new(),
            networks: Some(Vec::new()),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(taken)
    }
}

/// Envoy's `source.address`: `ip:port`, `[ipv6]:port`; a bare address is taken too.
/// Anything else (a pipe path, garbage) is `None`.
pub fn parse_source_address(text: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(text).ok()?;
    text.parse::<SocketAddr>()
        .map(|socket| socket.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()
}

/// Whether `policy` grants every scope of a route's requirement (route metadata
/// `keysync.scopes`, as read from the host). A requirement that cannot be read refuses
/// every key: a typo must not open a route.
pub fn grants(policy: Option<&KeyPolicy>, required: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(required) else {
        return false;
    };
    let Ok(required) = key_policy::required_scopes(text) else {
        return false;
    };
    let granted = policy.map_or(&[][..], |policy| policy.scopes.as_slice());
    key_policy::grants_all(granted, &required)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto_with(scopes: &[&str], networks: &[(&[u8], u32)]) -> proto::KeyRecord {
        proto::KeyRecord {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            allowed_networks: networks
                .iter()
                .map(|(address, prefix_len)| proto::Network {
                    address: address.to_vec(),
                    prefix_len: *prefix_len,
                })
                .collect(),
            ..proto::KeyRecord::default()
        }
    }

    fn net(text: &str) -> Network {
        text.parse().unwrap()
    }

    #[test]
    fn a_record_without_scopes_or_networks_has_no_policy() {
        assert_eq!(KeyPolicy::from_proto(&proto_with(&[], &[])), None);
    }

    #[test]
    fn converts_sorts_and_round_trips() {
        let v6 = net("2001:db8::/32");
        let policy = KeyPolicy::from_proto(&proto_with(
            &["orders:write", "orders:read", "orders:read"],
            &[(&[10, 0, 0, 0], 8), (&v6.address_bytes(), 32)],
        ))
        .unwrap();
        assert_eq!(policy.scopes, ["orders:read", "orders:write"]);
        assert_eq!(policy.networks, Some(vec![net("10.0.0.0/8"), v6]));
        let mut bytes = Vec::new();
        policy.encode_into(&mut bytes);
        let (stored, rest) = KeyPolicy::split_stored(&bytes).unwrap();
        assert!(rest.is_empty());
        assert_eq!(KeyPolicy::decode(stored, true), Some(policy.clone()));
        assert_eq!(KeyPolicy::decode(stored, false), None, "networks, no flag");
        assert_eq!(KeyPolicy::decode(&stored[..stored.len() - 1], true), None);

        let scopes_only = KeyPolicy::from_proto(&proto_with(&["a"], &[])).unwrap();
        assert_eq!(scopes_only.networks, None);
        let mut bytes = Vec::new();
        scopes_only.encode_into(&mut bytes);
        let (stored, _) = KeyPolicy::split_stored(&bytes).unwrap();
        assert_eq!(KeyPolicy::decode(stored, false), Some(scopes_only));
    }

    #[test]
    fn a_bad_policy_is_narrowed_and_counted() {
        take_defects();
        let policy = KeyPolicy::from_proto(&proto_with(
            &["ok", "NOT OK", ""],
            &[(&[10, 0, 0], 8), (&[10, 0, 0, 0], 33)],
        ))
        .unwrap();
        assert_eq!(policy.scopes, ["ok"], "bad names are not granted");
        assert_eq!(
            policy.networks,
            Some(Vec::new()),
            "an allowlist with no usable network admits nobody"
        );
        assert!(!policy.admits(Some(b"10.0.0.1:80")));
        assert_eq!(take_defects(), 4);
        assert_eq!(take_defects(), 0);

        let many: Vec<String> = (0..40).map(|i| format!("s{i:02}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let policy = KeyPolicy::from_proto(&proto_with(&many, &[])).unwrap();
        assert_eq!(policy.scopes.len(), MAX_SCOPES);
        assert_eq!(take_defects(), 1);
    }

    #[test]
    fn source_addresses_as_envoy_writes_them() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(parse_source_address(b"203.0.113.7:51234"), Some(v4));
        assert_eq!(parse_source_address(b"203.0.113.7"), Some(v4));
        assert_eq!(
            parse_source_address(b"[2001:db8::1]:443"),
            Some("2001:db8::1".parse().unwrap())
        );
        for bad in [
            &b""[..],
            b"/tmp/envoy.sock",
            b"[::1",
            b"nonsense:80",
            b"\xff",
        ] {
            assert_eq!(parse_source_address(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn allowlists_admit_inside_only() {
        let policy = KeyPolicy {
            scopes: Vec::new(),
            networks: Some(vec![net("203.0.113.0/24"), net("2001:db8::/32")]),
        };
        assert!(policy.admits(Some(b"203.0.113.9:1000")));
        assert!(policy.admits(Some(b"[::ffff:203.0.113.9]:1000")), "mapped");
        assert!(policy.admits(Some(b"[2001:db8::5]:1000")));
        assert!(!policy.admits(Some(b"198.51.100.1:1000")));
        assert!(!policy.admits(Some(b"[2001:db9::5]:1000")));
        assert!(!policy.admits(Some(b"garbage")));
        assert!(!policy.admits(None), "no address: refused");
        assert!(KeyPolicy::default().admits(None), "no allowlist: anywhere");
    }

    #[test]
    fn routes_need_every_scope_and_a_readable_requirement() {
        let policy = KeyPolicy {
            scopes: vec!["orders:read".into(), "orders:write".into()],
            networks: None,
        };
        assert!(grants(Some(&policy), b"orders:read"));
        assert!(grants(Some(&policy), b" orders:write orders:read "));
        assert!(!grants(Some(&policy), b"orders:read billing:read"));
        assert!(!grants(None, b"orders:read"), "a key without scopes");
        assert!(grants(None, b""), "an empty requirement requires nothing");
        assert!(!grants(Some(&policy), b"orders:Read"), "malformed");
        assert!(!grants(Some(&policy), b"\xff"), "not text");
    }
}
