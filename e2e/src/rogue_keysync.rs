//! A keysync that misbehaves on purpose: it serves a key set it is given, and puts on
//! the wire whatever the test scripts (undecodable messages, revisions going backwards,
//! change sets that never end, frames larger than any real answer, lookup answers for
//! another key), so tests can show what the real filter in a real Envoy does with them.
//! It speaks gRPC by hand (HTTP/2 frames) because a gRPC library would not send junk.
//!
//! By default it behaves: `ListKeys` serves its keys at its revision, `LookupKey`
//! answers from them, and every `WatchKeys` stream gets one heartbeat and stays open.
//! [`Script::first_watch`] scripts the first stream; [`RogueKeysync::set_watch_feed`]
//! and [`RogueKeysync::set_lookup_feed`] script every later stream and lookup answer.

use axum::body::{Body, Bytes as BodyBytes};
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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio_stream::StreamExt;

use crate::in_process::InProcessServer;

/// The epoch the rogue claims (see `Provenance` in the proto) unless told otherwise.
pub const DEFAULT_EPOCH: u64 = 1;

/// What the rogue serves.
pub struct Script {
    /// What ListKeys serves at first (see [`RogueKeysync::set_keys`]).
    pub keys: Vec<proto::KeyRecord>,
    pub revision: u64,
    /// Raw message payloads for the first watch stream, after which it stays open.
    /// Empty: the first stream is like any other.
    pub first_watch: Vec<Vec<u8>>,
}

/// What the rogue puts on the wire in place of one gRPC message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireFrame {
    /// A well-formed gRPC message: the length prefix, then this payload.
    Message(Vec<u8>),
    /// These bytes as they are, framing or not (a length prefix that promises more
    /// than ever follows, say).
    Raw(Vec<u8>),
    /// A well-formed message of this many filler bytes (at most `u32::MAX`), streamed
    /// in 1 MiB pieces so that the test process never holds it whole.
    Huge(u32),
    /// A split change set that never ends: `parts` valid `KeyChanges` messages at
    /// `revision`, all marked `partial`, each upserting `records_each` keys nobody
    /// holds. A client that keeps what it has received of a split set until its last
    /// part holds more with every part. Generated as it is sent.
    EndlessSplit {
        revision: u64,
        epoch: u64,
        parts: u32,
        records_each: u32,
    },
}

/// How the rogue answers one `LookupKey` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupAnswer {
    /// From the keys it serves, at its revision.
    Honest,
    /// This frame, then an OK status.
    Frame(WireFrame),
    /// No message, this gRPC status (trailers only).
    Status(u32),
    /// Never answers; the caller's deadline ends the call.
    Stall,
}

/// Scripts a watch stream: called when one opens, returns what to send on it (after
/// which the stream stays open and silent).
pub type WatchFeed = Box<dyn FnMut() -> Vec<WireFrame> + Send>;
/// Scripts lookup answers: called with the hash asked about.
pub type LookupFeed = Box<dyn FnMut(&[u8]) -> LookupAnswer + Send>;

/// What the rogue serves now.
struct Served {
    keys: Vec<proto::KeyRecord>,
    revision: u64,
    epoch: u64,
}

struct Shared {
    served: Mutex<Served>,
    /// A heartbeat on every open stream this often, after what was scripted.
    heartbeat: Mutex<Option<std::time::Duration>>,
    first_watch: Mutex<Option<Vec<Vec<u8>>>>,
    watch_feed: Mutex<Option<WatchFeed>>,
    lookup_feed: Mutex<Option<LookupFeed>>,
    list_calls: AtomicUsize,
    watch_calls: AtomicUsize,
    lookup_calls: AtomicUsize,
}

pub struct RogueKeysync {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _server: InProcessServer,
}

/// The provenance of an answer from a server that has just confirmed its data.
pub fn fresh_provenance(epoch: u64) -> proto::Provenance {
    proto::Provenance {
        epoch,
        confirmed_age_ms: 0,
    }
}

/// A valid `KeyChanges` payload (fresh, in the default epoch).
pub fn changes(revision: u64, upserts: Vec<proto::KeyRecord>) -> Vec<u8> {
    changes_in(DEFAULT_EPOCH, revision, upserts)
}

