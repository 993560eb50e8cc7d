//! The one seam between the filter's logic and Envoy: every host call the filter makes
//! goes through [`Host`]. The proxy-wasm adapter (`adapter/`) implements it with
//! `proxy_wasm::hostcalls`; native unit tests use a fake (`fake_host`), so the request
//! flow and the sync service are tested without an Envoy.
//!
//! Every method is a host call, and host calls dominate the filter's cost (about 0.5 to 2
//! microseconds each, see bench/RESULTS.md): the request path counts them.

use crate::shared_data::SharedData;
use std::time::Duration;

/// A host call that failed, with the proxy-wasm status it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host call failed with status {}", self.0)
    }
}

/// What Envoy should do with the request after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on to the next filter (and upstream).
    Continue,
    /// Hold the request: a local reply was sent, or keysync is being asked.
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

pub trait Host: SharedData {
    /// Envoy's wall clock in unix milliseconds; 0 if it cannot be read.
    fn now_unix_ms(&self) -> u64;

    fn now_unix_secs(&self) -> u64 {
        self.now_unix_ms() / 1000
    }

    /// The same clock in microseconds (for request durations); 0 if it cannot be read.
    fn now_unix_us(&self) -> u64;

    /// A random number from the host (WASI `random_get`): different in every VM.
    fn random_u64(&self) -> u64;

    // ---- the current HTTP request (auth filter only) ----

    /// A request header's value as bytes (a non-UTF-8 value must not fail the read).
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Replaces every value of `name`.
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    fn remove_request_header(&self, name: &str) -> Result<(), HostError>;
    /// Replaces every value of `name` in the response headers.
    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError>;
    /// Answers the request locally instead of forwarding it.
    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError>;
    /// Lets a paused request go on.
    fn resume_request(&self) -> Result<(), HostError>;
    /// The downstream address as Envoy reports it (property `source.address`: `ip:port`,
    /// `[ipv6]:port`), once Envoy has applied its own trusted-hops setting; `None` when it
    /// has none. Read only for keys with an allowlist.
    fn source_address(&self) -> Option<Vec<u8>>;
    /// The scopes the request's route requires, as written in its metadata (property
    /// `xds.route_metadata.filter_metadata.keysync.scopes`); `Ok(None)` when the route
    /// names none. Read for every key about to be admitted: the route decides, not the key.
    fn route_scopes(&self) -> Result<Option<Vec<u8>>, HostError>;
    /// The current response's status (`:status`); `None` if absent or not a number.
    fn response_status(&self) -> Option<u32>;
    /// Makes the following calls act on the request of `context_id` (from a worker's
    /// tick, which runs in no request's context).
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError>;

    // ---- gRPC to keysync ----

    /// Sends one unary call to keysync's service on `cluster`; returns its token. The
    /// answer arrives later as a reply for that token.
    fn dispatch_grpc(
        &self,
        cluster: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError>;
    fn cancel_grpc(&self, token: u32);
    /// Opens a server-streaming call and sends its one request; returns its token.
    fn open_grpc_stream(
        &self,
        cluster: &str,
        method: &str,
        message: &[u8],
    ) -> Result<u32, HostError>;
    fn cancel_grpc_stream(&self, token: u32);

    // ---- Envoy stats ----

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32>;
    fn increment_metric(&self, id: u32, delta: u64);
    fn record_metric(&self, id: u32, value: u64);
}

/// A borrowed host is a host: several flows of one VM (and tests) can share one.
impl<T: Host + ?Sized> Host for &T {
    fn now_unix_ms(&self) -> u64 {
        (**self).now_unix_ms()
    }

    fn now_unix_us(&self) -> u64 {
        (**self).now_unix_us()
    }

    fn random_u64(&self) -> u64 {
        (**self).random_u64()
    }

    fn response_status(&self) -> Option<u32> {
        (**self).response_status()
    }

    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        (**self).request_header(name)
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        (**self).set_request_header(name, value)
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        (**self).remove_request_header(name)
    }

    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        (**self).set_response_header(name, value)
    }

    fn send_reply(
        &self,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        (**self).send_reply(status, headers, body)
    }

    fn resume_request(&self) -> Result<(), HostError> {
        (**self).resume_request()
    }

    fn source_address(&self) -> Option<Vec<u8>> {
        (**self).source_address()
    }

    fn route_scopes(&self) -> Result<Option<Vec<u8>>, HostError> {
        (**self).route_scopes()
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        (**self).set_effective_context(context_id)
    }

    fn dispatch_grpc(
        &self,
        cluster: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        (**self).dispatch_grpc(cluster, method, message, timeout)
    }

    fn cancel_grpc(&self, token: u32) {
        (**self).cancel_grpc(token)
    }

    fn open_grpc_stream(
        &self,
        cluster: &str,
        method: &str,
        message: &[u8],
    ) -> Result<u32, HostError> {
        (**self).open_grpc_stream(cluster, method, message)
    }

    fn cancel_grpc_stream(&self, token: u32) {
        (**self).cancel_grpc_stream(token)
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        (**self).define_metric(kind, name)
    }

    fn increment_metric(&self, id: u32, delta: u64) {
        (**self).increment_metric(id, delta)
    }

    fn record_metric(&self, id: u32, value: u64) {
        (**self).record_metric(id, value)
    }
}
