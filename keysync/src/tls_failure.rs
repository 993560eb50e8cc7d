//! What a failed TLS handshake with PostgreSQL or Redis means, in words an operator can
//! act on: which certificate check failed, and where keysync looked for the CA. The
//! clients report rustls's error inside an I/O error; this finds it and says it.

use std::error::Error;
use std::io;
use std::sync::Arc;

use rustls::CertificateError;

/// A shared error, as clients keep the cause of a failed connection (redis-rs).
type SharedError = Arc<dyn Error + Send + Sync>;

/// The rustls error in `error`'s chain: itself, inside an I/O error (as TLS streams
/// report it) or a shared error, or further down its sources. (An I/O error's `source`
/// skips the error it wraps, so each wrapper is opened here.)
pub fn rustls_error<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(found) = error.downcast_ref::<rustls::Error>() {
        return Some(found);
    }
    let io = error
        .downcast_ref::<io::Error>()
        .or_else(|| error.downcast_ref::<Arc<io::Error>>().map(Arc::as_ref));
    if let Some(inner) = io.and_then(io::Error::get_ref) {
        if let Some(found) = rustls_error(inner) {
            return Some(found);
        }
    }
    if let Some(shared) = error.downcast_ref::<SharedError>() {
        let inner: &(dyn Error + 'static) = shared.as_ref();
        if let Some(found) = rustls_error(inner) {
            return Some(found);
        }
    }
    error.source().and_then(rustls_error)
}

/// `error` in words, then rustls's own text. `trusted` says where the CA certificates
/// came from (`sslrootcert "/etc/keysync/ca.pem"`), `host` what the certificate was
/// checked against.
pub fn describe(error: &rustls::Error, trusted: &str, host: &str) -> String {
    let problem = match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::UnknownIssuer => {
                format!("the server's certificate is not signed by a CA in {trusted}")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("the server's certificate is not valid for {host}")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (is the clock right?)".to_owned()
            }
            CertificateError::Revoked => "the server's certificate is revoked".to_owned(),
            _ => "the server's certificate was refused".to_owned(),
        },
        rustls::Error::AlertReceived(_) => "the server ended the TLS handshake".to_owned(),
        _ => "the TLS handshake failed".to_owned(),
    };
    format!("{problem} ({error})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_is_found_inside_io_errors_and_their_sources() {
        let tls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = io::Error::new(io::ErrorKind::InvalidData, tls.clone());
        assert_eq!(rustls_error(&io), Some(&tls));
        let shared = Arc::new(io::Error::new(io::ErrorKind::InvalidData, tls.clone()));
        assert_eq!(rustls_error(&shared), Some(&tls));
        // As redis-rs keeps it.
        let dynamic: SharedError =
            Arc::new(io::Error::new(io::ErrorKind::InvalidData, tls.clone()));
        assert_eq!(rustls_error(&dynamic), Some(&tls));
        let redis =
            redis::RedisError::from(io::Error::new(io::ErrorKind::InvalidData, tls.clone()));
        assert_eq!(rustls_error(&redis), Some(&tls));
        assert_eq!(rustls_error(&tls), Some(&tls));
        let plain = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(rustls_error(&plain), None);
    }

    #[test]
    fn each_certificate_problem_is_named() {
        let described = |error: CertificateError| {
            describe(
                &rustls::Error::InvalidCertificate(error),
                "sslrootcert \"/ca.pem\"",
                "db.internal",
            )
        };
        assert_eq!(
            described(CertificateError::UnknownIssuer),
            "the server's certificate is not signed by a CA in sslrootcert \"/ca.pem\" \
             (invalid peer certificate: UnknownIssuer)"
        );
        assert!(described(CertificateError::NotValidForName)
            .starts_with("the server's certificate is not valid for db.internal ("));
        assert!(described(CertificateError::Expired).contains("has expired"));
        assert!(described(CertificateError::NotValidYet).contains("not valid yet"));
        assert!(described(CertificateError::BadSignature).contains("was refused"));
    }
}
