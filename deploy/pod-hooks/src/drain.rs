//! `drain`: Envoy's `preStop` hook. Kubernetes sends a terminating pod's container
//! SIGTERM once this hook returns, and Envoy exits at SIGTERM, cutting every connection
//! it holds; meanwhile the Service and the load balancers keep sending the pod new
//! connections until they hear it is going. So the hook first starts Envoy's graceful
//! drain (`POST /drain_listeners?graceful` on its admin interface): from then on each
//! answer asks its client to close the connection (HTTP/1.1 `connection: close`,
//! HTTP/2 GOAWAY), and the listeners keep accepting until Envoy's `--drain-time-s`
//! has passed. Then it waits, so that SIGTERM comes after the clients have moved.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The admin request that starts the drain.
pub const DRAIN_PATH: &str = "/drain_listeners?graceful";

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("cannot reach Envoy's admin interface at {admin}: {source}")]
    Connect {
        admin: SocketAddr,
        source: std::io::Error,
    },
    #[error("Envoy's admin interface at {admin} answered {status_line:?} to POST {DRAIN_PATH}")]
    Refused {
        admin: SocketAddr,
        status_line: String,
    },
}

/// Asks the Envoy whose admin interface is at `admin` to start its graceful drain.
pub fn start_drain(admin: SocketAddr, timeout: Duration) -> Result<(), DrainError> {
    let connect = |source| DrainError::Connect { admin, source };
    let mut stream = TcpStream::connect_timeout(&admin, timeout).map_err(connect)?;
    stream.set_read_timeout(Some(timeout)).map_err(connect)?;
    stream.set_write_timeout(Some(timeout)).map_err(connect)?;
    let request = format!(
        "POST {DRAIN_PATH} HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(connect)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(connect)?;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default().to_owned();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(DrainError::Refused { admin, status_line })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// An admin interface that answers `status_line` once and returns the request.
    fn fake_admin(status_line: &'static str) -> (SocketAddr, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buffer).unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buffer[..n]);
            }
            write!(stream, "{status_line}\r\ncontent-length: 3\r\n\r\nOK\n").unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, handle)
    }

    #[test]
    fn posts_a_graceful_drain_to_the_admin_interface() {
        let (admin, server) = fake_admin("HTTP/1.1 200 OK");

        start_drain(admin, Duration::from_secs(5)).unwrap();

        let request = server.join().unwrap();
        assert!(
            request.starts_with("POST /drain_listeners?graceful HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Content-Length: 0\r\n"), "{request}");
    }

    #[test]
    fn another_status_is_an_error_that_quotes_it() {
        let (admin, server) = fake_admin("HTTP/1.1 405 Method Not Allowed");

        let error = start_drain(admin, Duration::from_secs(5))
            .unwrap_err()
            .to_string();

        server.join().unwrap();
        assert!(
            error.contains("\"HTTP/1.1 405 Method Not Allowed\""),
            "{error}"
        );
    }

    #[test]
    fn nothing_listening_is_an_error_naming_the_address() {
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();

        let error = start_drain(addr, Duration::from_secs(2))
            .unwrap_err()
            .to_string();

        assert!(
            error.starts_with(&format!("cannot reach Envoy's admin interface at {addr}")),
            "{error}"
        );
    }
}
