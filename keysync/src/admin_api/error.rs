//! The one shape of every error the API answers, `{"error": "<code>", "message": "..."}`,
//! and the status each failure gets: 400 a request that does not parse, 401 no valid
//! token, 403 a read-only token asking for a change (or an organization's token making
//! an organization), 404 an unknown organization or key (or one a token limited to
//! another organization may not see), 409 a state that forbids the change (rotating a
//! revoked key, replaying an answer sealed elsewhere), 413 a body over the
//! limit, 422 a value the operation refuses, 429 an address that sent too many bad
//! tokens, 500/503 the database. Messages name ids and the offending value a caller
//! sent, never a key, a token, a password or database detail (those go to keysync's log,
//! without secrets).

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tracing::error;

use super::idempotency_secret::SECRET_FILE_VARIABLE;
use crate::database::describe_sqlx;
use crate::operations::audit::AuditError;
use crate::operations::durations::InvalidDuration;
use crate::operations::invoices::CostError;
use crate::operations::key_import::ImportError;
use crate::operations::key_metadata::KeyMetadataError;
use crate::operations::key_policy::PolicyOpError;
use crate::operations::keys::KeyError;
use crate::operations::limits::LimitError;
use crate::operations::name::InvalidName;
use crate::operations::org_plans::OrgPlanError;
use crate::operations::orgs::OrgError;
use crate::operations::plans::PlanError;
use crate::operations::quotas::QuotaError;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code to branch on, such as `key_not_found` or `invalid_request`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Retry-After` in seconds (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same answer under another code.
    pub fn with_code(self, code: &'static str) -> ApiError {
        ApiError { code, ..self }
    }

    /// 400: the request does not parse (JSON, a field, a header, an id, a query).
    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 422: the request parses, but the operation refuses a value.
    pub fn invalid_value(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", message)
    }

    pub fn missing_token() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "send an admin token as 'Authorization: Bearer <token>' \
             (keysync admin-tokens create)",
        )
    }

    pub fn invalid_token() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the admin token is unknown or revoked",
        )
    }

    pub fn read_only_token() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only_token",
            "this admin token is read-only: it may read, not change",
        )
    }

    /// 403: a token limited to one organization asked for what concerns none (making an
    /// organization).
    pub fn org_scoped_token() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "org_scoped_token",
            "this admin token is limited to one organization: it cannot make organizations",
        )
    }

    /// 409: a retry whose first answer was stored, sealed under a secret this process
    /// does not have. Nothing is done again: the client must not take it for a failure
    /// and make the thing twice.
    pub fn idempotent_answer_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "idempotent_answer_unavailable",
            format!(
                "a request with this Idempotency-Key was carried out already, but its answer \
                 was sealed by another keysync process (a restart, or another replica, \
                 without the same {SECRET_FILE_VARIABLE}) and cannot be shown again; nothing \
                 was done now: list the organization's keys to find what was made"
            ),
        )
    }

    pub fn too_many_failed_tokens(wait: Duration) -> ApiError {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failed_tokens",
                format!(
                    "too many unknown or revoked admin tokens from this address; \
                     try again in {seconds}s"
                ),
            )
        }
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is over {limit} bytes"),
        )
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this path does not take that method (see /v1/openapi.json)",
        )
    }

    /// 500 or 503 for a database failure; the detail goes to the log only.
    pub fn database(error: &sqlx::Error) -> ApiError {
        error!("database error: admin api: {}", describe_sqlx(error));
        let unavailable = matches!(
            error,
            sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
        );
        if unavailable {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "PostgreSQL cannot be reached; nothing was changed, try again",
            )
        } else {
            ApiError::internal()
        }
    }

    /// 500: something keysync did not expect; the detail is in its log.
    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "keysync failed to answer; its log says why",
        )
    }

    /// A stored row outside the schema's rules: keysync's fault, not the caller's.
    fn invalid_row(what: impl std::fmt::Display) -> ApiError {
        error!("admin api: unexpected row: {what}");
        ApiError::internal()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_owned(),
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<InvalidName> for ApiError {
    fn from(error: InvalidName) -> ApiError {
        ApiError::invalid_value(error.to_string())
    }
}

impl From<InvalidDuration> for ApiError {
    fn from(error: InvalidDuration) -> ApiError {
        ApiError::invalid_value(error.to_string())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> ApiError {
        ApiError::database(&error)
    }
}

impl From<OrgError> for ApiError {
    fn from(error: OrgError) -> ApiError {
        let message = error.to_string();
        match error {
            OrgError::AlreadyExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "org_exists", message)
            }
            OrgError::ExternalIdTaken(_) => {
                ApiError::new(StatusCode::CONFLICT, "external_id_taken", message)
            }
            OrgError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "org_not_found", message),
            OrgError::InvalidRow(row) => ApiError::invalid_row(row),
            OrgError::Database(error) => ApiError::database(&error),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> ApiError {
        let message = error.to_string();
        let status = |status, code| ApiError::new(status, code, message.clone());
        match error {
            KeyError::OrgNotFound(_) => status(StatusCode::NOT_FOUND, "org_not_found"),
            KeyError::NotFound(_) => status(StatusCode::NOT_FOUND, "key_not_found"),
            KeyError::Revoked(_) => status(StatusCode::CONFLICT, "key_revoked"),
            KeyError::Expired(_) => status(StatusCode::CONFLICT, "key_expired"),
            KeyError::AlreadyRotated { .. } => status(StatusCode::CONFLICT, "key_already_rotated"),
            KeyError::UnknownEnvironment { .. } => {
                status(StatusCode::CONFLICT, "key_not_rotatable")
            }
            KeyError::InvalidRow(row) => ApiError::invalid_row(row),
            KeyError::Database(error) => ApiError::database(&error),
        }
    }
}

impl From<KeyMetadataError> for ApiError {
    fn from(error: KeyMetadataError) -> ApiError {
        let message = error.to_string();
        match error {
            KeyMetadataError::KeyNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "key_not_found", message)
            }
            KeyMetadataError::Database(error) => ApiError::database(&error),
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(error: ImportError) -> ApiError {
        let message = error.to_string();
        match error {
            ImportError::OrgNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "org_not_found", message)
            }
            ImportError::Line { .. } | ImportError::Empty => {
                ApiError::invalid_value(message).with_code("invalid_import")
            }
            ImportError::Conflict => {
                ApiError::new(StatusCode::CONFLICT, "import_conflict", message)
            }
            ImportError::Database(error) => ApiError::database(&error),
        }
    }
}

impl From<QuotaError> for ApiError {
    fn from(error: QuotaError) -> ApiError {
        let message = error.to_string();
        match error {
            QuotaError::OrgNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "org_not_found", message)
            }
            QuotaError::KeyNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "key_not_found", message)
            }
            QuotaError::Database(error) => ApiError::database(&error),
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(error: LimitError) -> ApiError {
        let message = error.to_string();
        match error {
            LimitError::OrgNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "org_not_found", message)
            }
            LimitError::KeyNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "key_not_found", message)
            }
            LimitError::OutOfRange => ApiError::invalid_value(message),
            LimitError::InvalidRow(row) => ApiError::invalid_row(row),
            LimitError::Database(error) => ApiError::database(&error),
        }
    }
}

impl From<PolicyOpError> for ApiError {
    fn from(error: PolicyOpError) -> ApiError {
        let message = error.to_string();
        match error {
            PolicyOpError::KeyNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "key_not_found", message)
            }
            PolicyOpError::Invalid(_) => ApiError::invalid_value(message),
            PolicyOpError::Database(error) => ApiError::database(&error),
        }
    }
}

impl From<PlanError> for ApiError {
    fn from(error: PlanError) -> ApiError {
        let message = error.to_string();
        match error {
            PlanError::AlreadyExists(_) => {
                ApiError::new(StatusCode::CONFLICT, "plan_exists", message)
            }
            PlanError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "plan_not_found", message)
            }
            PlanError::Archived(_) => ApiError::new(StatusCode::CONFLICT, "plan_archived", message),
            PlanError::NameLikeAnId(_) => ApiError::invalid_value(message),
            PlanError::InvalidRow(row) => ApiError::invalid_row(row),
            PlanError::Database(error) => ApiError::database(&error),
        }
    }
}

impl From<OrgPlanError> for ApiError {
    fn from(error: OrgPlanError) -> ApiError {
        let message = error.to_string();
        match error {
            OrgPlanError::OrgNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "org_not_found", message)
            }
            OrgPlanError::Plan(error) => error.into(),
            OrgPlanError::CurrencyChange { .. } => {
                ApiError::new(StatusCode::CONFLICT, "currency_change", message)
            }
            OrgPlanError::Database(error) => ApiError::database(&error),
        }
    }
}

impl From<CostError> for ApiError {
    fn from(error: CostError) -> ApiError {
        let message = error.to_string();
        match error {
            CostError::OrgNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "org_not_found", message)
            }
            CostError::NoPlan { .. } => ApiError::new(StatusCode::NOT_FOUND, "no_plan", message),
            CostError::Invoice(_) => ApiError::new(StatusCode::CONFLICT, "cannot_price", message),
            CostError::InvalidRow(row) => ApiError::invalid_row(row),
            CostError::Database(error) => ApiError::database(&error),
        }
    }
}

impl From<AuditError> for ApiError {
    fn from(error: AuditError) -> ApiError {
        let message = error.to_string();
        match error {
            AuditError::OrgNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "org_not_found", message)
            }
            AuditError::InvalidRow(row) => ApiError::invalid_row(row),
            AuditError::Database(error) => ApiError::database(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;
    use uuid::Uuid;

    use super::*;

    async fn answer(error: impl Into<ApiError>) -> (StatusCode, Response) {
        let response = error.into().into_response();
        (response.status(), response)
    }

    #[tokio::test]
    async fn every_error_is_one_json_shape() {
        let (status, response) = answer(KeyError::Revoked(Uuid::nil())).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "key_revoked");
        assert!(json["message"].as_str().unwrap().contains("is revoked"));
        assert_eq!(json.as_object().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn unauthorized_challenges_and_throttled_says_when() {
        let (_, response) = answer(ApiError::missing_token()).await;
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let (status, response) = answer(ApiError::too_many_failed_tokens(Duration::from_millis(
            5500,
        )))
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "6");
    }

    #[tokio::test]
    async fn database_detail_stays_in_the_log() {
        let (status, response) = answer(sqlx::Error::PoolTimedOut).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("pool"));
        let (status, _) = answer(sqlx::Error::RowNotFound).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn statuses_follow_the_failure() {
        let id = Uuid::nil();
        for (error, status, code) in [
            (KeyError::NotFound(id).into(), 404, "key_not_found"),
            (KeyError::OrgNotFound(id).into(), 404, "org_not_found"),
            (KeyError::Expired(id).into(), 409, "key_expired"),
            (
                KeyError::AlreadyRotated { id, successor: id }.into(),
                409,
                "key_already_rotated",
            ),
            (OrgError::AlreadyExists(id).into(), 409, "org_exists"),
            (LimitError::OutOfRange.into(), 422, "invalid_value"),
            (LimitError::KeyNotFound(id).into(), 404, "key_not_found"),
            (PolicyOpError::KeyNotFound(id).into(), 404, "key_not_found"),
            (AuditError::OrgNotFound(id).into(), 404, "org_not_found"),
        ] {
            let error: ApiError = error;
            assert_eq!((error.status.as_u16(), error.code), (status, code));
        }
    }
}
