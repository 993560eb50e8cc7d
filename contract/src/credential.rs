//! Finding the API key in a request: `Authorization: Bearer <key>` (scheme
//! case-insensitive) or `x-api-key: <key>`, and telling a well-formed key from junk
//! before anything is hashed or looked up.

/// Keys longer than this are refused unread: ours are 46 characters (40 before checksums).
pub const MAX_KEY_LEN: usize = 256;

const KEY_PREFIXES: [&[u8]; 2] = [b"sk_live_", b"sk_test_"];
const MIN_SECRET_LEN: usize = 8;

/// Which header carried the key, so that it can be stripped before forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Authorization,
    ApiKeyHeader,
}

impl Source {
    pub fn header(self) -> &'static str {
        match self {
            Source::Authorization => "authorization",
            Source::ApiKeyHeader => "x-api-key",
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No API key offered (no header, an empty one, or another auth scheme).
    Missing,
    /// Something was offered as an API key but cannot be one.
    Malformed,
    Key {
        key: &'a [u8],
        source: Source,
    },
}

/// Decides from the raw header values. `Authorization` with the Bearer scheme wins;
/// otherwise `x-api-key` is used.
pub fn extract<'a>(authorization: Option<&'a [u8]>, api_key: Option<&'a [u8]>) -> Credential<'a> {
    let from_authorization = authorization.and_then(bearer_token);
    if let Some(token) = from_authorization {
        return classify(token, Source::Authorization);
    }
    match api_key {
        Some(value) if !value.is_empty() => classify(value, Source::ApiKeyHeader),
        _ => Credential::Missing,
    }
}

/// Whether `extract` will want the `x-api-key` header: lets the caller skip that
/// host call when `Authorization` already carries a Bearer token.
pub fn needs_api_key_header(authorization: Option<&[u8]>) -> bool {
    authorization.and_then(bearer_token).is_none()
}

/// Whether an `Authorization` value is something a backend must never see: a Bearer
/// credential (whatever its token), or anything holding one of our keys (`Basic sk_...`,
/// `Token sk_...`). Other schemes are the backend's own business. `x-api-key` is always
/// a credential.
pub fn authorization_is_credential(value: &[u8]) -> bool {
    // A repeated header may arrive joined with commas: any part that is one counts.
    value
        .split(|&b| b == b',')
        .any(|part| bearer_token(part.trim_ascii_start()).is_some())
        || KEY_PREFIXES
            .iter()
            .any(|prefix| value.windows(prefix.len()).any(|window| window == *prefix))
}

/// The token of a `Bearer` credential (RFC 6750: one space, then the token); `None` for
/// other schemes. `Bearer` with nothing after it yields an empty token.
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    match value.get(SCHEME.len()..)? {
        [] => Some(&[]),
        [b' ', token @ ..] => Some(token),
        // "Bearerx..." is another scheme name.
        _ => None,
    }
}

fn classify(token: &[u8], source: Source) -> Credential<'_> {
    if token.is_empty() {
        return Credential::Missing;
    }
    if is_well_formed(token) {
        Credential::Key { key: token, source }
    } else {
        Credential::Malformed
    }
}

