//! Where a webhook is sent, and the rules that keep a tenant from pointing keysync at the
//! internal network: HTTPS only (unless `allow_http`), and no private, loopback,
//! link-local or otherwise non-public address (unless `allow_private`). The rules are
//! applied when the webhook is created and again at every delivery, on the addresses the
//! name resolves to then (DNS can change); the connection goes to the address that was
//! checked, never to a second lookup of the name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// The longest URL taken.
pub const MAX_URL_BYTES: usize = 2048;

/// A webhook URL that passed the rules that need no lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    url: Url,
    https: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("invalid URL: {0}")]
    Invalid(String),
    #[error("the URL is not https (allow plain http with --allow-http, for tests)")]
    NotHttps,
    #[error("the URL must not carry a user name or password")]
    Credentials,
    #[error("cannot resolve {host}: {reason}")]
    Unresolved { host: String, reason: String },
    #[error(
        "{host} resolves to {address}, a private, loopback or link-local address \
         (allow it with --allow-private)"
    )]
    NotPublic { host: String, address: IpAddr },
}

impl Destination {
    /// Checks the URL's form: http(s), a host, no credentials, and https unless
    /// `allow_http`.
    pub fn parse(text: &str, allow_http: bool) -> Result<Destination, DestinationError> {
        if text.len() > MAX_URL_BYTES {
            return Err(DestinationError::Invalid(format!(
                "longer than {MAX_URL_BYTES} bytes"
            )));
        }
        let url = Url::parse(text.trim())
            .map_err(|error| DestinationError::Invalid(error.to_string()))?;
        let https = match url.scheme() {
            "https" => true,
            "http" if allow_http => false,
            "http" => return Err(DestinationError::NotHttps),
            other => {
                return Err(DestinationError::Invalid(format!(
                    "scheme '{other}': expected https"
                )))
            }
        };
        if url.host().is_none() {
            return Err(DestinationError::Invalid("no host".to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DestinationError::Credentials);
        }
        Ok(Destination { url, https })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn https(&self) -> bool {
        self.https
    }

    /// The host name as TLS and the `Host` header name it (no brackets for IPv6).
    pub fn host(&self) -> String {
        match self.url.host() {
            Some(Host::Domain(name)) => name.to_owned(),
            Some(Host::Ipv4(address)) => address.to_string(),
            Some(Host::Ipv6(address)) => address.to_string(),
            None => String::new(),
        }
    }

    fn port(&self) -> u16 {
        self.url
            .port_or_known_default()
            .unwrap_or(if self.https { 443 } else { 80 })
    }

    /// The addresses to connect to, each checked: every address the host resolves to
    /// must be public unless `allow_private` (a name with one private address among
    /// public ones is refused: the connection could land on either).
    pub async fn resolve(&self, allow_private: bool) -> Result<Vec<SocketAddr>, DestinationError> {
        let port = self.port();
        let addresses: Vec<SocketAddr> = match self.url.host() {
            Some(Host::Ipv4(address)) => vec![SocketAddr::new(IpAddr::V4(address), port)],
            Some(Host::Ipv6(address)) => vec![SocketAddr::new(IpAddr::V6(address), port)],
            Some(Host::Domain(name)) => tokio::net::lookup_host((name, port))
                .await
                .map_err(|error| DestinationError::Unresolved {
                    host: name.to_owned(),
                    reason: error.to_string(),
                })?
                .collect(),
            None => Vec::new(),
        };
        if addresses.is_empty() {
            return Err(DestinationError::Unresolved {
                host: self.host(),
                reason: "no address".to_owned(),
            });
        }
        if !allow_private {
            if let Some(address) = addresses.iter().find(|address| !is_public(address.ip())) {
                return Err(DestinationError::NotPublic {
                    host: self.host(),
                    address: address.ip(),
                });
            }
        }
        Ok(addresses)
    }
}

/// Whether an address is on the public internet: not private, loopback, link-local,
/// shared (CGNAT), unspecified, broadcast, multicast, documentation, benchmarking or
/// reserved, and for IPv6 not unique-local or an IPv4 address in disguise that is
/// one of those.
pub fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(address) => is_public_v4(address),
        IpAddr::V6(address) => is_public_v6(address),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    !(address.is_private()
        || address.is_loopback()
        || address.is_link_local()
        || address.is_unspecified()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    if let Some(v4) = address.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = address.segments();
    // NAT64 (64:ff9b::/96) reaches the IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., high, low] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    !(address.is_loopback()
        || address.is_unspecified()
        || address.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10.
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
        // Documentation 2001:db8::/32; IPv4-compatible ::/96.
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || segments[..6] == [0; 6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_required_unless_http_is_allowed() {
        assert!(Destination::parse("https://hooks.example.com/k", false).is_ok());
        assert_eq!(
            Destination::parse("http://hooks.example.com/k", false),
            Err(DestinationError::NotHttps)
        );
        let plain = Destination::parse("http://hooks.example.com/k", true).unwrap();
        assert!(!plain.https());
        assert!(matches!(
            Destination::parse("ftp://hooks.example.com/k", true),
            Err(DestinationError::Invalid(_))
        ));
        assert!(matches!(
            Destination::parse("not a url", true),
            Err(DestinationError::Invalid(_))
        ));
        assert_eq!(
            Destination::parse("https://user:pw@hooks.example.com/", false),
            Err(DestinationError::Credentials)
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(matches!(
            Destination::parse(&long, false),
            Err(DestinationError::Invalid(_))
        ));
    }

    #[test]
    fn private_loopback_and_link_local_addresses_are_not_public() {
        for text in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_public(text.parse().unwrap()), "{text}");
        }
        for text in [
            "93.184.215.14",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(text.parse().unwrap()), "{text}");
        }
    }

    #[tokio::test]
    async fn a_literal_private_address_is_refused_unless_allowed() {
        let local = Destination::parse("https://127.0.0.1:8443/hook", false).unwrap();
        assert_eq!(
            local.resolve(false).await,
            Err(DestinationError::NotPublic {
                host: "127.0.0.1".to_owned(),
                address: "127.0.0.1".parse().unwrap()
            })
        );
        assert_eq!(
            local.resolve(true).await.unwrap(),
            vec!["127.0.0.1:8443".parse::<SocketAddr>().unwrap()]
        );
        let v6 = Destination::parse("http://[::1]/hook", true).unwrap();
        assert_eq!(v6.host(), "::1");
        assert_eq!(
            v6.resolve(true).await.unwrap(),
            vec!["[::1]:80".parse::<SocketAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_unless_allowed() {
        let local = Destination::parse("http://localhost:9/hook", true).unwrap();
        assert!(matches!(
            local.resolve(false).await,
            Err(DestinationError::NotPublic { .. })
        ));
        let addresses = local.resolve(true).await.unwrap();
        assert!(addresses.iter().all(|address| address.ip().is_loopback()));
    }
}
