//! A PEM file of CA certificates that a backing service's certificate must chain to
//! (PostgreSQL's `sslrootcert`, `KEYSYNC_REDIS_TLS_CA`), checked to hold at least one
//! certificate so that a wrong path or an empty file is said at start, not as a failed
//! handshake later.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The file's path and its PEM text.
#[derive(Clone, PartialEq, Eq)]
pub struct CaFile {
    path: PathBuf,
    pem: Vec<u8>,
}

impl CaFile {
    /// Reads `path`; the error says why it cannot be used (not the path: callers name it).
    pub fn read(path: &Path) -> Result<CaFile, String> {
        let pem = std::fs::read(path).map_err(|error| error.to_string())?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| format!("not PEM: {error}"))?;
        if certificates.is_empty() {
            return Err("no PEM certificate in it".to_owned());
        }
        Ok(CaFile {
            path: path.to_path_buf(),
            pem,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The certificates, as PEM.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CaFile").field(&self.path).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_must_exist_and_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("keysync-ca-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = CaFile::read(&dir.join("missing.pem")).unwrap_err();
        assert!(missing.contains("No such file"), "{missing}");
        std::fs::write(dir.join("empty.pem"), "# nothing here\n").unwrap();
        assert_eq!(
            CaFile::read(&dir.join("empty.pem")).unwrap_err(),
            "no PEM certificate in it"
        );
        let ca = rcgen::generate_simple_self_signed(vec!["ca".to_owned()]).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
        let read = CaFile::read(&dir.join("ca.pem")).unwrap();
        assert_eq!(read.pem(), ca.cert.pem().as_bytes());
        assert_eq!(read.path(), dir.join("ca.pem"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