/// A valid `KeyChanges` payload, fresh, in `epoch`.
pub fn changes_in(epoch: u64, revision: u64, upserts: Vec<proto::KeyRecord>) -> Vec<u8> {
    proto::KeyChanges {
        revision,
        upserts,
        removals: Vec::new(),
        resync_required: false,
        partial: false,
        provenance: Some(fresh_provenance(epoch)),
    }
    .encode_to_vec()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RogueKeysync {
    pub fn start(script: Script) -> RogueKeysync {
        let shared = Arc::new(Shared {
            served: Mutex::new(Served {
                keys: script.keys,
                revision: script.revision,
                epoch: DEFAULT_EPOCH,
            }),
            heartbeat: Mutex::new(None),
            first_watch: Mutex::new(Some(script.first_watch)),
            watch_feed: Mutex::new(None),
            lookup_feed: Mutex::new(None),
            list_calls: AtomicUsize::new(0),
            watch_calls: AtomicUsize::new(0),
            lookup_calls: AtomicUsize::new(0),
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
        lock(&self.shared.served).keys = keys;
    }

    /// The revision ListKeys, lookups and default heartbeats report from now on.
    pub fn set_revision(&self, revision: u64) {
        lock(&self.shared.served).revision = revision;
    }

    /// The epoch every answer's provenance claims from now on.
    pub fn set_epoch(&self, epoch: u64) {
        lock(&self.shared.served).epoch = epoch;
    }

    /// Streams opened from now on get a heartbeat (at the served revision) every
    /// `every`, as keysync sends them, after what was scripted.
    pub fn set_heartbeat(&self, every: std::time::Duration) {
        *lock(&self.shared.heartbeat) = Some(every);
    }

    /// Scripts every watch stream opened from now on (the first one keeps
    /// [`Script::first_watch`] if it has not opened yet).
    pub fn set_watch_feed(&self, feed: WatchFeed) {
        *lock(&self.shared.watch_feed) = Some(feed);
    }

    /// Scripts every lookup answer from now on.
    pub fn set_lookup_feed(&self, feed: LookupFeed) {
        *lock(&self.shared.lookup_feed) = Some(feed);
    }

    pub fn list_calls(&self) -> usize {
        self.shared.list_calls.load(Ordering::SeqCst)
    }

    pub fn watch_calls(&self) -> usize {
        self.shared.watch_calls.load(Ordering::SeqCst)
    }

    pub fn lookup_calls(&self) -> usize {
        self.shared.lookup_calls.load(Ordering::SeqCst)
    }
}

/// 1 MiB of filler for [`WireFrame::Huge`], shared by every piece sent.
static FILLER: [u8; 1 << 20] = [0x5a; 1 << 20];

/// The pieces of body `frame` puts on the wire, lazily.
fn wire_pieces(frame: WireFrame) -> Box<dyn Iterator<Item = Bytes> + Send> {
    match frame {
        WireFrame::Message(payload) => Box::new(std::iter::once(message(&payload))),
        WireFrame::Raw(bytes) => Box::new(std::iter::once(Bytes::from(bytes))),
        WireFrame::EndlessSplit {
            revision,
            epoch,
            parts,
            records_each,
        } => Box::new(
            (0..parts).map(move |part| message(&split_part(revision, epoch, part, records_each))),
        ),
        WireFrame::Huge(len) => {
            let mut prefix = vec![0u8];
            prefix.extend_from_slice(&len.to_be_bytes());
            let len = len as usize;
            let whole = len / FILLER.len();
            let rest = len % FILLER.len();
            Box::new(
                std::iter::once(Bytes::from(prefix))
                    .chain(std::iter::repeat_n(Bytes::from_static(&FILLER), whole))
                    .chain((rest > 0).then(|| Bytes::from_static(&FILLER[..rest]))),
            )
        }
    }
}

/// Part `part` of a [`WireFrame::EndlessSplit`], encoded by hand (prost would take
/// seconds for the millions of records a flood holds): field 1 `revision`, field 2 the
/// upserts, field 5 `partial`, field 6 the provenance.
fn split_part(revision: u64, epoch: u64, part: u32, records: u32) -> Vec<u8> {
    fn varint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    let mut out = Vec::with_capacity(16 + records as usize * 72);
    out.push(0x08);
    varint(revision, &mut out);
    let mut random = crate::seeded::Seeded::new(u64::from(part) << 32 | revision);
    for _ in 0..records {
        // KeyRecord: key_hash (32 bytes), key_id and org_id (16 each).
        out.extend_from_slice(&[0x12, 70, 0x0a, 32]);
        out.extend_from_slice(&random.bytes(32));
        out.extend_from_slice(&[0x12, 16]);
        out.extend_from_slice(&random.bytes(16));
        out.extend_from_slice(&[0x1a, 16]);
        out.extend_from_slice(&random.bytes(16));
    }
    out.extend_from_slice(&[0x28, 1]);
    let mut provenance = vec![0x08];
    varint(epoch, &mut provenance);
    out.push(0x32);
    varint(provenance.len() as u64, &mut out);
    out.extend_from_slice(&provenance);
    out
}

/// One gRPC length-prefixed message.
fn message(payload: &[u8]) -> Bytes {
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

fn grpc_status_trailers(status: u32) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(status));
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

/// `frames`, then an OK status.
fn unary(frames: Vec<WireFrame>) -> Response {
    let pieces = frames
        .into_iter()
        .flat_map(wire_pieces)
        .map(|piece| Ok::<_, Infallible>(Frame::data(piece)))
        .chain(std::iter::once(Ok(Frame::trailers(grpc_status_trailers(
            0,
        )))));
    grpc_response(Body::new(http_body_util::StreamBody::new(
        tokio_stream::iter(pieces),
    )))
}

/// `frames`, then nothing: the stream stays open until the client lets go.
fn endless(frames: Vec<WireFrame>) -> Response {
    let pieces = frames
        .into_iter()
        .flat_map(wire_pieces)
        .map(|piece| Ok::<_, Infallible>(Frame::data(piece)));
    let body = tokio_stream::iter(pieces).chain(tokio_stream::pending());
    grpc_response(Body::new(http_body_util::StreamBody::new(body)))
}

/// `frames`, then a heartbeat every `every` until the client lets go.
fn beating(frames: Vec<WireFrame>, shared: Arc<Shared>, every: std::time::Duration) -> Response {
    let (beats, received) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let beat = {
                let served = lock(&shared.served);
                message(&changes_in(served.epoch, served.revision, Vec::new()))
            };
            if beats.send(beat).await.is_err() {
                return;
            }
        }
    });
    let pieces = frames
        .into_iter()
        .flat_map(wire_pieces)
        .map(|piece| Ok::<_, Infallible>(Frame::data(piece)));
    let beats = tokio_stream::wrappers::ReceiverStream::new(received)
        .map(|beat| Ok::<_, Infallible>(Frame::data(beat)));
    let body = tokio_stream::iter(pieces).chain(beats);
    grpc_response(Body::new(http_body_util::StreamBody::new(body)))
}

