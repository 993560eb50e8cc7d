//! The leak-report endpoint (`POST /leak-reports/github` on the admin port), in the
//! shape of GitHub's secret-scanning partner program: a secret scanner that found keys in
//! public posts them, signed ([`signature`]); each one keysync issued is revoked or
//! flagged ([`crate::operations::leaks`]) and every token is answered with its label
//! ([`report`]). Served only when public keys are configured
//! (`KEYSYNC_LEAK_PUBLIC_KEYS_FILE`), which are read again when the file changes
//! ([`public_keys_file`]).
//!
//! - a missing or bad signature: 401, nothing read, nothing changed;
//! - a body over `KEYSYNC_LEAK_MAX_BODY_BYTES`: 413; not a report: 400;
//! - a token that is not a key keysync issued: `false_positive`;
//! - a replayed report: the same labels, nothing changes again.
//!
//! No log line, answer or audit record holds a reported token.

pub mod public_keys_file;
pub mod report;
pub mod signature;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use keysync_contract::credential;
use keysync_contract::key_hash::KeyHash;
use sqlx::PgPool;
use tracing::{info, warn};

use self::public_keys_file::{public_keys_file, PublicKeysFile, RECHECK_AT_MOST_EVERY};
use self::report::{Label, ReportedToken, TokenLabel};
use self::signature::{PublicKeys, SignatureError};
use crate::log_throttle::{held_back_note, LogThrottle, LOG_PERIOD};
use crate::operations::leaks::{self, LeakAction, LeakOutcome, Sighting};

/// Where reports are posted.
pub const PATH: &str = "/leak-reports/github";

const IDENTIFIER_HEADER: &str = "github-public-key-identifier";
const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// The endpoint's settings (`KEYSYNC_LEAK_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakSettings {
    /// As read at start.
    pub public_keys: PublicKeys,
    /// Where they were read from, to read again.
    pub public_keys_file: PathBuf,
    /// How often the file is read again.
    pub reload_interval: Duration,
    pub action: LeakAction,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone)]
struct Endpoint {
    pool: PgPool,
    public_keys: Arc<PublicKeysFile>,
    action: LeakAction,
    refusals: Arc<LogThrottle>,
}

/// The endpoint's routes, for the admin port. Starts reading the key file again every
/// reload period (on the current tokio runtime), for as long as the routes are in use.
pub fn router(pool: PgPool, settings: LeakSettings) -> Router {
    let public_keys = Arc::new(public_keys_file(
        settings.public_keys_file,
        settings.public_keys,
    ));
    tokio::spawn(crate::watched_file::watch(
        Arc::downgrade(&public_keys),
        settings.reload_interval,
    ));
    let endpoint = Endpoint {
        pool,
        public_keys,
        action: settings.action,
        refusals: Arc::new(LogThrottle::new(LOG_PERIOD)),
    };
    Router::new()
        .route(PATH, post(receive))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .with_state(endpoint)
}

async fn receive(State(endpoint): State<Endpoint>, headers: HeaderMap, body: Bytes) -> Response {
    let mut checked = check_signature(&endpoint.public_keys.current(), &headers, &body);
    if checked == Err(SignatureError::UnknownKey) {
        // Perhaps signed with a key listed since the file was last read.
        endpoint
            .public_keys
            .reload_unless_read_within(RECHECK_AT_MOST_EVERY)
            .await;
        checked = check_signature(&endpoint.public_keys.current(), &headers, &body);
    }
    if let Err(error) = checked {
        if let Some(held_back) = endpoint.refusals.admit(Instant::now()) {
            warn!("leak report refused: {error}{}", held_back_note(held_back));
        }
        return error_response(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            &error.to_string(),
        );
    }
    let tokens = match report::parse(&body) {
        Ok(tokens) => tokens,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "invalid_report",
                &error.to_string(),
            )
        }
    };
    let mut labels = Vec::with_capacity(tokens.len());
    for token in &tokens {
        match judge(&endpoint, token).await {
            Ok(label) => labels.push(TokenLabel::new(token, label)),
            Err(error) => {
                // The scanner retries a failed delivery; what was done so far stays done
                // and a retry finds it done.
                warn!("leak report: cannot record it: {error}");
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database cannot be reached; retry later",
                );
            }
        }
    }
    let body = serde_json::to_vec(&labels).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

fn check_signature(
    keys: &PublicKeys,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
    match (header(IDENTIFIER_HEADER), header(SIGNATURE_HEADER)) {
        (Some(identifier), Some(signature)) => keys.verify(identifier, signature, body),
        _ => Err(SignatureError::Missing),
    }
}

/// One token's label, acting on it when it is one of our keys.
async fn judge(endpoint: &Endpoint, token: &ReportedToken) -> Result<Label, sqlx::Error> {
    // Not even in a key's form: nothing to look up.
    if !credential::is_well_formed(token.token.as_bytes()) {
        return Ok(Label::FalsePositive);
    }
    let sighting = Sighting {
        url: token.url.clone(),
        source: token.source.clone(),
    };
    let outcome = leaks::report(
        &endpoint.pool,
        &KeyHash::of_key(token.token.as_bytes()),
        endpoint.action,
        &sighting,
    )
    .await?;
    let (done, key_id) = match outcome {
        LeakOutcome::Unknown => return Ok(Label::FalsePositive),
        LeakOutcome::Revoked { key_id, .. } => ("revoked", key_id),
        LeakOutcome::Flagged { key_id, .. } => ("flagged", key_id),
        LeakOutcome::AlreadyReported { key_id, .. } => ("already reported", key_id),
    };
    info!(
        "leak report: key {key_id} {done} (found at {:?}, source {:?})",
        sighting.url, sighting.source
    );
    Ok(Label::TruePositive)
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
