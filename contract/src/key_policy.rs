//! What a key may be limited to beyond being valid: the scopes it grants (a route can
//! require some) and the networks it may be used from. The same names, bounds and
//! checks for keysync (which refuses a key it could not store) and the gateway (which
//! checks them on requests).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Most scopes one key may have.
pub const MAX_SCOPES: usize = 32;
/// Longest scope name, in bytes.
pub const MAX_SCOPE_LEN: usize = 64;
/// Most networks in one key's allowlist.
pub const MAX_NETWORKS: usize = 16;

/// Why a scope list or an allowlist is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    ScopeName(String),
    TooManyScopes(usize),
    Network(String),
    TooManyNetworks(usize),
    /// A prefix that admits no address at all would lock the key out everywhere.
    LocksOutEverything,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::ScopeName(name) => write!(
                f,
                "scope {name:?} must be 1 to {MAX_SCOPE_LEN} characters of [a-z0-9:._-]"
            ),
            PolicyError::TooManyScopes(n) => {
                write!(f, "{n} scopes: a key may have at most {MAX_SCOPES}")
            }
            PolicyError::Network(text) => write!(
                f,
                "{text:?} is not a network (an IPv4 or IPv6 address, with an optional /prefix)"
            ),
            PolicyError::TooManyNetworks(n) => {
                write!(
                    f,
                    "{n} networks: an allowlist may have at most {MAX_NETWORKS}"
                )
            }
            PolicyError::LocksOutEverything => {
                f.write_str("the allowlist would admit no address at all")
            }
        }
    }
}

/// Whether `name` is a valid scope name.
pub fn is_scope_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SCOPE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":._-".contains(&b))
}

/// Checks a key's scopes; returns them sorted and without repeats.
pub fn check_scopes<S: AsRef<str>>(scopes: &[S]) -> Result<Vec<String>, PolicyError> {
    let mut checked = Vec::with_capacity(scopes.len());
    for scope in scopes {
        let scope = scope.as_ref();
        if !is_scope_name(scope) {
            return Err(PolicyError::ScopeName(scope.to_string()));
        }
        checked.push(scope.to_string());
    }
    checked.sort();
    checked.dedup();
    if checked.len() > MAX_SCOPES {
        return Err(PolicyError::TooManyScopes(checked.len()));
    }
    Ok(checked)
}

/// The scopes a route requires, as written in its configuration: names separated by
/// spaces (route metadata `keysync.scopes`). Unknown characters make the route refuse
/// every key rather than none: a typo must not open a route.
pub fn required_scopes(text: &str) -> Result<Vec<&str>, PolicyError> {
    text.split_ascii_whitespace()
        .map(|name| {
            if is_scope_name(name) {
                Ok(name)
            } else {
                Err(PolicyError::ScopeName(name.to_string()))
            }
        })
        .collect()
}

/// The request header in which Envoy names the client's address (after its
/// `x-forwarded-for` settings, `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`) for keysync's
/// ext_authz, which reports only the connection's peer as the source.
pub const CLIENT_ADDRESS_HEADER: &str = "x-keysync-client-address";

/// The request header in which Envoy hands a route's required scopes to the filter
/// (`route_scopes: "header"`): a header-mutation filter's per-route configuration sets it
/// on the routes that require scopes, replacing any value a client sent; the value is
/// what the route's `keysync.scopes` metadata says.
pub const ROUTE_SCOPES_HEADER: &str = "x-keysync-route-scopes";

/// Whether `granted` (sorted, as [`check_scopes`] returns it) holds every one of
/// `required`.
pub fn grants_all<S: AsRef<str>>(granted: &[S], required: &[&str]) -> bool {
    required.iter().all(|needed| {
        granted
            .binary_search_by(|scope| scope.as_ref().cmp(needed))
            .is_ok()
    })
}

/// An IPv4 or IPv6 network: an address and how many of its leading bits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Network {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl Network {
    /// Whether `address` is in this network. An IPv4 address written as IPv6
    /// (`::ffff:203.0.113.5`) counts as the IPv4 one.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.address, address) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix_len)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix_len)
            }
            _ => false,
        }
    }

    /// From its wire form (keysync.v1.Network): 4 or 16 address bytes and a prefix
    /// length that fits them; `None` otherwise.
    pub fn from_parts(address: &[u8], prefix_len: u32) -> Option<Network> {
        let address = match address.len() {
            4 => IpAddr::from(<[u8; 4]>::try_from(address).ok()?),
            16 => IpAddr::from(<[u8; 16]>::try_from(address).ok()?),
            _ => return None,
        };
        let prefix_len = u8::try_from(prefix_len)
            .ok()
            .filter(|&p| p <= Network::max_prefix(address))?;
        Some(Network {
            address,
            prefix_len,
        })
    }

    /// The address bytes of the wire form: 4 for IPv4, 16 for IPv6.
    pub fn address_bytes(&self) -> Vec<u8> {
        match self.address {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }
    }

    fn max_prefix(address: IpAddr) -> u8 {
        match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }
}

