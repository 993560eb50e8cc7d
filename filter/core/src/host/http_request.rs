//! What one HTTP request offers the request flow: its headers, a local reply, the
//! properties Envoy keeps for it (its address, its route's scopes and name), its
//! response's status, and resuming it once paused.
//! Implemented by a handle the adapter gives each request (`Host::Request`); the auth
//! worker keeps the handles of requests it parked, and acts on them from its tick.

use crate::host::HostError;

pub trait HttpRequest {
    /// A request header's value as bytes (a non-UTF-8 value must not fail the read).
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Every value of a request header sent on several lines (`Cookie` from an HTTP/1.1
    /// client), joined with `separator`; `None` when absent. `request_header` sees only
    /// the first line.
    fn request_header_joined(&self, name: &str, separator: &[u8]) -> Option<Vec<u8>>;
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
    fn resume(&self) -> Result<(), HostError>;
    /// The downstream address as Envoy reports it (property `source.address`: `ip:port`,
    /// `[ipv6]:port`), once Envoy has applied its own trusted-hops setting; `None` when it
    /// has none. Read only for keys with an allowlist.
    fn source_address(&self) -> Option<Vec<u8>>;
    /// The scopes the request's route requires, as written in its metadata (property
    /// `xds.route_metadata.filter_metadata.keysync.scopes`); `Ok(None)` when the route
    /// names none. Read for every key about to be admitted: the route decides, not the key.
    fn route_scopes(&self) -> Result<Option<Vec<u8>>, HostError>;
    /// The name of the request's route (property `xds.route_name`); `Ok(None)` when it
    /// has none. Read for usage metering under `usage_endpoints: "route_name"` only,
    /// for each request of a recognized key (a header is cheaper through wasm; a native
    /// host may read it for next to nothing).
    fn route_name(&self) -> Result<Option<Vec<u8>>, HostError>;
    /// The current response's status (`:status`); `None` if absent or not a number.
    fn response_status(&self) -> Option<u32>;
    /// Makes the following calls act on this request when they are made outside its own
    /// callbacks (a worker's tick deciding a parked request). Proxy-wasm needs it (calls
    /// act on the current context); a host whose calls name their request need not.
    fn enter(&self) -> Result<(), HostError>;
}
