//! TLS on the gRPC port, from PEM files named by `KEYSYNC_GRPC_TLS_CERT`,
//! `KEYSYNC_GRPC_TLS_KEY` and (for mutual TLS: only clients with a certificate issued by
//! that CA get through the handshake) `KEYSYNC_GRPC_TLS_CLIENT_CA`. Envoy presents its
//! client certificate through an `UpstreamTlsContext` on the keysync cluster.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

// The variables that name the files (read by [`crate::config`]): here, because a file
// that cannot be used is reported by the variable that named it.
pub const GRPC_TLS_CERT: &str = "KEYSYNC_GRPC_TLS_CERT";
pub const GRPC_TLS_KEY: &str = "KEYSYNC_GRPC_TLS_KEY";
pub const GRPC_TLS_CLIENT_CA: &str = "KEYSYNC_GRPC_TLS_CLIENT_CA";

/// TLS on the gRPC port: keysync's certificate chain and key, and, for mutual TLS, the
/// CA that client certificates must chain to (PEM files, read at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `None`: TLS without client certificates (not authentication by itself).
    pub client_ca: Option<PathBuf>,
}

/// A TLS file that cannot be used. Never shows a file's contents.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {variable}={}: {cause}", path.display())]
pub struct TlsError {
    pub variable: &'static str,
    pub path: std::path::PathBuf,
    pub cause: String,
}

/// The server's TLS settings from `files`. The files must hold PEM; whether they hold a
/// usable certificate and key shows when the server starts.
pub fn server_config(files: &TlsFiles) -> Result<ServerTlsConfig, TlsError> {
    let cert = read(GRPC_TLS_CERT, &files.cert)?;
    let key = read(GRPC_TLS_KEY, &files.key)?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &files.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(GRPC_TLS_CLIENT_CA, ca)?));
    }
    Ok(config)
}

fn read(variable: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let contents = std::fs::read(path).map_err(|error| TlsError {
        variable,
        path: path.to_owned(),
        cause: error.to_string(),
    })?;
    if !contents.windows(10).any(|window| window == b"-----BEGIN") {
        return Err(TlsError {
            variable,
            path: path.to_owned(),
            cause: "not a PEM file".to_owned(),
        });
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_pem_files_are_named() {
        let dir = std::env::temp_dir().join(format!("keysync-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "secret-ish bytes").unwrap();
        let files = TlsFiles {
            cert: dir.join("missing.pem"),
            key: garbage.clone(),
            client_ca: None,
        };
        let error = server_config(&files).unwrap_err();
        assert_eq!(error.variable, GRPC_TLS_CERT);
        assert!(
            error
                .to_string()
                .starts_with("cannot read KEYSYNC_GRPC_TLS_CERT="),
            "{error}"
        );
        let files = TlsFiles {
            cert: garbage.clone(),
            ..files
        };
        let error = server_config(&files).unwrap_err();
        assert!(error.to_string().ends_with("not a PEM file"), "{error}");
        assert!(!error.to_string().contains("secret-ish"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
