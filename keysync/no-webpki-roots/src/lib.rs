//! An empty stand-in for `webpki-roots` 1.x, the Mozilla root list sqlx 0.9 starts its
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
    extern crate std;

    use std::vec::Vec;

    #[test]
    fn there_are_no_roots() {
        assert!(super::TLS_SERVER_ROOTS.is_empty());
    }

    /// The patch applies only while its version answers sqlx's requirement (cargo merely
    /// warns of an unused patch): had sqlx moved to another major version, the lock
    /// would also hold the real list, from crates.io.
    #[test]
    fn the_lock_holds_no_other_webpki_roots() {
        let lock = include_str!("../../../Cargo.lock");
        let packages: Vec<&str> = lock
            .split("[[package]]")
            .filter(|package| package.contains("\nname = \"webpki-roots\"\n"))
            .collect();
        assert_eq!(packages.len(), 1, "{packages:?}");
        assert!(!packages[0].contains("source = "), "{}", packages[0]);
    }
}
