//! A stand-in for Envoy in native unit tests (and the adapter's, with the `fake-host`
//! feature): records every host call the flows make (headers, replies, gRPC calls and
//! streams, stats) and answers from state a test sets up, with a real in-memory shared
//! data ([`FakeSharedData`]). One request at a time is current, as in a proxy-wasm VM:
//! [`FakeHost::new_request`] starts the next, and every [`FakeRequest`] handle acts on it.
// Test support: a failed expectation is a panic.
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use crate::host::fake_log::capture_logs;
use crate::host::fake_shared_data::FakeSharedData;
use crate::host::{Entry, Host, HostError, HttpRequest, MetricKind, SharedData, WriteError};
use std::cell::{Cell, RefCell};
use std::ops::Deref;
use std::rc::Rc;
use std::time::Duration;

/// A local reply the filter sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A gRPC call or stream the filter started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub method: String,
    pub message: Vec<u8>,
    pub timeout: Option<Duration>,
}

impl Call {
    pub fn decode<M: prost::Message + Default>(&self) -> M {
        M::decode(self.message.as_slice()).expect("the filter sent a valid message")
    }
}

/// The fake Envoy: cheap to clone, every clone the same Envoy (as every flow of a VM
/// shares one host). Tests read and set its state through `Deref` ([`FakeEnvoy`]).
#[derive(Clone, Default)]
pub struct FakeHost(Rc<FakeEnvoy>);

/// What a fake Envoy holds and records.
pub struct FakeEnvoy {
    pub shared: FakeSharedData,
    pub now_ms: Cell<u64>,
    /// The current request's headers, in order; names in lower case.
    pub request_headers: RefCell<Vec<(String, Vec<u8>)>>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    pub replies: RefCell<Vec<Reply>>,
    pub resumed: Cell<u32>,
    /// The request context a worker's tick last switched to.
    pub effective_context: Cell<Option<u32>>,
    pub calls: RefCell<Vec<Call>>,
    pub streams: RefCell<Vec<Call>>,
    pub cancelled: RefCell<Vec<u32>>,
    /// Makes every header write fail, as a host refusing it would.
    pub fail_header_writes: Cell<bool>,
    /// Makes dispatching a call or opening a stream fail.
    pub fail_dispatch: Cell<bool>,
    next_token: Cell<u32>,
    pub metrics: RefCell<Vec<(String, MetricKind, u64)>>,
    /// Envoy's `source.address` for the requests.
    pub source_address: RefCell<Option<String>>,
    /// The current route's `keysync.scopes` metadata; `Err` makes the read fail.
    pub route_scopes: RefCell<Result<Option<String>, HostError>>,
    /// The current route's name (`xds.route_name`); `Err` makes the read fail.
    pub route_name: RefCell<Result<Option<String>, HostError>>,
    /// Property reads made, by path: what the request path pays for policies.
    pub property_reads: RefCell<Vec<&'static str>>,
    /// Host calls made, shared data included: what the request path pays for.
    pub host_calls: Cell<usize>,
    /// The current response's `:status`.
    pub response_status: Cell<Option<u32>>,
}

impl Default for FakeEnvoy {
    fn default() -> Self {
        FakeEnvoy {
            shared: FakeSharedData::default(),
            now_ms: Cell::default(),
            request_headers: RefCell::default(),
            response_headers: RefCell::default(),
            replies: RefCell::default(),
            resumed: Cell::default(),
            effective_context: Cell::default(),
            calls: RefCell::default(),
            streams: RefCell::default(),
            cancelled: RefCell::default(),
            fail_header_writes: Cell::default(),
            fail_dispatch: Cell::default(),
            next_token: Cell::default(),
            metrics: RefCell::default(),
            host_calls: Cell::default(),
            source_address: RefCell::new(Some("203.0.113.10:40000".to_string())),
            route_scopes: RefCell::new(Ok(None)),
            route_name: RefCell::new(Ok(None)),
            property_reads: RefCell::default(),
            response_status: Cell::default(),
        }
    }
}