/// A gRPC error with no message (a "trailers-only" response).
fn status_only(status: u32) -> Response {
    let mut response = grpc_response(Body::empty());
    response
        .headers_mut()
        .insert("grpc-status", HeaderValue::from(status));
    response
}

async fn list_keys(State(shared): State<Arc<Shared>>) -> Response {
    shared.list_calls.fetch_add(1, Ordering::SeqCst);
    let served = lock(&shared.served);
    let mut keys = served.keys.clone();
    // Pages are in hash order, as the filter requires.
    keys.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
    let payload = proto::ListKeysResponse {
        keys,
        more: false,
        revision: served.revision,
        provenance: Some(fresh_provenance(served.epoch)),
    }
    .encode_to_vec();
    drop(served);
    unary(vec![WireFrame::Message(payload)])
}

/// The hash a `LookupKey` request body asks about (empty when it cannot be read).
fn asked_hash(body: &[u8]) -> Vec<u8> {
    body.get(5..)
        .and_then(|payload| proto::LookupKeyRequest::decode(payload).ok())
        .map(|request| request.key_hash)
        .unwrap_or_default()
}

async fn lookup_key(State(shared): State<Arc<Shared>>, body: BodyBytes) -> Response {
    shared.lookup_calls.fetch_add(1, Ordering::SeqCst);
    let asked = asked_hash(&body);
    let answer = match lock(&shared.lookup_feed).as_mut() {
        Some(feed) => feed(&asked),
        None => LookupAnswer::Honest,
    };
    match answer {
        LookupAnswer::Honest => {
            let served = lock(&shared.served);
            let payload = proto::LookupKeyResponse {
                key: served.keys.iter().find(|k| k.key_hash == asked).cloned(),
                revision: served.revision,
                provenance: Some(fresh_provenance(served.epoch)),
            }
            .encode_to_vec();
            drop(served);
            unary(vec![WireFrame::Message(payload)])
        }
        LookupAnswer::Frame(frame) => unary(vec![frame]),
        LookupAnswer::Status(status) => status_only(status),
        LookupAnswer::Stall => endless(Vec::new()),
    }
}

async fn watch_keys(State(shared): State<Arc<Shared>>) -> Response {
    shared.watch_calls.fetch_add(1, Ordering::SeqCst);
    let first = lock(&shared.first_watch)
        .take()
        .filter(|payloads| !payloads.is_empty());
    let frames = match first {
        Some(payloads) => payloads.into_iter().map(WireFrame::Message).collect(),
        None => match lock(&shared.watch_feed).as_mut() {
            Some(feed) => feed(),
            None => {
                // "Nothing new", so the filter can settle.
                let served = lock(&shared.served);
                vec![WireFrame::Message(changes_in(
                    served.epoch,
                    served.revision,
                    Vec::new(),
                ))]
            }
        },
    };
    let heartbeat = *lock(&shared.heartbeat);
    match heartbeat {
        Some(every) => beating(frames, shared, every),
        None => endless(frames),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_encoded_split_part_decodes_as_a_partial_change_set() {
        let payload = split_part(7, 3, 1, 5);
        let part = proto::KeyChanges::decode(payload.as_slice()).expect("a valid message");
        assert_eq!(part.revision, 7);
        assert!(part.partial);
        assert_eq!(part.upserts.len(), 5);
        assert!(part
            .upserts
            .iter()
            .all(|r| r.key_hash.len() == 32 && r.key_id.len() == 16 && r.org_id.len() == 16));
        assert_eq!(part.provenance.map(|p| p.epoch), Some(3));
        assert_ne!(split_part(7, 3, 2, 5), payload, "parts differ");
    }
}
