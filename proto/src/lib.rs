//! The `keysync.v1` gRPC API shared by the wasm filter and the keysync sidecar.
//!
//! The code under `src/gen/` is generated from `keysync/v1/keysync.proto` and checked in
//! (see `tests/generated_code.rs`), so building needs no `protoc`. The filter uses the
//! messages only; the sidecar turns on the `server` feature for the tonic service.
#![forbid(unsafe_code)]

pub mod v1 {
    include!("gen/keysync.v1.rs");

    #[cfg(feature = "server")]
    include!("gen/keysync.v1.tonic.rs");

    /// Fully qualified service name, as the filter passes it to `dispatch_grpc_call`.
    pub const SERVICE: &str = "keysync.v1.KeySync";

    /// Bytes of every `key_hash` on the wire: a SHA-256 digest of the key.
    pub const KEY_HASH_LEN: usize = 32;
}