impl Deref for FakeHost {
    type Target = FakeEnvoy;

    fn deref(&self) -> &FakeEnvoy {
        &self.0
    }
}

impl FakeHost {
    pub fn at(now_ms: u64) -> Self {
        capture_logs();
        let host = FakeHost::default();
        host.now_ms.set(now_ms);
        host
    }

    /// A handle on the current request, as the adapter gives one to each request; its
    /// `context_id` is what a worker's tick switches to.
    pub fn request(&self, context_id: u32) -> FakeRequest {
        FakeRequest {
            envoy: Rc::clone(&self.0),
            context_id,
        }
    }
}

impl FakeEnvoy {
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now_ms.set(self.now_ms.get() + ms);
    }

    /// Starts a new request: its headers, and nothing recorded of the last one.
    pub fn new_request(&self, headers: &[(&str, &str)]) {
        *self.request_headers.borrow_mut() = headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        self.response_headers.borrow_mut().clear();
        self.replies.borrow_mut().clear();
        self.resumed.set(0);
        self.host_calls.set(0);
        self.property_reads.borrow_mut().clear();
        self.response_status.set(None);
    }

    /// The upstream's response headers arrive `after` the request started, with
    /// `status`; nothing recorded of the request path.
    pub fn respond(&self, status: u32, after: Duration) {
        self.advance(after);
        self.response_status.set(Some(status));
        self.host_calls.set(0);
        self.property_reads.borrow_mut().clear();
    }

    /// Every value of a request header as it stands now (after the filter's writes).
    pub fn request_values(&self, name: &str) -> Vec<String> {
        self.request_headers
            .borrow()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub fn response_value(&self, name: &str) -> Option<String> {
        self.response_headers
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// The one local reply of this request, if any.
    pub fn reply(&self) -> Option<Reply> {
        let replies = self.replies.borrow();
        assert!(replies.len() <= 1, "more than one reply: {replies:?}");
        replies.first().cloned()
    }

    pub fn last_call(&self) -> Option<Call> {
        self.calls.borrow().last().cloned()
    }

    pub fn last_stream(&self) -> Option<Call> {
        self.streams.borrow().last().cloned()
    }

    /// The current value of a stat, by name.
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
    }

    fn call(&self) {
        self.host_calls.set(self.host_calls.get() + 1);
    }

    fn header_write(&self) -> Result<(), HostError> {
        self.call();
        if self.fail_header_writes.get() {
            Err(HostError(2))
        } else {
            Ok(())
        }
    }

    fn start(&self, into: &RefCell<Vec<Call>>, call: Call) -> Result<u32, HostError> {
        self.call();
        if self.fail_dispatch.get() {
            return Err(HostError(1));
        }
        let token = call.token;
        into.borrow_mut().push(call);
        Ok(token)
    }

    fn token(&self) -> u32 {
        self.next_token.set(self.next_token.get() + 1);
        self.next_token.get()
    }
}

impl SharedData for FakeHost {
    fn get(&self, key: &str) -> Entry {
        self.call();
        self.shared.get(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
        self.call();
        self.shared.set(key, value, cas)
    }
}

impl Host for FakeHost {
    type Request = FakeRequest;

    fn now_unix_ms(&self) -> u64 {
        self.call();
        self.now_ms.get()
    }

    fn now_unix_us(&self) -> u64 {
        self.call();
        self.now_ms.get() * 1000
    }

    fn random_u64(&self) -> u64 {
        self.token().into()
    }

    fn dispatch_grpc(
        &self,
        cluster: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        let call = Call {
            token: self.token(),
            cluster: cluster.to_string(),
            method: method.to_string(),
            message: message.to_vec(),
            timeout: Some(timeout),
        };
        self.start(&self.calls, call)
    }

    fn cancel_grpc(&self, token: u32) {
        self.call();
        self.cancelled.borrow_mut().push(token);
    }