/// `sk_live_` or `sk_test_`, then at least 8 of `[A-Za-z0-9_-]`, at most 256 bytes in all.
/// Whitespace, control bytes and non-ASCII are refused here, never hashed.
pub fn is_well_formed(token: &[u8]) -> bool {
    if token.len() > MAX_KEY_LEN {
        return false;
    }
    let Some(secret) = KEY_PREFIXES
        .iter()
        .find_map(|prefix| token.strip_prefix(*prefix))
    else {
        return false;
    };
    secret.len() >= MIN_SECRET_LEN
        && secret
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"sk_live_0123456789abcdefABCDEF0123456789";

    fn bearer(value: &[u8]) -> Credential<'_> {
        extract(Some(value), None)
    }

    #[test]
    fn takes_a_bearer_token_with_any_scheme_case() {
        for value in [
            b"Bearer sk_live_0123456789abcdefABCDEF0123456789".as_slice(),
            b"bearer sk_live_0123456789abcdefABCDEF0123456789",
            b"BEARER sk_live_0123456789abcdefABCDEF0123456789",
        ] {
            assert_eq!(
                bearer(value),
                Credential::Key {
                    key: KEY,
                    source: Source::Authorization
                }
            );
        }
    }

    #[test]
    fn takes_x_api_key() {
        assert_eq!(
            extract(None, Some(KEY)),
            Credential::Key {
                key: KEY,
                source: Source::ApiKeyHeader
            }
        );
    }

    #[test]
    fn bearer_wins_over_x_api_key() {
        let other = b"sk_test_zzzzzzzzzzzzzzzz".as_slice();
        let auth = b"Bearer sk_live_0123456789abcdefABCDEF0123456789".as_slice();
        assert_eq!(
            extract(Some(auth), Some(other)),
            Credential::Key {
                key: KEY,
                source: Source::Authorization
            }
        );
        assert!(!needs_api_key_header(Some(auth)));
    }

    #[test]
    fn another_scheme_falls_back_to_x_api_key_or_is_missing() {
        let basic = b"Basic dXNlcjpwYXNz".as_slice();
        assert_eq!(bearer(basic), Credential::Missing);
        assert!(needs_api_key_header(Some(basic)));
        assert_eq!(
            extract(Some(basic), Some(KEY)),
            Credential::Key {
                key: KEY,
                source: Source::ApiKeyHeader
            }
        );
        assert_eq!(bearer(b"Bearersk_live_0123456789"), Credential::Missing);
    }

    #[test]
    fn empty_values_are_missing() {
        assert_eq!(extract(None, None), Credential::Missing);
        assert_eq!(bearer(b""), Credential::Missing);
        assert_eq!(bearer(b"Bearer"), Credential::Missing);
        assert_eq!(bearer(b"Bearer "), Credential::Missing);
        assert_eq!(extract(None, Some(b"")), Credential::Missing);
    }

    #[test]
    fn junk_tokens_are_malformed() {
        let mut huge = b"Bearer sk_live_".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 8 * 1024));
        let cases: [&[u8]; 9] = [
            b"Bearer  sk_live_0123456789abcdef", // extra space before the token
            b"Bearer sk_live_0123456789abcdef ", // trailing whitespace
            b"Bearer \tsk_live_0123456789abcdef", // tab
            b"Bearer sk_live_0123\xff\xfe456789abcdef", // non-UTF-8
            b"Bearer sk_live_short",             // too short
            b"Bearer pk_live_0123456789abcdef",  // wrong prefix
            b"Bearer sk_live_0123456789abcdef, Bearer sk_live_0123456789abcdef", // joined repeats
            b"Bearer sk_live_\x000123456789abcdef", // NUL
            &huge,
        ];
        for value in cases {
            assert_eq!(bearer(value), Credential::Malformed, "{value:?}");
        }
        assert_eq!(
            extract(None, Some(b" sk_live_0123456789abcdef")),
            Credential::Malformed
        );
    }

    #[test]
    fn credentials_in_authorization_are_bearer_or_hold_a_key() {
        for value in [
            b"Bearer sk_live_x".as_slice(),
            b"bearer anything",
            b"  Bearer x",
            b"Bearer",
            b"Basic sk_live_0123456789abcdef",
            b"Token abc sk_test_0123456789",
            b"BEARER,Basic",
            b"Basic dXNlcjpw, bearer x",
        ] {
            assert!(authorization_is_credential(value), "{value:?}");
        }
        for value in [
            b"Basic dXNlcjpwYXNz".as_slice(),
            b"Digest x",
            b"",
            b"Bearerx y",
        ] {
            assert!(!authorization_is_credential(value), "{value:?}");
        }
    }

    #[test]
    fn well_formed_bounds() {
        assert!(is_well_formed(b"sk_test_abcdefgh"));
        assert!(!is_well_formed(b"sk_test_abcdefg"));
        let mut longest = b"sk_test_".to_vec();
        longest.resize(MAX_KEY_LEN, b'x');
        assert!(is_well_formed(&longest));
        longest.push(b'x');
        assert!(!is_well_formed(&longest));
    }
}
