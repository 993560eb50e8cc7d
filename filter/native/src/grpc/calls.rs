//! The gRPC calls in flight on this thread, by the core's token: a worker's lookups (started
//! from a request's hook, answered in that request's hooks) and the sync service's calls and
//! `WatchKeys` stream (started on the main thread, answered in a configuration's hooks).
//! Each call is an HTTP stream of Envoy's (`abi::start_stream`); what arrives on it is read
//! by `response` and handed back as what the core expects: one reply for a unary call, each
//! message and then the close for a stream.
//!
//! Deliveries are returned, not made here, so that the caller makes them with nothing of
//! this registry borrowed: the core may start another call while it handles one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use keysync_filter_core::{ApiError, HostError, Reply};
use keysync_proto::v1::SERVICE;

use crate::abi::{self, Origin, StartError};
use crate::grpc::framing::frame;
use crate::grpc::response::{Event, GrpcResponse};

/// What the core must be told.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A unary call's answer (`on_response`, `on_lookup_reply`).
    Reply { token: u32, reply: Reply },
    /// A message on a stream (`on_stream_message`).
    StreamMessage { token: u32, reply: Reply },
    /// A stream's end (`on_stream_close`).
    StreamClosed { token: u32, status: u32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    Unary,
    Streaming,
}

struct Call {
    token: u32,
    kind: CallKind,
    response: GrpcResponse,
    /// A unary call's message, until its status comes.
    message: Option<Reply>,
}

type Key = (Origin, u64);

#[derive(Default)]
pub struct Calls {
    calls: HashMap<Key, Call>,
    tokens: HashMap<u32, Key>,
    last_token: u32,
    /// Set while a call is being started: Envoy may reset it before saying its id.
    starting: bool,
    /// Streams that ended while a call was being started.
    ended_early: Vec<Key>,
}

thread_local! {
    static CALLS: RefCell<Calls> = RefCell::new(Calls::default());
}

/// The environment variable holding the token keysync's gRPC port may require (as for the
/// wasm filter, which Envoy passes it to): the module reads Envoy's own environment.
const TOKEN_VARIABLE: &str = "KEYSYNC_GRPC_TOKEN";

fn bearer() -> Option<&'static [u8]> {
    static HEADER: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    HEADER
        .get_or_init(|| {
            std::env::var(TOKEN_VARIABLE)
                .ok()
                .filter(|token| !token.is_empty())
                .map(|token| format!("Bearer {token}").into_bytes())
        })
        .as_deref()
}

/// Starts a call of `method` on keysync's service in `cluster` from this thread's current
/// origin (see `abi::outbound`); returns its token.
pub fn start(
    cluster: &str,
    method: &str,
    message: &[u8],
    kind: CallKind,
    timeout: Option<Duration>,
) -> Result<u32, HostError> {
    let path = format!("/{SERVICE}/{method}");
    let timeout_ms = timeout.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
    let grpc_timeout = format!("{timeout_ms}m");
    let mut headers: Vec<(&str, &[u8])> = vec![
        (":method", b"POST"),
        (":path", path.as_bytes()),
        ("host", cluster.as_bytes()),
        ("content-type", b"application/grpc"),
        ("te", b"trailers"),
    ];
    if timeout.is_some() {
        headers.push(("grpc-timeout", grpc_timeout.as_bytes()));
    }
    if let Some(bearer) = bearer() {
        headers.push(("authorization", bearer));
    }
    let body = frame(message);
    CALLS.with(|calls| calls.borrow_mut().starting = true);
    let started = abi::start_stream(cluster, &headers, &body, true, timeout_ms);
    CALLS.with(|calls| calls.borrow_mut().register(started, kind))
}

/// Abandons the call `token`: nothing more is delivered for it.
pub fn cancel(token: u32) {
    let key = CALLS.with(|calls| calls.borrow_mut().forget(token));
    if let Some((origin, id)) = key {
        abi::reset_stream(origin, id);
    }
}

/// Envoy's response headers for stream `id` of `origin`.
pub fn on_headers(origin: Origin, id: u64, headers: &[(&[u8], &[u8])], end: bool) -> Vec<Delivery> {
    with_call((origin, id), |response| response.headers(headers, end))
}

