//! Percent-decoding of a query parameter's or a cookie's value, exactly once: `%41` is
//! `A`, `%2541` is `%41` (a key never holds a `%`, so a twice-encoded key is refused
//! as malformed rather than decoded again).

/// The bytes of `value` with each `%XX` decoded; `None` when a `%` is not followed by two
/// hex digits (such a value cannot be a key, and guessing what it meant is not ours).
/// `+` stays `+`: keys hold neither `+` nor spaces, so form encoding changes nothing.
pub fn decode_once(value: &[u8]) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let (high, low) = match tail {
                [high, low, ..] => (hex(*high)?, hex(*low)?),
                _ => return None,
            };
            decoded.push(high << 4 | low);
            rest = tail.get(2..).unwrap_or_default();
        } else {
            decoded.push(byte);
            rest = tail;
        }
    }
    Some(decoded)
}

/// Whether `value` decodes to `expected` (names are compared decoded: `api%5Fkey` is
/// `api_key` to every backend, so it must be to the gateway too).
pub fn decodes_to(value: &[u8], expected: &[u8]) -> bool {
    if !value.contains(&b'%') {
        return value == expected;
    }
    decode_once(value).is_some_and(|decoded| decoded == expected)
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_escape_once() {
        assert_eq!(decode_once(b"sk%5Flive%5fabc").unwrap(), b"sk_live_abc");
        assert_eq!(decode_once(b"sk%255Flive").unwrap(), b"sk%5Flive");
        assert_eq!(decode_once(b"a+b").unwrap(), b"a+b");
        assert_eq!(decode_once(b"").unwrap(), b"");
        assert_eq!(decode_once(b"%00").unwrap(), b"\0");
    }

    #[test]
    fn a_broken_escape_is_refused() {
        for value in [b"%".as_slice(), b"%4", b"abc%zz", b"%4g", b"x%"] {
            assert_eq!(decode_once(value), None, "{value:?}");
        }
    }

    #[test]
    fn names_compare_decoded() {
        assert!(decodes_to(b"api_key", b"api_key"));
        assert!(decodes_to(b"api%5Fkey", b"api_key"));
        assert!(!decodes_to(b"api%255Fkey", b"api_key"));
        assert!(!decodes_to(b"api%", b"api_key"));
    }
}
