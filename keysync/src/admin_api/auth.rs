//! Admin-token authentication, in front of every `/v1/` route but the OpenAPI document:
//! `Authorization: Bearer <token>` must name an active admin token (401 otherwise), a
//! read-only token may only read (403 for anything but GET), and an address that keeps
//! sending bad tokens is slowed down ([`super::failed_tokens`]). The caller is handed to
//! the handler as an [`AdminCaller`] extension, and every change that succeeds is logged
//! with the token that made it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use super::error::ApiError;
use super::ApiState;
use crate::log_throttle::held_back_note;
use crate::operations::admin_tokens::{self, AdminCaller};

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
    if let Some(wait) = state.shared.failed_tokens.blocked(address, now) {
        return ApiError::too_many_failed_tokens(wait).into_response();
    }
    let Some(presented) = bearer(request.headers()) else {
        return ApiError::missing_token().into_response();
    };
    let caller = match admin_tokens::authenticate(&state.pool, presented).await {
        Ok(Some(caller)) => caller,
        Ok(None) => {
            let failures = state.shared.failed_tokens.record(address, now);
            if let Some(held_back) = state.shared.refusal_log.admit(now) {
                warn!(
                    "admin api: unknown or revoked token from {address} ({failures:.0} \
                     recent){}",
                    held_back_note(held_back)
                );
            }
            return ApiError::invalid_token().into_response();
        }
        Err(error) => return ApiError::database(&error).into_response(),
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
