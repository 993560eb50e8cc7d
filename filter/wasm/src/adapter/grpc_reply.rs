//! What Envoy delivered when a gRPC call completes or a stream message arrives, decided
//! from the callback's facts (the status, the announced size) before any host call reads
//! the rest: a message over the bound is refused unread, a failed call carries its
//! status and message. The host calls come in as closures, so the decisions are tested
//! natively.

use keysync_filter_core::{check_size, ApiError, Reply};
use std::fmt::Debug;

/// A completed call (`on_grpc_call_response`): its message, or why there is none.
/// `status_message` reads the status's message (only for a failed call); `read` reads
/// the message's `size` bytes (only for one that may be read).
pub fn call_reply<E: Debug>(
    grpc_status: u32,
    size: usize,
    status_message: impl FnOnce() -> Option<String>,
    read: impl FnOnce(usize) -> Result<Option<Vec<u8>>, E>,
) -> Reply {
    if grpc_status != 0 {
        return Err(ApiError::Grpc(
            grpc_status,
            status_message().unwrap_or_default(),
        ));
    }
    received(size, read)
}

/// One message received on a stream (`on_grpc_stream_message`).
pub fn received<E: Debug>(
    size: usize,
    read: impl FnOnce(usize) -> Result<Option<Vec<u8>>, E>,
) -> Reply {
    check_size(size)?;
    read(size)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::Decode(format!("cannot read the gRPC buffer ({e:?})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_filter_core::MAX_MESSAGE_BYTES;
    use std::cell::Cell;

    #[derive(Debug)]
    struct BadBuffer;

    fn unread() -> impl FnOnce(usize) -> Result<Option<Vec<u8>>, BadBuffer> {
        |_| panic!("the buffer must not be read")
    }

    #[test]
    fn a_message_over_the_bound_is_refused_unread() {
        for size in [MAX_MESSAGE_BYTES + 1, usize::MAX] {
            let Err(ApiError::Decode(reason)) = received(size, unread()) else {
                panic!("refused");
            };
            assert!(reason.contains(&format!("{size} bytes")), "{reason}");
            let call = call_reply(0, size, || None, unread());
            assert!(matches!(call, Err(ApiError::Decode(_))));
        }
    }

    #[test]
    fn a_message_within_the_bound_is_read_at_its_size() {
        let asked = Cell::new(None);
        let read = |size| {
            asked.set(Some(size));
            Ok::<_, BadBuffer>(Some(vec![7; size]))
        };
        assert_eq!(
            received(MAX_MESSAGE_BYTES, read).map(|m| m.len()),
            Ok(MAX_MESSAGE_BYTES)
        );
        assert_eq!(asked.get(), Some(MAX_MESSAGE_BYTES));
        assert_eq!(
            call_reply(0, 3, || None, |_| Ok::<_, BadBuffer>(Some(b"abc".to_vec()))),
            Ok(b"abc".to_vec())
        );
        // An empty message is no buffer at all.
        assert_eq!(received(0, |_| Ok::<_, BadBuffer>(None)), Ok(Vec::new()));
    }

    #[test]
    fn a_failed_call_carries_its_status_and_message_and_reads_no_buffer() {
        assert_eq!(
            call_reply(14, 10, || Some("no healthy upstream".into()), unread()),
            Err(ApiError::Grpc(14, "no healthy upstream".into()))
        );
        assert_eq!(
            call_reply(4, 0, || None, unread()),
            Err(ApiError::Grpc(4, String::new()))
        );
    }

    #[test]
    fn a_buffer_that_cannot_be_read_is_a_decode_error() {
        assert_eq!(
            received(5, |_| Err(BadBuffer)),
            Err(ApiError::Decode(
                "cannot read the gRPC buffer (BadBuffer)".into()
            ))
        );
    }
}
