//! Calls to keysync's gRPC API (`keysync.v1.KeySync`), dispatched by the host to the
//! keysync cluster: the messages encoded on the way out, the answers decoded on the way
//! in, and what every answer says of keysync's data ([`provenance`]).

pub mod provenance;

use crate::host::{Host, HostError};
use std::time::Duration;

pub const LIST_KEYS: &str = "ListKeys";
pub const LOOKUP_KEY: &str = "LookupKey";
pub const WATCH_KEYS: &str = "WatchKeys";
pub const REPORT_USAGE: &str = "ReportUsage";
pub const ACQUIRE_QUOTA: &str = "AcquireQuota";

/// The largest message the filter reads from keysync. keysync's largest are pages of
/// 10,000 records and watch chunks of 5,000 changes (about 1 MB); a rogue or corrupt
/// peer announcing more must not make the VM allocate it (an allocation failure kills
/// the VM).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    Dispatch(HostError),
    /// A non-OK gRPC status from keysync or from Envoy (timeouts, no healthy host).
    Grpc(u32, String),
    Decode(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Dispatch(status) => {
                write!(f, "cannot dispatch the gRPC call (status {})", status.0)
            }
            ApiError::Grpc(code, message) if message.is_empty() => {
                write!(f, "gRPC status {code}")
            }
            ApiError::Grpc(code, message) => write!(f, "gRPC status {code}: {message}"),
            ApiError::Decode(e) => write!(f, "cannot decode the response: {e}"),
        }
    }
}

/// What Envoy delivered for a call or a stream message: the message's bytes, or why
/// there are none. The adapter reads it from the host when the callback fires.
pub type Reply = Result<Vec<u8>, ApiError>;

/// Whether a message of `size` bytes may be read at all: never one over
/// [`MAX_MESSAGE_BYTES`], whatever its peer announces. Every adapter asks before it
/// copies a message out of the host.
pub fn check_size(size: usize) -> Result<(), ApiError> {
    if size > MAX_MESSAGE_BYTES {
        return Err(ApiError::Decode(format!(
            "a message of {size} bytes, over the {MAX_MESSAGE_BYTES} the filter reads"
        )));
    }
    Ok(())
}

/// Sends a unary call; returns its token.
pub fn dispatch<H: Host>(
    host: &H,
    cluster: &str,
    method: &str,
    message: &impl prost::Message,
    timeout: Duration,
) -> Result<u32, ApiError> {
    host.dispatch_grpc(cluster, method, &message.encode_to_vec(), timeout)
        .map_err(ApiError::Dispatch)
}

/// Opens a server-streaming call with its one request; returns its token.
pub fn open_stream<H: Host>(
    host: &H,
    cluster: &str,
    method: &str,
    message: &impl prost::Message,
) -> Result<u32, ApiError> {
    host.open_grpc_stream(cluster, method, &message.encode_to_vec())
        .map_err(ApiError::Dispatch)
}

/// Decodes a reply as the message `M`.
pub fn decode<M: prost::Message + Default>(reply: Reply) -> Result<M, ApiError> {
    let bytes = reply?;
    M::decode(bytes.as_slice()).map_err(|e| ApiError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_proto::v1 as proto;

    #[test]
    fn decodes_messages_and_passes_failures_on() {
        let message = proto::LookupKeyResponse {
            key: None,
            revision: 7,
            provenance: None,
        };
        let decoded: proto::LookupKeyResponse =
            decode(Ok(prost::Message::encode_to_vec(&message))).unwrap();
        assert_eq!(decoded, message);
        let garbage = decode::<proto::LookupKeyResponse>(Ok(vec![0xff, 0xff, 0xff]));
        assert!(matches!(garbage, Err(ApiError::Decode(_))));
        let failed = decode::<proto::LookupKeyResponse>(Err(ApiError::Grpc(14, "down".into())));
        assert_eq!(failed, Err(ApiError::Grpc(14, "down".into())));
        assert_eq!(
            ApiError::Grpc(4, String::new()).to_string(),
            "gRPC status 4",
            "no trailing colon without a message"
        );
    }

    #[test]
    fn a_message_over_the_bound_is_never_read() {
        assert_eq!(check_size(0), Ok(()));
        assert_eq!(check_size(MAX_MESSAGE_BYTES), Ok(()));
        let Err(ApiError::Decode(reason)) = check_size(MAX_MESSAGE_BYTES + 1) else {
            panic!("refused");
        };
        assert!(reason.contains("16777217 bytes"), "{reason}");
        assert!(check_size(usize::MAX).is_err());
    }
}
