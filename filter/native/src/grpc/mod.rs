//! gRPC to keysync over Envoy's HTTP streams, done by the module: the ABI has streaming HTTP
//! requests to a cluster but no gRPC client, so the module frames the messages (`framing`),
//! reads the answer's headers, messages and trailers into what the core expects
//! (`response`), and keeps the calls in flight on each thread by the core's tokens (`calls`).

pub mod calls;
pub mod framing;
pub mod response;
