//! Admin-token authentication, in front of every `/v1/` route but the OpenAPI document:
//! `Authorization: Bearer <token>` must name an active admin token (401 otherwise), a
//! read-only token may only read (403 for anything but GET), and an address that keeps
//! sending bad tokens is slowed down ([`super::failed_tokens`]). The caller is handed to
//! the handler as an [`AdminCaller`] extension (a token limited to one organization is
//! held to it by [`super::org_scope`]), and every change that succeeds is logged with
//! the token that made it.
//!
//! Only failures are slowed down: from an address over its burst, a valid token is
//! still served, and anything else gets 429 whether or not it was looked up
//! ([`super::active_tokens`] decides whether it is worth a lookup), so guesses stay as
//! slow as before and a guesser behind the same NAT or ingress locks nobody else out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use super::error::ApiError;
use super::ApiState;
use crate::log_throttle::held_back_note;
use crate::operations::admin_tokens::{self, hash_token, AdminCaller};

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn require_token(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let now = Instant::now();
    let Some(presented) = bearer(request.headers()) else {
        return ApiError::missing_token().into_response();
    };
    let caller = match state.shared.failed_tokens.blocked(address, now) {
        None => authenticate(&state, presented, address, now).await,
        Some(wait) => authenticate_throttled(&state, presented, wait, now).await,
    };
    let caller = match caller {
        Ok(caller) => caller,
        Err(refusal) => return refusal.into_response(),
    };
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes && caller.read_only {
        return ApiError::read_only_token().into_response();
    }
    request.extensions_mut().insert(caller);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if changes && response.status().is_success() {
        info!(
            "admin api: {method} {path} -> {} by admin token {}",
            response.status().as_u16(),
            caller.token_id
        );
    }
    response
}

/// An address in good standing: the token is looked up, and a failure counts.
async fn authenticate(
    state: &ApiState,
    presented: &str,
    address: IpAddr,
    now: Instant,
) -> Result<AdminCaller, ApiError> {
    match admin_tokens::authenticate(&state.pool, presented).await {
        Ok(Some(caller)) => Ok(caller),
        Ok(None) => {
            let failures = state.shared.failed_tokens.record(address, now);
            if let Some(held_back) = state.shared.refusal_log.admit(now) {
                warn!(
                    "admin api: unknown or revoked token from {address} ({failures:.0} \
                     recent){}",
                    held_back_note(held_back)
                );
            }
            Err(ApiError::invalid_token())
        }
        Err(error) => Err(ApiError::database(&error)),
    }
}

/// An address over its burst: a token that is not known to be active is refused 429
/// without a lookup; one that is, is looked up (it may have been revoked since). Any
/// refusal is the same 429, and counts nothing more (the wait stays what it was).
async fn authenticate_throttled(
    state: &ApiState,
    presented: &str,
    wait: Duration,
    now: Instant,
) -> Result<AdminCaller, ApiError> {
    let throttled = || ApiError::too_many_failed_tokens(wait);
    if !admin_tokens::could_be_a_token(presented) {
        return Err(throttled());
    }
    let hash = hash_token(presented);
    if !state
        .shared
        .active_tokens
        .may_be_active(&state.pool, &hash, now)
        .await
    {
        return Err(throttled());
    }
    match admin_tokens::authenticate(&state.pool, presented).await {
        Ok(Some(caller)) => Ok(caller),
        Ok(None) => Err(throttled()),
        Err(error) => Err(ApiError::database(&error)),
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The caller the middleware let through.
pub type Caller = axum::Extension<AdminCaller>;

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_token_is_what_follows_bearer() {
        assert_eq!(bearer(&headers("Bearer ksa_abc")), Some("ksa_abc"));
        assert_eq!(bearer(&headers("bearer   ksa_abc ")), Some("ksa_abc"));
        assert_eq!(bearer(&headers("Basic a2V5")), None);
        assert_eq!(bearer(&headers("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
