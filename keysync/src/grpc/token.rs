//! The shared secret Envoy presents on every gRPC call to keysync, as gRPC initial
//! metadata `authorization: Bearer <token>` (Envoy's `grpc_service.initial_metadata`
//! for the ext_authz and rate-limit filters, the wasm filter's `dispatch_grpc_call`
//! metadata).
//!
//! Only the token's SHA-256 is kept, and a presented token is compared by its SHA-256
//! in constant time, so neither its length nor a common prefix shows in timing. The
//! token never appears in `Debug` output, errors or logs. Which tokens are accepted,
//! and with what rights, is [`crate::grpc::tokens`]'s.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

/// Shortest token accepted: a guessable secret is no secret.
pub const MIN_LEN: usize = 16;
/// Longest token accepted (it travels in a header on every call).
pub const MAX_LEN: usize = 1024;
/// The metadata key that carries it.
pub const HEADER: &str = "authorization";

/// A token keysync accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct GrpcToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for GrpcToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrpcToken(***)")
    }
}

/// Why a call's credentials were refused (the words a log line uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `authorization` metadata, or not `Bearer <token>`.
    Missing,
    /// A token that is not ours.
    Wrong,
}

impl Refusal {
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::Missing => "no bearer token",
            Refusal::Wrong => "wrong token",
        }
    }
}

impl GrpcToken {
    /// A token from its text: at least [`MIN_LEN`] and at most [`MAX_LEN`] visible ASCII
    /// characters (it must fit a header value as Envoy sends it). The error says why,
    /// without the token.
    pub fn new(token: &str) -> Result<Self, String> {
        if token.len() < MIN_LEN {
            return Err(format!(
                "a token must be at least {MIN_LEN} characters (random ones, such as \
                 `openssl rand -hex 32` prints)"
            ));
        }
        if token.len() > MAX_LEN {
            return Err(format!("a token must be at most {MAX_LEN} characters"));
        }
        if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(
                "a token may hold only visible ASCII characters (no spaces or control \
                 characters)"
                    .to_owned(),
            );
        }
        Ok(GrpcToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Whether `presented` is this token, compared in constant time.
    pub fn matches(&self, presented: &PresentedToken) -> Choice {
        self.digest.ct_eq(&presented.0)
    }
}

/// The token a call presented, as its SHA-256 (the token itself is not kept).
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedToken([u8; 32]);

impl std::fmt::Debug for PresentedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresentedToken(***)")
    }
}

impl PresentedToken {
    /// The token of the `authorization` metadata's value (`None` when absent).
    pub fn from_authorization(authorization: Option<&[u8]>) -> Result<Self, Refusal> {
        let presented = authorization.and_then(bearer).ok_or(Refusal::Missing)?;
        Ok(PresentedToken(Sha256::digest(presented).into()))
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, one space).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let scheme = value.get(..SCHEME.len())?;
    scheme
        .eq_ignore_ascii_case(SCHEME)
        .then(|| &value[SCHEME.len()..])
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-not-a-real-one";

    fn check(token: &GrpcToken, authorization: Option<&str>) -> Result<(), Refusal> {
        let presented = PresentedToken::from_authorization(authorization.map(str::as_bytes))?;
        if bool::from(token.matches(&presented)) {
            Ok(())
        } else {
            Err(Refusal::Wrong)
        }
    }

    #[test]
    fn the_right_token_passes_in_any_scheme_case() {
        let token = GrpcToken::new(TOKEN).unwrap();
        for value in [
            format!("Bearer {TOKEN}"),
            format!("bearer {TOKEN}"),
            format!("BEARER {TOKEN}"),
        ] {
            assert_eq!(check(&token, Some(&value)), Ok(()), "{value}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        let token = GrpcToken::new(TOKEN).unwrap();
        assert_eq!(check(&token, None), Err(Refusal::Missing));
        for value in [
            "",
            "Bearer",
            "Bearer ",
            TOKEN,
            "Basic abc",
            "Bearer0123456789abcdef-not-a-real-one",
        ] {
            assert_eq!(
                check(&token, Some(value)),
                Err(Refusal::Missing),
                "{value:?}"
            );
        }
        for value in [
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}", &TOKEN[1..]),
            format!("Bearer  {TOKEN}"),
            "Bearer 0123456789abcdef-not-a-real-onE".to_owned(),
        ] {
            assert_eq!(
                check(&token, Some(&value)),
                Err(Refusal::Wrong),
                "{value:?}"
            );
        }
    }

    #[test]
    fn weak_or_unsendable_tokens_are_refused_without_being_shown() {
        for bad in [
            "short",
            "0123456789abcdef with spaces",
            "0123456789abcdef\n",
            &"x".repeat(MAX_LEN + 1),
        ] {
            let reason = GrpcToken::new(bad).unwrap_err();
            assert!(!reason.contains(bad), "{reason}");
        }
        assert_eq!(
            format!("{:?}", GrpcToken::new(TOKEN).unwrap()),
            "GrpcToken(***)"
        );
        let presented =
            PresentedToken::from_authorization(Some(format!("Bearer {TOKEN}").as_bytes())).unwrap();
        assert_eq!(format!("{presented:?}"), "PresentedToken(***)");
    }
}
