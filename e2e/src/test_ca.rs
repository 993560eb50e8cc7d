//! Throwaway certificate authorities for the TLS tests: a CA made for one test, server
//! certificates it signs for the names a test chooses, written as PEM files.
//!
//! Each CA has its own key, so a second `TestCa` is a "wrong CA" for the first one's
//! certificates.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A self-signed CA.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its private key, as PEM.
#[derive(Debug, Clone)]
pub struct ServerCertificate {
    pub certificate_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new CA whose subject is `name` (shown by clients that name the issuer).
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/name` and returns the path.
    pub fn write_pem(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, self.pem())
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        path
    }

    /// A server certificate signed by this CA for `names`: host names become DNS
    /// subject alternative names, addresses (`127.0.0.1`) IP ones.
    pub fn server_certificate(&self, names: &[&str]) -> ServerCertificate {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server parameters");
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        let key = KeyPair::generate().expect("server key");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        ServerCertificate {
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}
