//! An empty stand-in for `webpki-roots` 0.26, the Mozilla root list sqlx 0.8 starts its
//! trust store from before adding `sslrootcert`'s certificates. With no roots here, a
//! PostgreSQL server is trusted exactly as libpq trusts it: by the CA file
//! `sslrootcert` names, or by the system's roots (`sslrootcert=system`, which keysync
//! loads and hands to sqlx as that file's contents), never by a public CA nobody named.
//! See `keysync/src/database_tls.rs`.
#![forbid(unsafe_code)]
#![no_std]

use rustls_pki_types::TrustAnchor;

/// No trust anchors.
pub const TLS_SERVER_ROOTS: &[TrustAnchor<'static>] = &[];

#[cfg(test)]
mod tests {
    #[test]
    fn there_are_no_roots() {
        assert!(super::TLS_SERVER_ROOTS.is_empty());
    }
}
