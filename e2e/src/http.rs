//! A raw HTTP/1.1 client: tests need to send what real clients send and what broken
//! ones send (bytes that are not UTF-8, repeated headers, odd whitespace) exactly, which
//! a polite client library would refuse or normalize.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header (names compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// How long a response may take before [`get`] gives up.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET path` with the given headers (values as raw bytes).
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &[u8])]) -> io::Result<Response> {
    get_within(addr, path, headers, RESPONSE_TIMEOUT)
}

/// [`get`], giving up (an error) when no response came within `timeout`.
pub fn get_within(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &[u8])],
    timeout: Duration,
) -> io::Result<Response> {
    let mut raw = format!("GET {path} HTTP/1.1\r\nhost: gateway\r\n").into_bytes();
    for (name, value) in headers {
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"connection: close\r\n\r\n");
    send_raw_within(addr, &raw, timeout)
}

/// Sends `raw` as is and reads one response: up to its `content-length`, the end of
/// its chunks, or else the connection's end. Waiting for the close is not enough: after
/// a local reply Envoy delays closing (`delayed_close_timeout`, 1 s).
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> io::Result<Response> {
    send_raw_within(addr, raw, RESPONSE_TIMEOUT)
}

pub fn send_raw_within(addr: SocketAddr, raw: &[u8], timeout: Duration) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(raw)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if is_complete(&buf) {
            break;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse(&buf)
}

/// One keep-alive HTTP/1.1 connection that sends requests as raw bytes, one at a time,
/// and reads each response whole (by its `content-length` or its chunks), so that many
/// requests reuse one connection. It connects again when the server closed the last one
/// (`connection: close`, or after a request the server refused to parse).
pub struct Connection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Connection {
    pub fn new(addr: SocketAddr) -> Connection {
        Connection { addr, stream: None }
    }

    /// Sends `raw` (one complete request) and reads its response. A request that fails
    /// on a reused connection (the server closed it meanwhile) is sent once more on a
    /// fresh one.
    pub fn exchange(&mut self, raw: &[u8]) -> io::Result<Response> {
        if self.stream.is_some() {
            if let Ok(response) = self.exchange_once(raw) {
                return Ok(response);
            }
            self.stream = None;
        }
        self.exchange_once(raw)
    }

    fn exchange_once(&mut self, raw: &[u8]) -> io::Result<Response> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                stream.set_nodelay(true)?;
                self.stream.insert(stream)
            }
        };
        let outcome = write_and_read(stream, raw);
        let keep = matches!(&outcome, Ok((_, false)));
        if !keep {
            self.stream = None;
        }
        let (buf, _) = outcome?;
        let response = parse(&buf);
        if response.as_ref().is_ok_and(|r| {
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        }) {
            self.stream = None;
        }
        response
    }
}

/// Writes `raw` and reads one response; also says whether the server closed the
/// connection.
fn write_and_read(stream: &mut TcpStream, raw: &[u8]) -> io::Result<(Vec<u8>, bool)> {
    stream.write_all(raw)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if is_complete(&buf) {
            return Ok((buf, false));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether `buf` holds a whole response whose length is known from its head.
fn is_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    for line in head.split("\r\n") {
        if let Some(length) = line.strip_prefix("content-length:") {
            return length
                .trim()
                .parse::<usize>()
                .is_ok_and(|length| body.len() >= length);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    false
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn parse(buf: &[u8]) -> io::Result<Response> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid(format!("no complete response head in {} bytes", buf.len())))?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("truncated chunk size".into()))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| invalid(format!("bad chunk size {size_text:?}: {e}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = data
            .get(..size)
            .ok_or_else(|| invalid("truncated chunk".into()))?;
        body.extend_from_slice(chunk);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_plain_response() {
        let r = parse(b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
            .expect("parses");
        assert_eq!(r.status, 403);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.body, b"{}");
    }

    #[test]
    fn parses_a_chunked_response() {
        let r = parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .expect("parses");
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn knows_when_a_response_is_complete() {
        assert!(!is_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{"
        ));
        assert!(is_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
        ));
        assert!(is_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
        ));
        assert!(!is_complete(b"HTTP/1.1 200 OK\r\n\r\nbody until close"));
    }

    #[test]
    fn refuses_a_truncated_head() {
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