pub fn on_data(origin: Origin, id: u64, chunks: &[&[u8]], end: bool) -> Vec<Delivery> {
    with_call((origin, id), |response| response.data(chunks, end))
}

pub fn on_trailers(origin: Origin, id: u64, trailers: &[(&[u8], &[u8])]) -> Vec<Delivery> {
    with_call((origin, id), |response| response.trailers(trailers))
}

pub fn on_complete(origin: Origin, id: u64) -> Vec<Delivery> {
    with_call((origin, id), GrpcResponse::complete)
}

pub fn on_reset(origin: Origin, id: u64) -> Vec<Delivery> {
    with_call((origin, id), GrpcResponse::reset)
}

/// Every call of `origin` fails at once: its configuration is being destroyed, and Envoy
/// resets its streams without a word to the module.
pub fn fail_origin(origin: Origin) -> Vec<Delivery> {
    let keys: Vec<Key> = CALLS.with(|calls| {
        calls
            .borrow()
            .calls
            .keys()
            .filter(|(o, _)| *o == origin)
            .copied()
            .collect()
    });
    keys.into_iter()
        .flat_map(|key| with_call(key, GrpcResponse::reset))
        .collect()
}

fn with_call(key: Key, read: impl FnOnce(&mut GrpcResponse) -> Vec<Event>) -> Vec<Delivery> {
    let (deliveries, reset) = CALLS.with(|calls| calls.borrow_mut().feed(key, read));
    // After the registry is released: Envoy may call the module back from the reset.
    if let Some((origin, id)) = reset {
        abi::reset_stream(origin, id);
    }
    deliveries
}

impl Calls {
    fn register(
        &mut self,
        started: Result<(Origin, u64), StartError>,
        kind: CallKind,
    ) -> Result<u32, HostError> {
        self.starting = false;
        let ended_early = std::mem::take(&mut self.ended_early);
        let key = started.map_err(|e| match e {
            StartError::NoOrigin => HostError(0),
            StartError::Refused(refused) => HostError(refused.code()),
        })?;
        if ended_early.contains(&key) {
            // Reset inside `start_stream`: as good as not started.
            return Err(HostError(abi::CalloutInitError::CannotCreateRequest.code()));
        }
        let token = self.next_token();
        self.calls.insert(
            key,
            Call {
                token,
                kind,
                response: GrpcResponse::default(),
                message: None,
            },
        );
        self.tokens.insert(token, key);
        Ok(token)
    }

    fn next_token(&mut self) -> u32 {
        loop {
            self.last_token = self.last_token.wrapping_add(1);
            if self.last_token != 0 && !self.tokens.contains_key(&self.last_token) {
                return self.last_token;
            }
        }
    }

    fn forget(&mut self, token: u32) -> Option<Key> {
        let key = self.tokens.remove(&token)?;
        self.calls.remove(&key);
        Some(key)
    }

    /// Reads an event of call `key`; returns what to deliver, and the stream to reset when
    /// the call is over for the core but not on Envoy's side (an unreadable answer).
    fn feed(
        &mut self,
        key: Key,
        read: impl FnOnce(&mut GrpcResponse) -> Vec<Event>,
    ) -> (Vec<Delivery>, Option<Key>) {
        let Some(call) = self.calls.get_mut(&key) else {
            if self.starting {
                self.ended_early.push(key);
            }
            return (Vec::new(), None);
        };
        let token = call.token;
        let mut deliveries = Vec::new();
        let mut over = false;
        for event in read(&mut call.response) {
            match (call.kind, event) {
                (CallKind::Streaming, Event::Message(reply)) => {
                    deliveries.push(Delivery::StreamMessage { token, reply });
                }
                (CallKind::Streaming, Event::Closed { status, .. }) => {
                    deliveries.push(Delivery::StreamClosed { token, status });
                    over = true;
                }
                (CallKind::Unary, Event::Message(reply)) => {
                    // The first message (or error) is the answer; an error ends the call.
                    if call.message.is_none() {
                        over = reply.is_err();
                        if over {
                            deliveries.push(Delivery::Reply { token, reply });
                        } else {
                            call.message = Some(reply);
                        }
                    }
                }
                (CallKind::Unary, Event::Closed { status, message }) => {
                    let reply = match status {
                        0 => call.message.take().unwrap_or(Ok(Vec::new())),
                        _ => Err(ApiError::Grpc(status, message)),
                    };
                    deliveries.push(Delivery::Reply { token, reply });
                    over = true;
                }
            }
            if over {
                break;
            }
        }
        let mut reset = None;
        if over {
            if let Some(key) = self.forget(token) {
                reset = call_still_open(&deliveries).then_some(key);
            }
        }
        (deliveries, reset)
    }
}

