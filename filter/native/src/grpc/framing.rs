//! gRPC's length-prefixed messages: a flag byte (compressed or not), the length as four
//! big-endian bytes, the message. The module sends uncompressed messages and asks for no
//! compression, so a compressed one is refused; a message announced over the filter's bound
//! (`keysync_filter_core::MAX_MESSAGE_BYTES`) is refused before a byte of it is kept.

use keysync_filter_core::{check_size, ApiError};

const PREFIX_LEN: usize = 5;

/// `message` with its prefix, ready to be sent as a request body.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + message.len());
    out.push(0);
    // A message longer than u32::MAX cannot be framed; the core's are small.
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Cuts the response body, as it arrives in chunks, into messages.
#[derive(Default, Debug)]
pub struct Deframer {
    pending: Vec<u8>,
    /// The length the current message announced, once its prefix is in.
    announced: Option<usize>,
    failed: bool,
}

impl Deframer {
    /// Takes a chunk; returns the messages it completed, or why the body cannot be read (no
    /// more bytes are kept after that).
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<Vec<u8>>, ApiError> {
        let mut messages = Vec::new();
        if self.failed {
            return Ok(messages);
        }
        while !chunk.is_empty() {
            let want = match self.announced {
                Some(len) => len,
                None => PREFIX_LEN,
            };
            let take = want.saturating_sub(self.pending.len()).min(chunk.len());
            let (head, rest) = chunk.split_at(take);
            self.pending.extend_from_slice(head);
            chunk = rest;
            if self.pending.len() < want {
                break;
            }
            match self.announced {
                None => {
                    let prefix: [u8; PREFIX_LEN] = self
                        .pending
                        .as_slice()
                        .try_into()
                        .map_err(|_| self.fail("a message prefix that is not 5 bytes"))?;
                    let [flag, len @ ..] = prefix;
                    if flag != 0 {
                        return Err(self.fail("a compressed message (none was asked for)"));
                    }
                    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
                    if let Err(e) = check_size(len) {
                        self.failed = true;
                        self.pending = Vec::new();
                        return Err(e);
                    }
                    self.pending.clear();
                    if len == 0 {
                        messages.push(Vec::new());
                    } else {
                        self.announced = Some(len);
                    }
                }
                Some(_) => {
                    self.announced = None;
                    messages.push(std::mem::take(&mut self.pending));
                }
            }
        }
        Ok(messages)
    }

    /// Whether a message was cut off (the body ended inside one).
    pub fn in_message(&self) -> bool {
        !self.failed && (self.announced.is_some() || !self.pending.is_empty())
    }

    fn fail(&mut self, what: &str) -> ApiError {
        self.failed = true;
        self.pending = Vec::new();
        ApiError::Decode(format!("keysync sent {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_filter_core::MAX_MESSAGE_BYTES;

    #[test]
    fn a_framed_message_reads_back_whatever_the_chunks() {
        let mut body = frame(b"hello");
        body.extend(frame(b""));
        body.extend(frame(&[7; 300]));
        for size in [1, 2, 5, 6, 64, body.len()] {
            let mut deframer = Deframer::default();
            let mut messages = Vec::new();
            for chunk in body.chunks(size) {
                messages.extend(deframer.push(chunk).unwrap());
            }
            assert_eq!(
                messages,
                vec![b"hello".to_vec(), Vec::new(), vec![7; 300]],
                "{size}"
            );
            assert!(!deframer.in_message());
        }
    }

    #[test]
    fn a_message_over_the_bound_is_refused_at_its_prefix() {
        let mut deframer = Deframer::default();
        let len = u32::try_from(MAX_MESSAGE_BYTES + 1).unwrap();
        let mut prefix = vec![0];
        prefix.extend_from_slice(&len.to_be_bytes());
        let Err(ApiError::Decode(reason)) = deframer.push(&prefix) else {
            panic!("refused");
        };
        assert!(reason.contains("bytes"), "{reason}");
        assert_eq!(
            deframer.push(&[1, 2, 3]),
            Ok(Vec::new()),
            "nothing kept after"
        );
    }

    #[test]
    fn compressed_and_cut_off_messages_are_told_apart() {
        let mut deframer = Deframer::default();
        assert!(deframer.push(&[1, 0, 0, 0, 1, 9]).is_err());
        let mut cut = Deframer::default();
        assert_eq!(cut.push(&frame(b"abc")[..6]), Ok(Vec::new()));
        assert!(cut.in_message());
    }
}
