//! The core's host seam made of proxy-wasm host calls: [`ProxyWasmHost`] for the VM
//! (shared data, clocks, gRPC, stats), [`ProxyWasmRequest`] for a request (its headers,
//! replies, properties), and the readers of what Envoy hands the filter when a gRPC
//! answer or stream message arrives (decided by `grpc_reply`).

use crate::adapter::grpc_reply;
use keysync_filter_core::{
    Entry, Host, HostError, HttpRequest, MetricKind, Reply, SharedData, WriteError,
};
use keysync_proto::v1::SERVICE;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

/// Envoy, as seen from inside its wasm VM. Zero-sized: the host is the VM's context.
#[derive(Clone, Copy, Default)]
pub struct ProxyWasmHost;

/// One HTTP request of the VM. Host calls act on the current context, which during a
/// request's own callbacks is the request's: the handle only names it, for a worker's
/// tick to switch to ([`HttpRequest::enter`]).
#[derive(Clone, Copy, Debug)]
pub struct ProxyWasmRequest {
    pub context_id: u32,
}

/// The environment variable holding the token keysync's gRPC port may require; Envoy
/// passes it to the VM (`vm_config.environment_variables.host_env_keys`).
const TOKEN_VARIABLE: &str = "KEYSYNC_GRPC_TOKEN";

/// Every call to keysync carries `authorization: Bearer <token>` as gRPC metadata when
/// the token is set. Read once per VM: the environment does not change.
fn call_metadata() -> Vec<(&'static str, &'static [u8])> {
    static HEADER: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    let header = HEADER.get_or_init(|| {
        std::env::var(TOKEN_VARIABLE)
            .ok()
            .filter(|token| !token.is_empty())
            .map(|token| format!("Bearer {token}").into_bytes())
    });
    match header {
        Some(value) => vec![("authorization", value.as_slice())],
        None => Vec::new(),
    }
}

/// Route metadata `filter_metadata: { keysync: { scopes: "a:read b:write" } }`.
const ROUTE_SCOPES_PROPERTY: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    "keysync",
    "scopes",
];

fn status(status: Status) -> HostError {
    HostError(status as u32)
}

impl SharedData for ProxyWasmHost {
    fn get(&self, key: &str) -> Entry {
        // The SDK's `Context::get_shared_data` unwraps; the host call returns a Result.
        match hostcalls::get_shared_data(key) {
            Ok((value, cas)) => Entry {
                value,
                cas: cas.unwrap_or(0),
            },
            Err(_) => Entry {
                value: None,
                cas: 0,
            },
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
        let cas = (cas != 0).then_some(cas);
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|e| match e {
            Status::CasMismatch => WriteError::CasMismatch,
            other => WriteError::Host(other as u32),
        })
    }
}

impl Host for ProxyWasmHost {
    type Request = ProxyWasmRequest;

    fn now_unix_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn now_unix_us(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    fn random_u64(&self) -> u64 {
        // std seeds its hashers from WASI `random_get`, which Envoy implements.
        std::collections::hash_map::RandomState::new().hash_one(0u8)
    }

    fn dispatch_grpc(
        &self,
        cluster: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_grpc_call(
            cluster,
            SERVICE,
            method,
            call_metadata(),
            Some(message),
            timeout,
        )
        .map_err(status)
    }

    fn cancel_grpc(&self, token: u32) {
        let _ = hostcalls::cancel_grpc_call(token);
    }

    fn open_grpc_stream(
        &self,
        cluster: &str,
        method: &str,
        message: &[u8],
    ) -> Result<u32, HostError> {
        let token = hostcalls::open_grpc_stream(cluster, SERVICE, method, call_metadata())
            .map_err(status)?;
        if let Err(e) = hostcalls::send_grpc_stream_message(token, Some(message), true) {
            let _ = hostcalls::cancel_grpc_stream(token);
            return Err(status(e));
        }
        Ok(token)
    }

    fn cancel_grpc_stream(&self, token: u32) {
        let _ = hostcalls::cancel_grpc_stream(token);
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let kind = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(kind, name).ok()
    }

    fn increment_metric(&self, id: u32, delta: u64) {
        // A failed stat update is not worth failing anything for.
        let _ = hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX));
    }

    fn record_metric(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }
}

impl HttpRequest for ProxyWasmRequest {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        // The bytes form: a non-UTF-8 value must not reach the SDK's String conversion.
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    fn request_header_joined(&self, name: &str, separator: &[u8]) -> Option<Vec<u8>> {
        // Envoy's single-header read gives the first line only; the whole map (one host
        // call, every header copied) has them all. Read only for cookie sources.
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).ok()?;
        let values: Vec<&[u8]> = headers
            .iter()
            .filter(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
            .collect();
        (!values.is_empty()).then(|| values.join(separator))
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).map_err(status)
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).map_err(status)
    }

    fn set_response_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value)).map_err(status)
    }

    fn send_reply(
        &self,
        code: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        hostcalls::send_http_response(code, headers.to_vec(), Some(body)).map_err(status)
    }

    fn resume(&self) -> Result<(), HostError> {
        hostcalls::resume_http_request().map_err(status)
    }

    fn source_address(&self) -> Option<Vec<u8>> {
        // A failed read is no address: the allowlist then admits nobody.
        hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()
    }

    fn route_scopes(&self) -> Result<Option<Vec<u8>>, HostError> {
        // Envoy hands a string value over as its raw bytes; anything else (a list, a
        // number) arrives serialized or fails, and is then refused as malformed.
        hostcalls::get_property(ROUTE_SCOPES_PROPERTY.to_vec()).map_err(status)
    }

    fn route_name(&self) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_property(vec!["xds", "route_name"]).map_err(status)
    }

    fn response_status(&self) -> Option<u32> {
        let value = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status")
            .ok()
            .flatten()?;
        std::str::from_utf8(&value).ok()?.parse().ok()
    }

    fn enter(&self) -> Result<(), HostError> {
        hostcalls::set_effective_context(self.context_id).map_err(status)
    }
}

/// What a completed gRPC call delivered (`on_grpc_call_response`).
pub fn call_reply(grpc_status: u32, size: usize) -> Reply {
    grpc_reply::call_reply(
        grpc_status,
        size,
        || {
            hostcalls::get_grpc_status()
                .ok()
                .and_then(|(_, message)| message)
        },
        read_grpc_buffer,
    )
}

/// One message received on a stream (`on_grpc_stream_message`).
pub fn stream_message(size: usize) -> Reply {
    grpc_reply::received(size, read_grpc_buffer)
}

fn read_grpc_buffer(size: usize) -> Result<Option<Vec<u8>>, Status> {
    hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
}