fn prefix_matches(net: &[u8], ip: &[u8], prefix_len: u8) -> bool {
    let full = usize::from(prefix_len / 8);
    let rest = prefix_len % 8;
    if net.get(..full) != ip.get(..full) {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    match (net.get(full), ip.get(full)) {
        (Some(n), Some(i)) => n & mask == i & mask,
        _ => false,
    }
}

/// `203.0.113.0/24`, `2001:db8::/32`, or a single address (the whole prefix).
impl FromStr for Network {
    type Err = PolicyError;

    fn from_str(text: &str) -> Result<Self, PolicyError> {
        let bad = || PolicyError::Network(text.to_string());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let max = Network::max_prefix(address);
        let prefix_len = match prefix {
            None => max,
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits
                    .parse::<u8>()
                    .ok()
                    .filter(|&p| p <= max)
                    .ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(Network {
            address,
            prefix_len,
        })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// Checks an allowlist given as text; returns it sorted and without repeats. An empty
/// list means "from anywhere". A list whose networks hold no address a client could
/// come from (`0.0.0.0/32`, `::/128`, `255.255.255.255/32`) would lock the key out
/// everywhere and is refused, like an unparsable or overlong one.
pub fn check_networks<S: AsRef<str>>(networks: &[S]) -> Result<Vec<Network>, PolicyError> {
    let mut checked = networks
        .iter()
        .map(|text| text.as_ref().parse::<Network>())
        .collect::<Result<Vec<_>, _>>()?;
    checked.sort();
    checked.dedup();
    if checked.len() > MAX_NETWORKS {
        return Err(PolicyError::TooManyNetworks(checked.len()));
    }
    let admits_nobody = |net: &Network| {
        net.prefix_len == Network::max_prefix(net.address)
            && match net.address {
                IpAddr::V4(v4) => v4.is_unspecified() || v4.is_broadcast(),
                IpAddr::V6(v6) => v6.is_unspecified(),
            }
    };
    if !checked.is_empty() && checked.iter().all(admits_nobody) {
        return Err(PolicyError::LocksOutEverything);
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_round_trips_and_refuses_bad_parts() {
        for text in ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"] {
            let net: Network = text.parse().unwrap();
            let back = Network::from_parts(&net.address_bytes(), u32::from(net.prefix_len));
            assert_eq!(back, Some(net));
        }
        assert_eq!(Network::from_parts(&[10, 0, 0], 8), None);
        assert_eq!(Network::from_parts(&[10, 0, 0, 0], 33), None);
        assert_eq!(Network::from_parts(&[0; 16], 129), None);
        assert_eq!(Network::from_parts(&[10, 0, 0, 0], 256 + 8), None);
    }

    #[test]
    fn scope_names() {
        for good in ["orders:read", "a", "billing.invoices_v2-write", "0"] {
            assert!(is_scope_name(good), "{good}");
        }
        let long = "x".repeat(MAX_SCOPE_LEN + 1);
        for bad in [
            "",
            "Orders",
            "orders read",
            "orders/read",
            "é",
            long.as_str(),
        ] {
            assert!(!is_scope_name(bad), "{bad}");
        }
        assert_eq!(
            check_scopes(&["b", "a", "b"]),
            Ok(vec!["a".to_string(), "b".to_string()])
        );
        let many: Vec<String> = (0..=MAX_SCOPES).map(|i| format!("s{i}")).collect();
        assert_eq!(
            check_scopes(&many),
            Err(PolicyError::TooManyScopes(MAX_SCOPES + 1))
        );
        assert!(check_scopes(&["ok", "NOT"]).is_err());
    }

    #[test]
    fn routes_require_every_scope_they_name() {
        let granted = check_scopes(&["orders:read", "orders:write"]).unwrap();
        assert!(grants_all(
            &granted,
            &required_scopes("orders:read").unwrap()
        ));
        assert!(grants_all(
            &granted,
            &required_scopes(" orders:write  orders:read ").unwrap()
        ));
        assert!(!grants_all(
            &granted,
            &required_scopes("orders:read billing:read").unwrap()
        ));
        assert!(grants_all(&granted, &required_scopes("").unwrap()));
        assert!(grants_all::<String>(&[], &[]));
        assert!(required_scopes("orders:Read").is_err());
    }

    #[test]
    fn networks_parse_and_contain() {
        let net: Network = "203.0.113.0/24".parse().unwrap();
        assert!(net.contains("203.0.113.77".parse().unwrap()));
        assert!(net.contains("::ffff:203.0.113.77".parse().unwrap()));
        assert!(!net.contains("203.0.114.1".parse().unwrap()));
        assert!(!net.contains("2001:db8::1".parse().unwrap()));
        let odd: Network = "10.0.0.0/9".parse().unwrap();
        assert!(odd.contains("10.127.255.255".parse().unwrap()));
        assert!(!odd.contains("10.128.0.0".parse().unwrap()));
        let v6: Network = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let single: Network = "198.51.100.7".parse().unwrap();
        assert_eq!(single.to_string(), "198.51.100.7/32");
        assert!(single.contains("198.51.100.7".parse().unwrap()));
        let any: Network = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains("8.8.8.8".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "::/129",
            "x",
            "10.0.0.0/+8",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allowlists_are_bounded_and_tidy() {
        let list = check_networks(&["10.0.0.0/8", "10.0.0.0/8", "2001:db8::/32"]).unwrap();
        assert_eq!(list.len(), 2);
        let many: Vec<String> = (0..=MAX_NETWORKS)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        assert_eq!(
            check_networks(&many),
            Err(PolicyError::TooManyNetworks(MAX_NETWORKS + 1))
        );
        assert!(check_networks(&["nonsense"]).is_err());
        assert_eq!(
            check_networks(&["0.0.0.0/32", "::"]),
            Err(PolicyError::LocksOutEverything)
        );
        assert!(check_networks(&["0.0.0.0/32", "10.0.0.1"]).is_ok());
        assert_eq!(check_networks::<&str>(&[]), Ok(Vec::new()));
    }
}
