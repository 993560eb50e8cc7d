//! A valid key's policy against the checked request, as the filter judges it: first its
//! allowlist against the client's address, then the route's required scopes against
//! the scopes it grants ([`keysync_contract::key_policy`]).
//!
//! - The client's address is the header [`CLIENT_ADDRESS_HEADER`] when Envoy sends it,
//!   else `attributes.source.address`. ext_authz reports the connection's peer as the
//!   source, not the client Envoy settled on after its `use_remote_address` and
//!   `xff_num_trusted_hops` settings (a load balancer in front would be everybody's
//!   address), so `envoy/ext-authz.yaml` sets the header to that client
//!   (`%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`), replacing any value a client sent,
//!   and allows it through to keysync. A client cannot choose its address by sending
//!   `X-Forwarded-For` unless Envoy is told to trust it. It is read only for keys with
//!   an allowlist.
//! - A route requires scopes through its metadata, `filter_metadata.keysync.scopes`: a
//!   string of scope names separated by spaces (Envoy passes it with
//!   `route_metadata_context_namespaces: [keysync]`). A route without it costs one map
//!   lookup. A value that is not such a string, or names an invalid scope, refuses
//!   every key (`insufficient_scope`): a typo must not open a route.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use envoy_types::pb::google::protobuf::value::Kind;
use keysync_contract::key_policy::{grants_all, required_scopes, CLIENT_ADDRESS_HEADER};
use keysync_contract::reply::Denial;

use crate::key_set::key_policy::KeyPolicy;

/// The `filter_metadata` namespace a route's requirements are read from.
pub const METADATA_NAMESPACE: &str = "keysync";
/// The field of that namespace that lists the scopes a route requires.
pub const SCOPES_FIELD: &str = "scopes";

/// A route's configuration that refuses every key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedRoute(pub String);

/// What stops a valid key with `policy` (`None`: it has neither scopes nor an
/// allowlist) on the request, if anything. `Err` also carries why a route refuses every
/// key, for the log.
pub fn check(
    policy: Option<&KeyPolicy>,
    request: &CheckRequest,
) -> Result<(), (Denial, Option<MalformedRoute>)> {
    if let Some(policy) = policy.filter(|policy| policy.has_allowlist()) {
        if !policy.admits(client_address(request)) {
            return Err((Denial::IpNotAllowed, None));
        }
    }
    let Some(text) = route_scopes(request) else {
        return Ok(());
    };
    let required = match text {
        Ok(text) => required_scopes(text).map_err(|error| {
            (
                Denial::InsufficientScope,
                Some(MalformedRoute(error.to_string())),
            )
        })?,
        Err(malformed) => return Err((Denial::InsufficientScope, Some(malformed))),
    };
    let granted = policy.map_or(&[][..], KeyPolicy::scopes);
    if grants_all(granted, &required) {
        Ok(())
    } else {
        Err((Denial::InsufficientScope, None))
    }
}

/// The client's address as Envoy reports it: its [`CLIENT_ADDRESS_HEADER`] when present
/// (an unparsable one is no address: refused, never the peer instead), else the
/// connection's peer; `None` when there is none, or not an IP address (a Unix socket).
pub fn client_address(request: &CheckRequest) -> Option<IpAddr> {
    let http = request
        .attributes
        .as_ref()
        .and_then(|attributes| attributes.request.as_ref())
        .and_then(|request| request.http.as_ref());
    if let Some(http) = http {
        let raw = http.header_map.as_ref().and_then(|map| {
            map.headers
                .iter()
                .find(|header| header.key == CLIENT_ADDRESS_HEADER)
                .map(|header| header.raw_value.as_slice())
        });
        let value = raw.or_else(|| {
            http.headers
                .get(CLIENT_ADDRESS_HEADER)
                .map(|value| value.as_bytes())
        });
        if let Some(value) = value {
            return std::str::from_utf8(value).ok()?.trim().parse().ok();
        }
    }
    source_address(request)
}

