//! Serving the key set ([`crate::key_set`]): the `keysync.v1.KeySync` gRPC service the
//! wasm filter calls ([`grpc`], carrying [`key_record`]s, with [`watch_server`]
//! streaming changes), Envoy's external authorization API for gateways without the
//! filter ([`ext_authz`]), the gRPC health service ([`health`]), and the admin HTTP port
//! ([`admin`]). Every gRPC call passes [`grpc_guard`] first (the token of
//! [`grpc_token`], a bound on calls in progress); [`grpc_tls`] reads the port's TLS
//! settings. [`server`] wires it all together with [`crate::sync`] and
//! [`crate::global_limit`] for `keysync serve`.

pub mod admin;
pub mod ext_authz;
pub mod grpc;
pub mod grpc_guard;
pub mod grpc_tls;
pub mod grpc_token;
pub mod health;
pub mod key_record;
pub mod quota_service;
pub mod server;
pub mod watch_server;
