//! The carriers of the request Envoy asks about, as the raw values
//! [`keysync_contract::credential_sources`] reads: a header by name, `:path` (the
//! request's path with its query string) and `cookie`.
//!
//! Envoy sends the request's headers with lower-case names, by default in `headers`, a
//! map in which the values of a repeated header are joined with `,` (and bytes that
//! are not UTF-8 replaced). With `encode_raw_headers: true` they come in `header_map`
//! instead, as raw bytes, one entry per value; repeated values are then joined here the
//! same way (cookies with `; `, as HTTP/2 splits them), so either way a repeated
//! credential reaches the extractor as one value, which it refuses as malformed.

use std::borrow::Cow;

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use keysync_contract::credential_sources::{COOKIE, PATH};

/// One checked request's headers; a request without HTTP attributes has none.
#[derive(Debug, Default, PartialEq)]
pub struct CredentialHeaders<'a> {
    http: Option<&'a HttpRequest>,
}

impl<'a> CredentialHeaders<'a> {
    pub fn of(request: &'a CheckRequest) -> Self {
        let http = request
            .attributes
            .as_ref()
            .and_then(|attributes| attributes.request.as_ref())
            .and_then(|request| request.http.as_ref());
        CredentialHeaders { http }
    }

    /// The value of header `name` (lower case), `:path` included.
    pub fn get(&self, name: &str) -> Option<Cow<'a, [u8]>> {
        let http = self.http?;
        if name == PATH && !http.path.is_empty() {
            return Some(Cow::Borrowed(http.path.as_bytes()));
        }
        let separator: &[u8] = if name == COOKIE { b"; " } else { b"," };
        match &http.header_map {
            Some(map) if !map.headers.is_empty() => joined(&map.headers, name, separator),
            _ => http
                .headers
                .get(name)
                .map(|value| Cow::Borrowed(value.as_bytes())),
        }
    }
}

/// The values of header `name` in a raw header list, joined with `separator` when
/// repeated.
fn joined<'a>(headers: &'a [HeaderValue], name: &str, separator: &[u8]) -> Option<Cow<'a, [u8]>> {
    let mut values = headers
        .iter()
        .filter(|header| header.key.eq_ignore_ascii_case(name))
        .map(raw_value);
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut all = first.to_vec();
    for value in std::iter::once(second).chain(values) {
        all.extend_from_slice(separator);
        all.extend_from_slice(value);
    }
    Some(Cow::Owned(all))
}

/// `raw_value` when Envoy filled it (`encode_raw_headers`), else `value`.
fn raw_value(header: &HeaderValue) -> &[u8] {
    if header.raw_value.is_empty() {
        header.value.as_bytes()
    } else {
        &header.raw_value
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::HeaderMap;
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::Request;
    use envoy_types::pb::envoy::service::auth::v3::AttributeContext;

    use super::*;

    fn request(http: HttpRequest) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(Request {
                    time: None,
                    http: Some(http),
                }),
                ..AttributeContext::default()
            }),
        }
    }

    fn raw(key: &str, value: &[u8]) -> HeaderValue {
        HeaderValue {
            key: key.into(),
            value: String::new(),
            raw_value: value.to_vec(),
        }
    }

    #[test]
    fn reads_the_header_map_envoy_sends_by_default() {
        let check = request(HttpRequest {
            headers: [
                ("authorization".to_owned(), "Bearer sk_live_a".to_owned()),
                ("x-api-key".to_owned(), "sk_live_b".to_owned()),
                ("x-other".to_owned(), "c".to_owned()),
            ]
            .into_iter()
            .collect(),
            ..HttpRequest::default()
        });
        let headers = CredentialHeaders::of(&check);
        assert_eq!(
            headers.get("authorization").as_deref(),
            Some(b"Bearer sk_live_a".as_slice())
        );
        assert_eq!(
            headers.get("x-api-key").as_deref(),
            Some(b"sk_live_b".as_slice())
        );
    }

    #[test]
    fn the_path_is_the_requests_path_with_its_query() {
        let check = request(HttpRequest {
            path: "/v1/x?api_key=k&a=1".to_owned(),
            ..HttpRequest::default()
        });
        let headers = CredentialHeaders::of(&check);
        assert_eq!(
            headers.get(":path").as_deref(),
            Some(b"/v1/x?api_key=k&a=1".as_slice())
        );
    }

    #[test]
    fn absent_headers_and_absent_attributes_are_none() {
        let empty = CheckRequest::default();
        assert_eq!(CredentialHeaders::of(&empty), CredentialHeaders::default());
        assert_eq!(CredentialHeaders::of(&empty).get("authorization"), None);
        let check = request(HttpRequest::default());
        let headers = CredentialHeaders::of(&check);
        assert_eq!(
            (headers.get("authorization"), headers.get(":path")),
            (None, None)
        );
    }

    #[test]
    fn reads_raw_headers_and_joins_repeated_values() {
        let check = request(HttpRequest {
            header_map: Some(HeaderMap {
                headers: vec![
                    raw("authorization", b"Bearer sk_live_a"),
                    raw("x-api-key", b"sk_live_\xff"),
                    raw("Authorization", b"Bearer sk_live_b"),
                    raw("cookie", b"a=1"),
                    raw("cookie", b"session=k"),
                    HeaderValue {
                        key: "authorization".into(),
                        value: "c".into(),
                        raw_value: Vec::new(),
                    },
                ],
            }),
            ..HttpRequest::default()
        });
        let headers = CredentialHeaders::of(&check);
        assert_eq!(
            headers.get("authorization").as_deref(),
            Some(b"Bearer sk_live_a,Bearer sk_live_b,c".as_slice())
        );
        assert_eq!(
            headers.get("x-api-key").as_deref(),
            Some(b"sk_live_\xff".as_slice())
        );
        assert_eq!(
            headers.get("cookie").as_deref(),
            Some(b"a=1; session=k".as_slice())
        );
    }
}
