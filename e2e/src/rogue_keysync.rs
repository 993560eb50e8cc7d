//! A keysync that misbehaves on purpose: it serves a fixed key set, then sends scripted
//! raw bytes on the first `WatchKeys` stream (undecodable messages, revisions going
//! backwards), so tests can show what the real filter in a real Envoy does with them.
//! It speaks gRPC by hand (HTTP/2 frames) because a gRPC library would not send junk.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http_body::Frame;
use keysync_proto::v1 as proto;
use prost::Message;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_stream::StreamExt;

use crate::in_process::InProcessServer;

/// What the rogue serves.
pub struct Script {
    /// What ListKeys serves at first (see [`RogueKeysync::set_keys`]).
    pub keys: Vec<proto::KeyRecord>,
    pub revision: u64,
    /// Raw message payloads for the first watch stream, after which it stays open.
    pub first_watch: Vec<Vec<u8>>,
}

struct Shared {
    script: Script,
    /// What ListKeys serves now (starts as `script.keys`).
    keys: Mutex<Vec<proto::KeyRecord>>,
    list_calls: AtomicUsize,
    watch_calls: AtomicUsize,
    first_watch_taken: Mutex<bool>,
}

pub struct RogueKeysync {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: InProcessServer,
}

/// A valid `KeyChanges` payload.
pub fn changes(revision: u64, upserts: Vec<proto::KeyRecord>) -> Vec<u8> {
    proto::KeyChanges {
        revision,
        upserts,
        removals: Vec::new(),
        resync_required: false,
        partial: false,
    }
    .encode_to_vec()
}

impl RogueKeysync {
    pub fn start(script: Script) -> RogueKeysync {
        let shared = Arc::new(Shared {
            keys: Mutex::new(script.keys.clone()),
            script,
            list_calls: AtomicUsize::new(0),
            watch_calls: AtomicUsize::new(0),
            first_watch_taken: Mutex::new(false),
        });
        let app = Router::new()
            .route("/keysync.v1.KeySync/ListKeys", post(list_keys))
            .route("/keysync.v1.KeySync/LookupKey", post(lookup_key))
            .route("/keysync.v1.KeySync/WatchKeys", post(watch_keys))
            .with_state(shared.clone());
        // Envoy may hold a stream open; a drop does not wait for it to let go.
        let server = InProcessServer::start("rogue keysync", app).detach_on_drop();
        RogueKeysync {
            addr: server.addr,
            shared,
            _server: server,
        }
    }

    /// Changes what ListKeys serves, without a word on the watch stream: drift.
    pub fn set_keys(&self, keys: Vec<proto::KeyRecord>) {
        *self
            .shared
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
    }

    pub fn list_calls(&self) -> usize {
        self.shared.list_calls.load(Ordering::SeqCst)
    }

    pub fn watch_calls(&self) -> usize {
        self.shared.watch_calls.load(Ordering::SeqCst)
    }
}

/// One gRPC length-prefixed message.
fn frame(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(0);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    Bytes::from(out)
}

fn ok_trailers() -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers
}

fn grpc_response(body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

fn unary(payload: Vec<u8>) -> Response {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(frame(&payload))),
        Ok(Frame::trailers(ok_trailers())),
    ];
    grpc_response(Body::new(http_body_util::StreamBody::new(
        tokio_stream::iter(frames),
    )))
}

async fn list_keys(State(shared): State<Arc<Shared>>) -> Response {
    shared.list_calls.fetch_add(1, Ordering::SeqCst);
    let mut keys = shared
        .keys
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    // Pages are in hash order, as the filter requires.
    keys.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
    unary(
        proto::ListKeysResponse {
            keys,
            more: false,
            revision: shared.script.revision,
        }
        .encode_to_vec(),
    )
}

async fn lookup_key(State(shared): State<Arc<Shared>>) -> Response {
    unary(
        proto::LookupKeyResponse {
            key: None,
            revision: shared.script.revision,
        }
        .encode_to_vec(),
    )
}

async fn watch_keys(State(shared): State<Arc<Shared>>) -> Response {
    shared.watch_calls.fetch_add(1, Ordering::SeqCst);
    let first = {
        let mut taken = shared
            .first_watch_taken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        !std::mem::replace(&mut *taken, true)
    };
    let payloads = if first {
        shared.script.first_watch.clone()
    } else {
        // Later streams just say "nothing new", so the filter can settle.
        vec![changes(shared.script.revision, Vec::new())]
    };
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = payloads
        .iter()
        .map(|payload| Ok(Frame::data(frame(payload))))
        .collect();
    let endless = tokio_stream::iter(frames).chain(tokio_stream::pending());
    grpc_response(Body::new(http_body_util::StreamBody::new(endless)))
}