    fn open_grpc_stream(
        &self,
        cluster: &str,
        method: &str,
        message: &[u8],
    ) -> Result<u32, HostError> {
        let call = Call {
            token: self.token(),
            cluster: cluster.to_string(),
            method: method.to_string(),
            message: message.to_vec(),
            timeout: None,
        };
        self.start(&self.streams, call)
    }

    fn cancel_grpc_stream(&self, token: u32) {
        self.call();
        self.cancelled.borrow_mut().push(token);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut metrics = self.metrics.borrow_mut();
        if let Some(i) = metrics.iter().position(|(n, _, _)| n == name) {
            return u32::try_from(i).ok();
        }
        metrics.push((name.to_string(), kind, 0));
        u32::try_from(metrics.len() - 1).ok()
    }

    fn increment_metric(&self, id: u32, delta: u64) {
        if let Some((_, _, value)) = self.metrics.borrow_mut().get_mut(id as usize) {
            *value += delta;
        }
    }

    fn record_metric(&self, id: u32, value: u64) {
        if let Some((_, _, current)) = self.metrics.borrow_mut().get_mut(id as usize) {
            *current = value;
        }
    }
}

/// A request on the fake Envoy: acts on its current request.
#[derive(Clone)]
pub struct FakeRequest {
    envoy: Rc<FakeEnvoy>,
    /// Envoy's id of the request's context.
    pub context_id: u32,
}

impl HttpRequest for FakeRequest {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.envoy.call();
        self.envoy
            .request_headers
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn request_header_joined(&self, name: &str, separator: &[u8]) -> Option<Vec<u8>> {
        self.envoy.call();
        let headers = self.envoy.request_headers.borrow();
        let values: Vec<&[u8]> = headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect();
        (!values.is_empty()).then(|| values.join(separator))
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.envoy.header_write()?;
        let mut headers = self.envoy.request_headers.borrow_mut();
        headers.retain(|(n, _)| n != name);
        headers.push((name.to_string(), value.as_bytes().to_vec()));
        Ok(())
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        self.envoy.header_write()?;
        self.envoy
            .request_headers
            .borrow_mut()
            .retain(|(n, _)| n != name);
        Ok(())
    }

    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.envoy.header_write()?;
        let mut headers = self.envoy.response_headers.borrow_mut();
        headers.retain(|(n, _)| n != name);
        headers.push((name.to_string(), value.to_string()));
        Ok(())
    }

    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        self.envoy.call();
        self.envoy.replies.borrow_mut().push(Reply {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
        });
        Ok(())
    }

    fn resume(&self) -> Result<(), HostError> {
        self.envoy.call();
        self.envoy.resumed.set(self.envoy.resumed.get() + 1);
        Ok(())
    }

    fn source_address(&self) -> Option<Vec<u8>> {
        self.envoy.call();
        self.envoy
            .property_reads
            .borrow_mut()
            .push("source.address");
        self.envoy
            .source_address
            .borrow()
            .as_ref()
            .map(|address| address.as_bytes().to_vec())
    }

    fn route_scopes(&self) -> Result<Option<Vec<u8>>, HostError> {
        self.envoy.call();
        self.envoy
            .property_reads
            .borrow_mut()
            .push("xds.route_metadata.filter_metadata.keysync.scopes");
        self.envoy
            .route_scopes
            .borrow()
            .clone()
            .map(|scopes| scopes.map(String::into_bytes))
    }

    fn route_name(&self) -> Result<Option<Vec<u8>>, HostError> {
        self.envoy.call();
        self.envoy
            .property_reads
            .borrow_mut()
            .push("xds.route_name");
        self.envoy
            .route_name
            .borrow()
            .clone()
            .map(|name| name.map(String::into_bytes))
    }

    fn response_status(&self) -> Option<u32> {
        self.envoy.call();
        self.envoy.response_status.get()
    }

    fn enter(&self) -> Result<(), HostError> {
        self.envoy.call();
        self.envoy.effective_context.set(Some(self.context_id));
        Ok(())
    }
}
