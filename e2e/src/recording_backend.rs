//! An echo backend that also keeps a description of every request it received (see
//! [`crate::echo::describe`]), so a test can check afterwards what reached the backend,
//! whatever the client was told: the gateway's answer says what it decided, the
//! recording says what it let through.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use serde_json::Value;

use crate::echo;

/// The requests received so far, shared with the server.
#[derive(Clone, Default)]
pub struct Recording {
    received: Arc<Mutex<Vec<Value>>>,
}

impl Recording {
    pub fn new() -> Recording {
        Recording::default()
    }

    /// The echo service, recording into this.
    pub fn router(&self) -> Router {
        Router::new().fallback(record).with_state(self.clone())
    }

    /// What arrived since the last call, oldest first.
    pub fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.lock())
    }

    /// How many requests wait to be taken.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn record(State(recording): State<Recording>, request: Request) -> Response {
    let description = echo::describe(request.method(), request.uri(), request.headers());
    recording.lock().push(description);
    echo::echo(request).await
}
