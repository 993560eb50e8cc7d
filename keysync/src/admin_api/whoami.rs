//! `/v1/whoami`: what the presented token may do, so that a client (the console) shows
//! only the controls that would work: a read-only token gets no write buttons, a token
//! limited to one organization goes straight to it.

use axum::Json;
use serde::Serialize;
use uuid::Uuid;

use super::auth::Caller;
use super::documented::{Throttled, Unauthorized};

/// The caller's token and its reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub token_id: Uuid,
    /// It may only read (every change answers 403 `read_only_token`).
    pub read_only: bool,
    /// The one organization it may see and change; `null`: every one.
    pub org_id: Option<Uuid>,
}

/// The token this request presented: its id, whether it is read-only, and the one
/// organization it is limited to. Any active token may ask.
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "meta",
    responses(
        (status = 200, description = "The token's rights", body = WhoAmI),
        Unauthorized, Throttled
    )
)]
pub async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI {
        token_id: caller.token_id,
        read_only: caller.read_only,
        org_id: caller.org_id,
    })
}
