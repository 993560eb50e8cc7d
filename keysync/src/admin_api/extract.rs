//! Reading a request strictly, with every refusal in the API's error shape: JSON bodies
//! with no unknown fields (400) and a size limit (413), query strings with no unknown
//! parameters, ids in the path that must be UUIDs, and the `Idempotency-Key` header.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::ApiError;
use super::ApiState;
use http_body::Body as _;

/// A JSON body. Every request type denies unknown fields, so a misspelt field is a 400
/// rather than silently ignored. An empty body reads as `{}` (for requests whose fields
/// all have defaults, such as a rotation).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(request, state).await?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(JsonBody)
            .map_err(|error| ApiError::invalid_request(format!("invalid JSON body: {error}")))
    }
}

/// The body's bytes, within the size limit (413 beyond it).
async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is over the size limit (KEYSYNC_API_MAX_BODY_BYTES)",
                )
            } else {
                ApiError::invalid_request(format!("cannot read the body: {rejection}"))
            }
        })
}

/// A key import's body: UTF-8 text (JSON Lines) within `KEYSYNC_API_MAX_IMPORT_BYTES`
/// rather than the smaller limit of other bodies, so a whole file is one request and one
/// transaction.
#[derive(Debug)]
pub struct ImportBody(pub String);

impl FromRequest<ApiState> for ImportBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, ApiError> {
        let limit = state.settings().max_import_bytes;
        let mut body = request.into_body();
        let mut bytes = Vec::new();
        // Read frame by frame: the router's default limit applies only to the standard
        // extractors, and this one must stop at its own.
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|error| {
                ApiError::invalid_request(format!("cannot read the body: {error}"))
            })?;
            if let Ok(data) = frame.into_data() {
                if bytes.len() + data.len() > limit {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "the import is over the size limit (KEYSYNC_API_MAX_IMPORT_BYTES)",
                    ));
                }
                bytes.extend_from_slice(&data);
            }
        }
        String::from_utf8(bytes)
            .map(ImportBody)
            .map_err(|_| ApiError::invalid_request("the body is not UTF-8 text"))
    }
}

/// A query string, parsed strictly (unknown parameters are a 400).
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| QueryParams(value))
            .map_err(|rejection| {
                ApiError::invalid_request(format!("invalid query: {}", rejection.body_text()))
            })
    }
}

/// The one id in a path (`/v1/keys/{key_id}`), which must be a UUID.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::invalid_request(rejection.body_text()))?;
        Uuid::parse_str(&text)
            .map(PathId)
            .map_err(|_| ApiError::invalid_request(format!("invalid id '{text}': not a UUID")))
    }
}

/// Shortest and longest `Idempotency-Key` accepted. Sixteen characters at least: the key
/// seals the stored answer (which may hold a new API key), so it should be random, such
/// as a UUID.
pub const IDEMPOTENCY_KEY_MIN: usize = 16;
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

/// The `Idempotency-Key` header of a create, if sent.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let mut values = parts.headers.get_all("idempotency-key").iter();
        let Some(value) = values.next() else {
            return Ok(IdempotencyKey(None));
        };
        if values.next().is_some() {
            return Err(ApiError::invalid_request(
                "send one Idempotency-Key header, not several",
            ));
        }
        let text = value
            .to_str()
            .ok()
            .filter(|text| {
                (IDEMPOTENCY_KEY_MIN..=IDEMPOTENCY_KEY_MAX).contains(&text.len())
                    && text.bytes().all(|byte| byte.is_ascii_graphic())
            })
            .ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "invalid Idempotency-Key: expected {IDEMPOTENCY_KEY_MIN} to \
                     {IDEMPOTENCY_KEY_MAX} visible ASCII characters, such as a random UUID"
                ))
            })?;
        Ok(IdempotencyKey(Some(text.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Example {
        name: String,
        #[serde(default)]
        burst: u32,
    }

    async fn body(text: &'static str) -> Result<Example, ApiError> {
        let request = Request::post("/").body(Body::from(text)).unwrap();
        JsonBody::<Example>::from_request(request, &())
            .await
            .map(|JsonBody(value)| value)
    }

    #[tokio::test]
    async fn bodies_are_strict_json() {
        assert_eq!(
            body(r#"{"name":"a"}"#).await.unwrap(),
            Example {
                name: "a".into(),
                burst: 0
            }
        );
        for bad in [r#"{"name":"a","nmae":"b"}"#, "{", r#"{"name":5}"#, "", "[]"] {
            let error = body(bad).await.unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(error.code, "invalid_request");
        }
        let error = body(r#"{"name":"a","extra":1}"#).await.unwrap_err();
        assert!(error.message.contains("unknown field `extra`"), "{error:?}");
    }

    async fn idempotency(values: &[&str]) -> Result<Option<String>, ApiError> {
        let mut request = Request::post("/");
        for value in values {
            request = request.header("idempotency-key", *value);
        }
        let (mut parts, _) = request.body(()).unwrap().into_parts();
        IdempotencyKey::from_request_parts(&mut parts, &())
            .await
            .map(|IdempotencyKey(key)| key)
    }

    #[tokio::test]
    async fn idempotency_keys_are_long_visible_and_single() {
        assert_eq!(idempotency(&[]).await.unwrap(), None);
        let uuid = Uuid::new_v4().to_string();
        assert_eq!(idempotency(&[&uuid]).await.unwrap(), Some(uuid.clone()));
        for bad in [&["short"][..], &["has a space in it.."], &[&uuid, &uuid]] {
            assert_eq!(
                idempotency(bad).await.unwrap_err().status,
                StatusCode::BAD_REQUEST
            );
        }
    }
}
