//! `/v1/audit`: the audit trail, newest first, a page at a time (`keysync audit`).
//! Readable with a read-only token, like every `GET`; a token limited to one
//! organization reads that organization's records alone. Filtered by organization,
//! object (a key), action and actor, as the console's audit page asks.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::auth::Caller;
use super::documented::{BadRequest, NotFound, Throttled, Unauthorized, Unavailable};
use super::error::ApiError;
use super::extract::QueryParams;
use super::org_scope::reach_org;
use super::{ApiState, ListQuery};
use crate::operations::audit::{self, AuditAction, AuditFilter, AuditPage, ACTOR_KINDS};
use crate::operations::durations::since_named;

/// `?org_id=&since=&limit=&cursor=` of the audit trail.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this organization's records (its keys and limits).
    pub org_id: Option<Uuid>,
    /// Only records this recent: a duration such as `7d`, `24h` or `30m` (`--since`).
    pub since: Option<String>,
    /// Only the records of this object: a key, an organization, a token or a plan.
    pub object_id: Option<Uuid>,
    /// Only this action, such as `key.revoked`.
    pub action: Option<String>,
    /// Only changes made by `cli`, `admin_token`, `leak_report`, or the admin token
    /// with this id.
    pub actor: Option<String>,
    /// Records in the page: 1 to 1000 (larger values are capped), default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

impl AuditQuery {
    fn filter(&self) -> Result<AuditFilter, ApiError> {
        let since = self
            .since
            .as_deref()
            .map(|text| since_named("since", text, Utc::now()))
            .transpose()
            .map_err(|error| ApiError::invalid_request(error.to_string()))?;
        let action = self
            .action
            .as_deref()
            .map(|text| {
                AuditAction::named(text).ok_or_else(|| {
                    ApiError::invalid_request(format!(
                        "invalid action '{text}': expected one such as key.revoked (see \
                         the audit trail's actions)"
                    ))
                })
            })
            .transpose()?;
        let (actor, actor_token_id) = match self.actor.as_deref().map(str::trim) {
            None => (None, None),
            Some(text) => match ACTOR_KINDS.iter().find(|kind| **kind == text) {
                Some(kind) => (Some(*kind), None),
                None => match Uuid::parse_str(text) {
                    Ok(token_id) => (Some("admin_token"), Some(token_id)),
                    Err(_) => {
                        return Err(ApiError::invalid_request(format!(
                            "invalid actor '{text}': expected cli, admin_token, leak_report \
                             or an admin token's id"
                        )))
                    }
                },
            },
        };
        Ok(AuditFilter {
            org_id: self.org_id,
            since,
            object_id: self.object_id,
            action,
            actor,
            actor_token_id,
        })
    }
}

/// The audit trail, newest first, a page at a time: every change operators made
/// through the CLI or this API, who made it (`cli`, or `admin_token` and its id), and
/// the object's values before and after; never a key or a token (`keysync audit`).
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the audit trail, newest first", body = AuditPage),
        BadRequest, Unauthorized, NotFound, Throttled,
        Unavailable
    )
)]
pub async fn list_audit(
    State(state): State<ApiState>,
    caller: Caller,
    QueryParams(query): QueryParams<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let mut filter = query.filter()?;
    if let Some(own) = caller.org_id {
        filter.org_id = Some(reach_org(&caller, filter.org_id.unwrap_or(own))?);
    }
    let page = ListQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    Ok(Json(audit::list_page(&state.pool, filter, page).await?))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn query(since: Option<&str>) -> AuditQuery {
        AuditQuery {
            org_id: None,
            since: since.map(str::to_owned),
            object_id: None,
            action: None,
            actor: None,
            limit: None,
            cursor: None,
        }
    }

    #[test]
    fn since_is_a_duration_back_from_now() {
        assert_eq!(query(None).filter().unwrap(), AuditFilter::default());
        let since = query(Some("7d")).filter().unwrap().since.unwrap();
        let back = Utc::now() - since;
        assert!((back - chrono::TimeDelta::days(7)).num_seconds().abs() < 60);
        let error = query(Some("soon")).filter().unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(
            error.message.starts_with("invalid since 'soon': "),
            "{error:?}"
        );
    }

    /// The document names every action, so adding one without describing it fails.
    #[test]
    fn the_document_names_every_action() {
        let document = super::super::openapi_json();
        for action in AuditAction::ALL {
            assert!(
                document.contains(&format!("`{}`", action.as_str())),
                "{action:?}"
            );
        }
    }
}
