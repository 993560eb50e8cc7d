//! The seam between the filter's logic and Envoy, in two parts, so that more than one
//! kind of host can run the same logic:
//!
//! - [`Host`]: what the VM or the process offers everyone, whatever the request: the
//!   shared store ([`SharedData`]), clocks, randomness, gRPC calls and streams to
//!   keysync, stats. The auth workers and the sync service hold one.
//! - [`HttpRequest`]: what one HTTP request offers: its headers, a local reply, its
//!   properties, its response's status, and resuming it. Each request holds one; a
//!   worker holds on to those it parked.
//!
//! The proxy-wasm adapter (`keysync-filter`) implements both with host calls (there, a
//! request handle only names its context: calls act on the current one); a native
//! adapter implements them over its own ABI, the store in process memory. Native unit
//! tests use a fake (`fake_host`).
//!
//! Every method is a host call, and host calls dominate the filter's cost (about 0.5 to 2
//! microseconds each through wasm, see bench/RESULTS.md): the request path counts them.

#[cfg(any(test, feature = "fake-host"))]
pub mod fake_host;
#[cfg(any(test, feature = "fake-host"))]
pub mod fake_log;
#[cfg(any(test, feature = "fake-host"))]
pub mod fake_shared_data;
mod http_request;
mod shared_data;

pub use http_request::HttpRequest;
pub use shared_data::{Entry, SharedData, WriteError};

use std::time::Duration;

/// A host call that failed, with the status it returned.
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

/// What the VM or process offers: shared data (or what stands for it), clocks,
/// randomness, gRPC to keysync, stats.
pub trait Host: SharedData {
    /// The handle of one HTTP request on this host.
    type Request: HttpRequest + Clone;

    /// Envoy's wall clock in unix milliseconds; 0 if it cannot be read.
    fn now_unix_ms(&self) -> u64;

    fn now_unix_secs(&self) -> u64 {
        self.now_unix_ms() / 1000
    }

    /// The same clock in microseconds (for request durations); 0 if it cannot be read.
    fn now_unix_us(&self) -> u64;

    /// A random number from the host: different in every VM or process.
    fn random_u64(&self) -> u64;

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
    type Request = T::Request;

    fn now_unix_ms(&self) -> u64 {
        (**self).now_unix_ms()
    }

    fn now_unix_us(&self) -> u64 {
        (**self).now_unix_us()
    }

    fn random_u64(&self) -> u64 {
        (**self).random_u64()
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