/// The connection's peer as Envoy reports it; `None` when it reports none, or not an
/// IP address (a Unix socket).
fn source_address(request: &CheckRequest) -> Option<IpAddr> {
    let address = request
        .attributes
        .as_ref()?
        .source
        .as_ref()?
        .address
        .as_ref()?;
    match address.address.as_ref()? {
        Address::SocketAddress(socket) => socket.address.parse().ok(),
        _ => None,
    }
}

/// The route's `keysync.scopes` text; `None` when the route names none; `Err` when it
/// is not a string.
fn route_scopes(request: &CheckRequest) -> Option<Result<&str, MalformedRoute>> {
    let value = request
        .attributes
        .as_ref()?
        .route_metadata_context
        .as_ref()?
        .filter_metadata
        .get(METADATA_NAMESPACE)?
        .fields
        .get(SCOPES_FIELD)?;
    Some(match &value.kind {
        Some(Kind::StringValue(text)) => Ok(text),
        _ => Err(MalformedRoute(format!(
            "{METADATA_NAMESPACE}.{SCOPES_FIELD} is not a string of scope names"
        ))),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use envoy_types::pb::envoy::config::core::v3::{
        Address as EnvoyAddress, Metadata, Pipe, SocketAddress,
    };
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer;
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
    use envoy_types::pb::google::protobuf::{Struct, Value};
    use uuid::Uuid;

    use super::*;
    use crate::key_set::key_policy::PolicyColumns;

    fn policy(scopes: &[&str], networks: &[&str]) -> Option<std::sync::Arc<KeyPolicy>> {
        PolicyColumns {
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            allowed_networks: networks.iter().map(|s| (*s).to_owned()).collect(),
        }
        .resolve(Uuid::nil())
    }

    fn request(source: Option<&str>, route_scopes: Option<Kind>) -> CheckRequest {
        let source = source.map(|address| Peer {
            address: Some(EnvoyAddress {
                address: Some(Address::SocketAddress(SocketAddress {
                    address: address.to_owned(),
                    ..SocketAddress::default()
                })),
            }),
            ..Peer::default()
        });
        let route_metadata_context = route_scopes.map(|kind| Metadata {
            filter_metadata: HashMap::from([(
                METADATA_NAMESPACE.to_owned(),
                Struct {
                    fields: HashMap::from([(SCOPES_FIELD.to_owned(), Value { kind: Some(kind) })]),
                },
            )]),
            ..Metadata::default()
        });
        CheckRequest {
            attributes: Some(AttributeContext {
                source,
                route_metadata_context,
                ..AttributeContext::default()
            }),
        }
    }

    fn requiring(scopes: &str) -> Option<Kind> {
        Some(Kind::StringValue(scopes.to_owned()))
    }

    fn verdict(
        policy: &Option<std::sync::Arc<KeyPolicy>>,
        request: &CheckRequest,
    ) -> Result<(), Denial> {
        check(policy.as_deref(), request).map_err(|(denial, _)| denial)
    }

    #[test]
    fn keys_without_policy_pass_routes_without_requirements() {
        assert_eq!(verdict(&None, &request(None, None)), Ok(()));
        assert_eq!(verdict(&None, &CheckRequest::default()), Ok(()));
        assert_eq!(verdict(&None, &request(None, requiring(""))), Ok(()));
        assert_eq!(
            verdict(&None, &request(None, requiring("orders:read"))),
            Err(Denial::InsufficientScope)
        );
    }

    #[test]
    fn a_route_admits_keys_that_grant_every_scope_it_requires() {
        let key = policy(&["orders:read", "orders:write"], &[]);
        for route in ["orders:read", " orders:write  orders:read ", ""] {
            assert_eq!(
                verdict(&key, &request(None, requiring(route))),
                Ok(()),
                "{route}"
            );
        }
        assert_eq!(
            verdict(&key, &request(None, requiring("orders:read billing:read"))),
            Err(Denial::InsufficientScope)
        );
    }

    #[test]
    fn a_malformed_route_refuses_every_key_and_says_why() {
        let key = policy(&["orders:read"], &[]);
        for route in [requiring("Orders:Read"), Some(Kind::NumberValue(1.0))] {
            let result = check(key.as_deref(), &request(None, route));
            assert!(
                matches!(result, Err((Denial::InsufficientScope, Some(_)))),
                "{result:?}"
            );
        }
        assert!(matches!(
            check(None, &request(None, requiring("orders read!"))),
            Err((Denial::InsufficientScope, Some(_)))
        ));
    }

    #[test]
    fn an_allowlist_admits_only_its_networks() {
        let key = policy(&[], &["203.0.113.0/24", "2001:db8::/32"]);
        for inside in ["203.0.113.9", "2001:db8::1", "::ffff:203.0.113.9"] {
            assert_eq!(
                verdict(&key, &request(Some(inside), None)),
                Ok(()),
                "{inside}"
            );
        }
        for outside in ["198.51.100.1", "2001:db9::1", "not an address", ""] {
            assert_eq!(
                verdict(&key, &request(Some(outside), None)),
                Err(Denial::IpNotAllowed),
                "{outside}"
            );
        }
        assert_eq!(
            verdict(&key, &request(None, None)),
            Err(Denial::IpNotAllowed)
        );
        let unix_socket = CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    address: Some(EnvoyAddress {
                        address: Some(Address::Pipe(Pipe::default())),
                    }),
                    ..Peer::default()
                }),
                ..AttributeContext::default()
            }),
        };
        assert_eq!(verdict(&key, &unix_socket), Err(Denial::IpNotAllowed));
    }

    /// `request(source, None)` with Envoy's client-address header, in `headers` or, as
    /// with `encode_raw_headers`, in `header_map`.
    fn with_client_header(source: &str, value: &str, raw: bool) -> CheckRequest {
        use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
        use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
        let mut checked = request(Some(source), None);
        let http = if raw {
            HttpRequest {
                header_map: Some(HeaderMap {
                    headers: vec![HeaderValue {
                        key: CLIENT_ADDRESS_HEADER.to_owned(),
                        raw_value: value.as_bytes().to_vec(),
                        ..HeaderValue::default()
                    }],
                }),
                ..HttpRequest::default()
            }
        } else {
            HttpRequest {
                headers: HashMap::from([(CLIENT_ADDRESS_HEADER.to_owned(), value.to_owned())]),
                ..HttpRequest::default()
            }
        };
        if let Some(attributes) = checked.attributes.as_mut() {
            attributes.request = Some(Request {
                http: Some(http),
                ..Request::default()
            });
        }
        checked
    }

    #[test]
    fn the_client_envoy_settled_on_counts_not_the_peer() {
        let key = policy(&[], &["203.0.113.0/24"]);
        for raw in [false, true] {
            // The peer is a load balancer; Envoy named the client behind it.
            assert_eq!(
                verdict(&key, &with_client_header("10.0.0.5", "203.0.113.9", raw)),
                Ok(())
            );
            // The peer is in the allowlist, the client is not.
            assert_eq!(
                verdict(
                    &key,
                    &with_client_header("203.0.113.1", "198.51.100.1", raw)
                ),
                Err(Denial::IpNotAllowed)
            );
            // A header that names no address is refused, not replaced by the peer.
            assert_eq!(
                verdict(&key, &with_client_header("203.0.113.1", "garbage", raw)),
                Err(Denial::IpNotAllowed)
            );
        }
    }

    #[test]
    fn the_allowlist_is_checked_before_the_scopes() {
        let key = policy(&["orders:read"], &["203.0.113.0/24"]);
        assert_eq!(
            verdict(
                &key,
                &request(Some("198.51.100.1"), requiring("billing:read"))
            ),
            Err(Denial::IpNotAllowed)
        );
        assert_eq!(
            verdict(
                &key,
                &request(Some("203.0.113.1"), requiring("billing:read"))
            ),
            Err(Denial::InsufficientScope)
        );
        assert_eq!(
            verdict(
                &key,
                &request(Some("203.0.113.1"), requiring("orders:read"))
            ),
            Ok(())
        );
    }

    #[test]
    fn a_key_locked_out_for_a_refused_policy_works_nowhere() {
        let key = policy(&[], &["0.0.0.0/32"]);
        for address in ["203.0.113.1", "10.0.0.1", "2001:db8::1"] {
            assert_eq!(
                verdict(&key, &request(Some(address), None)),
                Err(Denial::IpNotAllowed)
            );
        }
    }
}
