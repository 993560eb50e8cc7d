//! One delivery attempt over HTTP/1.1: the destination's addresses looked up and checked
//! ([`Destination::resolve`]), a connection opened to a checked address (never a second
//! lookup of the name, which could answer differently), TLS with the host's name for
//! https, one POST, and the answer's status. The whole attempt is bounded by a timeout.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderName, Method, Request};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Position;

use super::destination::{Destination, DestinationError};

/// Why an attempt got no status.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Address(#[from] DestinationError),
    #[error("cannot connect to {address}: {cause}")]
    Connect {
        address: SocketAddr,
        cause: io::Error,
    },
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("no trusted root certificates for https (SSL_CERT_FILE, SSL_CERT_DIR)")]
    NoRoots,
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Request(#[from] http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Sends attempts; holds the TLS settings (the system's trusted roots, read once).
#[derive(Clone)]
pub struct Sender {
    tls: Option<TlsConnector>,
    timeout: Duration,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("tls", &self.tls.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The headers of one attempt, besides `Host`, `Content-Type` and `User-Agent`.
pub type Headers = Vec<(HeaderName, HeaderValue)>;

impl Sender {
    /// A sender whose https trusts the system's roots (`SSL_CERT_FILE` and `SSL_CERT_DIR`
    /// are honoured); with none found, https attempts fail and plain http still works.
    pub fn new(timeout: Duration) -> Sender {
        let mut roots = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
        let tls = (!roots.is_empty())
            .then(|| {
                ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .ok()
                .map(|builder| {
                    TlsConnector::from(Arc::new(
                        builder.with_root_certificates(roots).with_no_client_auth(),
                    ))
                })
            })
            .flatten();
        Sender { tls, timeout }
    }

    /// POSTs `body` to `destination` and returns the answer's status.
    pub async fn post(
        &self,
        destination: &Destination,
        allow_private: bool,
        headers: Headers,
        body: String,
    ) -> Result<u16, SendError> {
        let attempt = async {
            let addresses = destination.resolve(allow_private).await?;
            let stream = connect(&addresses).await?;
            let request = request(destination, headers, body)?;
            if destination.https() {
                let tls = self.tls.as_ref().ok_or(SendError::NoRoots)?;
                let name = ServerName::try_from(destination.host())
                    .map_err(|error| SendError::Tls(io::Error::other(error)))?;
                let stream = tls.connect(name, stream).await.map_err(SendError::Tls)?;
                exchange(stream, request).await
            } else {
                exchange(stream, request).await
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| SendError::Timeout(self.timeout))?
    }
}

/// A connection to the first of `addresses` that accepts one.
async fn connect(addresses: &[SocketAddr]) -> Result<TcpStream, SendError> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(cause) => {
                last = Some(SendError::Connect {
                    address: *address,
                    cause,
                })
            }
        }
    }
    Err(
        last.unwrap_or(SendError::Address(DestinationError::Unresolved {
            host: String::new(),
            reason: "no address".to_owned(),
        })),
    )
}

fn request(
    destination: &Destination,
    headers: Headers,
    body: String,
) -> Result<Request<Full<Bytes>>, http::Error> {
    let url = destination.url();
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(&url[Position::BeforePath..Position::AfterQuery])
        .header(HOST, &url[Position::BeforeHost..Position::AfterPort])
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("keysync-webhooks/", env!("CARGO_PKG_VERSION")),
        );
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(Bytes::from(body)))
}

/// One request on a fresh connection; the answer's body is not read.
async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<u16, SendError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let answered = sender.send_request(request).await;
    driver.abort();
    Ok(answered?.status().as_u16())
}