/// A unary call answered with a decoding error has not ended on Envoy's side.
fn call_still_open(deliveries: &[Delivery]) -> bool {
    matches!(
        deliveries.last(),
        Some(Delivery::Reply {
            reply: Err(ApiError::Decode(_)),
            ..
        }) | Some(Delivery::StreamMessage { reply: Err(_), .. })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls_with(kind: CallKind) -> (Calls, u32, Key) {
        let mut calls = Calls::default();
        let key = (Origin::Config(1), 7);
        calls.starting = true;
        let token = calls.register(Ok(key), kind).unwrap();
        (calls, token, key)
    }

    fn ok_headers(response: &mut GrpcResponse) -> Vec<Event> {
        response.headers(&[(b":status", b"200")], false)
    }

    #[test]
    fn a_unary_call_delivers_its_message_once_its_status_is_ok() {
        let (mut calls, token, key) = calls_with(CallKind::Unary);
        assert!(calls.feed(key, ok_headers).0.is_empty());
        assert!(calls
            .feed(key, |r| r.data(&[&frame(b"page")], false))
            .0
            .is_empty());
        let delivered = calls.feed(key, |r| r.trailers(&[(b"grpc-status", b"0")])).0;
        assert_eq!(
            delivered,
            vec![Delivery::Reply {
                token,
                reply: Ok(b"page".to_vec())
            }]
        );
        assert!(
            calls.feed(key, GrpcResponse::complete).0.is_empty(),
            "forgotten"
        );
        assert!(calls.tokens.is_empty());
    }

    #[test]
    fn a_unary_call_that_fails_delivers_its_status() {
        let (mut calls, token, key) = calls_with(CallKind::Unary);
        let (delivered, reset) = calls.feed(key, |r| {
            r.headers(&[(b":status", b"200"), (b"grpc-status", b"5")], true)
        });
        assert_eq!(reset, None, "over on both sides");
        assert_eq!(
            delivered,
            vec![Delivery::Reply {
                token,
                reply: Err(ApiError::Grpc(5, String::new()))
            }]
        );
        let (mut calls, token, key) = calls_with(CallKind::Unary);
        calls.feed(key, ok_headers);
        assert_eq!(
            calls.feed(key, GrpcResponse::reset).0,
            vec![Delivery::Reply {
                token,
                reply: Err(ApiError::Grpc(14, "the stream to keysync was reset".into()))
            }]
        );
    }

    #[test]
    fn a_stream_delivers_each_message_then_its_close() {
        let (mut calls, token, key) = calls_with(CallKind::Streaming);
        calls.feed(key, ok_headers);
        let body = [frame(b"a"), frame(b"b")].concat();
        assert_eq!(
            calls.feed(key, |r| r.data(&[&body], false)).0,
            vec![
                Delivery::StreamMessage {
                    token,
                    reply: Ok(b"a".to_vec())
                },
                Delivery::StreamMessage {
                    token,
                    reply: Ok(b"b".to_vec())
                },
            ]
        );
        assert_eq!(
            calls
                .feed(key, |r| r.trailers(&[(b"grpc-status", b"14")]))
                .0,
            vec![Delivery::StreamClosed { token, status: 14 }]
        );
    }

    #[test]
    fn a_stream_reset_while_it_starts_is_not_started() {
        let mut calls = Calls::default();
        let key = (Origin::Stream(3), 1);
        calls.starting = true;
        assert!(calls.feed(key, GrpcResponse::reset).0.is_empty());
        assert!(calls.register(Ok(key), CallKind::Unary).is_err());
        assert!(calls.calls.is_empty());
        // An event for a call nobody started, outside a start, is dropped.
        assert!(calls.feed(key, GrpcResponse::reset).0.is_empty());
        assert!(calls.ended_early.is_empty());
    }
}
