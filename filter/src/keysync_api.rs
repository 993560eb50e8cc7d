//! Calls to keysync's gRPC API, dispatched by Envoy to the keysync cluster.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, Status};
use std::time::Duration;

pub const LIST_KEYS: &str = "ListKeys";
pub const LOOKUP_KEY: &str = "LookupKey";
pub const WATCH_KEYS: &str = "WatchKeys";

#[derive(Debug)]
pub enum ApiError {
    Dispatch(Status),
    /// A non-OK gRPC status from keysync or from Envoy (timeouts, no healthy host).
    Grpc(u32, String),
    Decode(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Dispatch(status) => write!(f, "cannot dispatch the gRPC call ({status:?})"),
            ApiError::Grpc(code, message) if message.is_empty() => {
                write!(f, "gRPC status {code}")
            }
            ApiError::Grpc(code, message) => write!(f, "gRPC status {code}: {message}"),
            ApiError::Decode(e) => write!(f, "cannot decode the response: {e}"),
        }
    }
}

pub fn dispatch(
    cluster: &str,
    method: &str,
    message: &impl prost::Message,
    timeout: Duration,
) -> Result<u32, ApiError> {
    hostcalls::dispatch_grpc_call(
        cluster,
        keysync_proto::v1::SERVICE,
        method,
        Vec::new(),
        Some(&message.encode_to_vec()),
        timeout,
    )
    .map_err(ApiError::Dispatch)
}

/// Reads the response of a completed call (`on_grpc_call_response`).
pub fn response<M: prost::Message + Default>(status: u32, size: usize) -> Result<M, ApiError> {
    if status != 0 {
        let message = hostcalls::get_grpc_status()
            .ok()
            .and_then(|(_, message)| message)
            .unwrap_or_default();
        return Err(ApiError::Grpc(status, message));
    }
    let body = hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
        .map_err(|e| ApiError::Decode(format!("{e:?}")))?
        .unwrap_or_default();
    M::decode(body.as_slice()).map_err(|e| ApiError::Decode(e.to_string()))
}

/// Opens a server-streaming call and sends its one request.
pub fn open_stream(
    cluster: &str,
    method: &str,
    message: &impl prost::Message,
) -> Result<u32, ApiError> {
    let token =
        hostcalls::open_grpc_stream(cluster, keysync_proto::v1::SERVICE, method, Vec::new())
            .map_err(ApiError::Dispatch)?;
    if let Err(e) = hostcalls::send_grpc_stream_message(token, Some(&message.encode_to_vec()), true)
    {
        let _ = hostcalls::cancel_grpc_stream(token);
        return Err(ApiError::Dispatch(e));
    }
    Ok(token)
}

/// Reads one message received on a stream (`on_grpc_stream_message`).
pub fn stream_message<M: prost::Message + Default>(size: usize) -> Result<M, ApiError> {
    response(0, size)
}

pub fn cancel_stream(token: u32) {
    let _ = hostcalls::cancel_grpc_stream(token);
}
