//! One gRPC call's answer as Envoy hands it over (response headers, body chunks, trailers,
//! then complete or reset), read into messages and a final status the way gRPC defines
//! them: the status in the trailers (or in the headers of a trailers-only answer), an HTTP
//! status other than 200 mapped to its gRPC code, a reset as UNAVAILABLE.

use crate::grpc::framing::Deframer;
use keysync_filter_core::ApiError;

/// gRPC codes the module produces itself.
const INTERNAL: u32 = 13;
const UNAVAILABLE: u32 = 14;

/// What the answer says, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A message (or why the body cannot be read).
    Message(Result<Vec<u8>, ApiError>),
    /// The call is over, with its gRPC status and message; nothing follows.
    Closed { status: u32, message: String },
}

#[derive(Default, Debug)]
pub struct GrpcResponse {
    deframer: Deframer,
    http_status: Option<u32>,
    grpc_status: Option<(u32, String)>,
    closed: bool,
}

fn header<'a>(headers: &[(&[u8], &'a [u8])], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, value)| *value)
}

fn number(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// `grpc-message` is percent-encoded (gRPC's HTTP/2 mapping).
fn percent_decoded(value: &[u8]) -> String {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while let Some(&byte) = value.get(i) {
        let hex = value
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (byte, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// gRPC's mapping of an HTTP status to a code, for an answer that is not gRPC's own.
fn code_of_http(status: u32) -> u32 {
    match status {
        400 => INTERNAL,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => 2,
    }
}

impl GrpcResponse {
    pub fn headers(&mut self, headers: &[(&[u8], &[u8])], end_stream: bool) -> Vec<Event> {
        self.http_status = header(headers, ":status").and_then(number);
        self.note_status(headers);
        if end_stream {
            return self.close();
        }
        Vec::new()
    }

    pub fn data(&mut self, chunks: &[&[u8]], end_stream: bool) -> Vec<Event> {
        let mut events = Vec::new();
        // The body of an answer that is not gRPC's (an HTML 503) is not read.
        if !self.closed && self.http_status == Some(200) {
            for chunk in chunks {
                match self.deframer.push(chunk) {
                    Ok(messages) => {
                        events.extend(messages.into_iter().map(|m| Event::Message(Ok(m))))
                    }
                    Err(e) => {
                        events.push(Event::Message(Err(e)));
                        break;
                    }
                }
            }
        }
        if end_stream {
            events.extend(self.close());
        }
        events
    }

    pub fn trailers(&mut self, trailers: &[(&[u8], &[u8])]) -> Vec<Event> {
        self.note_status(trailers);
        self.close()
    }

    /// The stream ended well (after its last headers, data or trailers).
    pub fn complete(&mut self) -> Vec<Event> {
        self.close()
    }

    /// The stream was reset (by keysync, the network, a timeout, or Envoy).
    pub fn reset(&mut self) -> Vec<Event> {
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        vec![Event::Closed {
            status: UNAVAILABLE,
            message: "the stream to keysync was reset".into(),
        }]
    }

    fn note_status(&mut self, headers: &[(&[u8], &[u8])]) {
        if let Some(status) = header(headers, "grpc-status").and_then(number) {
            let message = header(headers, "grpc-message")
                .map(percent_decoded)
                .unwrap_or_default();
            self.grpc_status = Some((status, message));
        }
    }

    fn close(&mut self) -> Vec<Event> {
        if self.closed {
            return Vec::new();
        }
        self.closed = true;
        let (status, message) = match (&self.grpc_status, self.http_status) {
            (Some((status, message)), _) => (*status, message.clone()),
            (None, Some(http)) if http != 200 => (
                code_of_http(http),
                format!("HTTP status {http} from keysync's cluster"),
            ),
            (None, _) if self.deframer.in_message() => {
                (INTERNAL, "the answer ended inside a message".into())
            }
            (None, _) => (INTERNAL, "the answer carried no grpc-status".into()),
        };
        vec![Event::Closed { status, message }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::framing::frame;

    fn closed(status: u32, message: &str) -> Event {
        Event::Closed {
            status,
            message: message.into(),
        }
    }

    #[test]
    fn an_ok_answer_is_its_messages_then_the_status_of_its_trailers() {
        let mut response = GrpcResponse::default();
        assert!(response
            .headers(
                &[(b":status", b"200"), (b"content-type", b"application/grpc")],
                false
            )
            .is_empty());
        let body = [frame(b"one"), frame(b"two")].concat();
        let (a, b) = body.split_at(4);
        let mut events = response.data(&[a], false);
        events.extend(response.data(&[b], false));
        events.extend(response.trailers(&[(b"grpc-status", b"0")]));
        events.extend(response.complete());
        assert_eq!(
            events,
            vec![
                Event::Message(Ok(b"one".to_vec())),
                Event::Message(Ok(b"two".to_vec())),
                closed(0, "")
            ]
        );
    }

    #[test]
    fn a_trailers_only_error_carries_its_decoded_message() {
        let mut response = GrpcResponse::default();
        let events = response.headers(
            &[
                (b":status", b"200"),
                (b"grpc-status", b"16"),
                (b"grpc-message", b"missing%20token"),
            ],
            true,
        );
        assert_eq!(events, vec![closed(16, "missing token")]);
        assert!(response.complete().is_empty(), "closed once");
    }

    #[test]
    fn http_errors_resets_and_missing_statuses_have_grpc_codes() {
        let mut unavailable = GrpcResponse::default();
        unavailable.headers(&[(b":status", b"503")], false);
        let events = unavailable.data(&[b"<html>no healthy upstream"], true);
        assert_eq!(
            events,
            vec![closed(14, "HTTP status 503 from keysync's cluster")]
        );

        let mut reset = GrpcResponse::default();
        reset.headers(&[(b":status", b"200")], false);
        assert_eq!(
            reset.reset(),
            vec![closed(14, "the stream to keysync was reset")]
        );

        let mut silent = GrpcResponse::default();
        silent.headers(&[(b":status", b"200")], false);
        silent.data(&[&frame(b"abc")[..5]], false);
        assert_eq!(
            silent.complete(),
            vec![closed(13, "the answer ended inside a message")]
        );
    }
}
