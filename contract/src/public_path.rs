//! Which request paths a public prefix may let through without a key: those that every
//! common backend reads as the resource their bytes spell.
//!
//! A prefix rule (`public_paths: ["/docs/*"]`) compares bytes, and Envoy's path
//! normalization runs before the filter sees `:path`, but backends resolve paths their
//! own way after that: Tomcat and Spring drop `;` parameters from a segment and then
//! resolve `..` (`/docs/..;/api` is `/api` to them), IIS reads `\` as `/`, some
//! frameworks decode twice (`%252e` becomes `.`). Envoy resolves a literal `..;` but
//! only decodes `%2e%2e;` to `..;`, which then reaches the backend as written. So a
//! path under a public prefix is public only when no such reading can take it
//! elsewhere: no dot segment in any spelling (percent-encoded, double-encoded, with `;`
//! parameters, overlong UTF-8, IIS's `%u002e`), no backslash, no encoded slash or
//! backslash, no NUL. A path that fails is not refused: it simply needs a key, like
//! any path outside the public prefixes.

/// Percent-decoding rounds tried: a path still encoded after these is not trusted.
const MAX_DECODING_ROUNDS: usize = 4;

/// Whether every common backend reads `path` (a request's `:path`; a query string is
/// ignored) as the resource its bytes spell.
pub fn is_unambiguous(path: &[u8]) -> bool {
    let path = match path.iter().position(|&b| b == b'?') {
        Some(end) => path.get(..end).unwrap_or(path),
        None => path,
    };
    if path.contains(&b'\\') {
        return false;
    }
    let Some(decoded) = fully_decoded(path) else {
        return false;
    };
    let slashes = |bytes: &[u8]| bytes.iter().filter(|&&b| b == b'/').count();
    if decoded.contains(&b'\\') || decoded.contains(&0) || slashes(&decoded) != slashes(path) {
        // A backslash or slash that was encoded, or a NUL (which ends a C string).
        return false;
    }
    !decoded.split(|&b| b == b'/').any(is_dot_segment)
}

/// `path` percent-decoded (and `%uXXXX`-decoded, as IIS does) until nothing changes;
/// `None` if it still changes after [`MAX_DECODING_ROUNDS`].
fn fully_decoded(path: &[u8]) -> Option<Vec<u8>> {
    let mut current = path.to_vec();
    for _ in 0..MAX_DECODING_ROUNDS {
        let next = decode_once(&current);
        if next == current {
            return Some(current);
        }
        current = next;
    }
    (decode_once(&current) == current).then_some(current)
}

fn hex(byte: Option<&u8>) -> Option<u32> {
    byte.and_then(|&b| char::from(b).to_digit(16))
}

fn decode_once(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            if let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                out.push(u8::try_from(high * 16 + low).unwrap_or(0));
                i += 3;
                continue;
            }
            // IIS: %uXXXX, a UTF-16 code unit. Only what could spell a separator or a
            // dot matters here; the rest stands for itself as an unknown byte.
            let unit = (2..6).try_fold(0u32, |unit, at| Some(unit * 16 + hex(bytes.get(i + at))?));
            if matches!(bytes.get(i + 1), Some(b'u' | b'U')) {
                if let Some(unit) = unit {
                    out.push(match unit {
                        0..=0x7f => u8::try_from(unit).unwrap_or(0),
                        0xff0e => b'.',
                        _ => 0x80,
                    });
                    i += 6;
                    continue;
                }
            }
        }
        out.push(byte);
        i += 1;
    }
    out
}

/// A segment that some backend resolves as `.` or `..`: only dots (and a backend's
/// spellings of a dot) once its `;` parameters, anything after a `?` or `#` it may have
/// decoded, and trailing spaces (Windows drops them) are set aside.
fn is_dot_segment(segment: &[u8]) -> bool {
    let name = segment
        .split(|&b| matches!(b, b';' | b'?' | b'#'))
        .next()
        .unwrap_or_default();
    let mut dots = 0usize;
    let mut rest = name;
    loop {
        rest = match rest {
            [] => break,
            [b'.', tail @ ..] => tail,
            // Overlong UTF-8 for '.', which old decoders accepted.
            [0xc0, 0xae, tail @ ..] | [0xe0, 0x80, 0xae, tail @ ..] => tail,
            // FULLWIDTH FULL STOP, which Unicode normalization turns into '.'.
            [0xef, 0xbc, 0x8e, tail @ ..] => tail,
            [b' ' | b'\t', tail @ ..]
                if dots > 0 && tail.iter().all(|b| matches!(b, b' ' | b'\t')) =>
            {
                return true;
            }
            _ => return false,
        };
        dots += 1;
    }
    dots > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_are_unambiguous() {
        for path in [
            "/docs/",
            "/docs/guide.html",
            "/docs/a/b/c",
            "/docs/.well-known/x",
            "/docs/v1.2/notes",
            "/docs/x;version=2",
            "/docs/file%20name.pdf",
            "/docs/%E6%96%87%E6%A1%A3",
            "/docs/x?next=../../admin",
            "/docs/x?q=%2e%2e%5c",
            "/docs/..hidden",
        ] {
            assert!(is_unambiguous(path.as_bytes()), "{path}");
        }
    }

    #[test]
    fn a_dot_segment_in_any_spelling_is_ambiguous() {
        for path in [
            "/docs/../api",
            "/docs/./api",
            "/docs/..",
            "/docs/..;/api/test",
            "/docs/..;jsessionid=1/api",
            "/docs/%2e%2e;/api/test",
            "/docs/%2E%2E;/api/test",
            "/docs/.%2e;/api",
            "/docs/%2e.;/api",
            "/docs/%2e;/api",
            "/docs/%2e%2e/api",
            "/docs/%2e%2e%3b/api",
            "/docs/..%3bx/api",
            "/docs/%252e%252e/api",
            "/docs/%25252e%25252e;/api",
            "/docs/x/..;/..;/api",
            "/docs/..%3f/api",
            "/docs/..%23/api",
            "/docs/%c0%ae%c0%ae/api",
            "/docs/%e0%80%ae%e0%80%ae/api",
            "/docs/%ef%bc%8e%ef%bc%8e/api",
            "/docs/%u002e%u002e/api",
            "/docs/%U002E%u002e;/api",
            "/docs/%uff0e%uff0e/api",
            "/docs/.. /api",
            "/docs/..%20/api",
            "/docs/...",
        ] {
            assert!(!is_unambiguous(path.as_bytes()), "{path}");
        }
    }

    #[test]
    fn backslashes_encoded_slashes_and_nul_are_ambiguous() {
        for path in [
            "/docs\\..\\api",
            "/docs/a\\b",
            "/docs/%5c..%5capi",
            "/docs/%5Capi",
            "/docs/..%2fapi",
            "/docs/a%2Fb",
            "/docs/%252fapi",
            "/docs/%u005capi",
            "/docs/%u002fapi",
            "/docs/a%00b",
        ] {
            assert!(!is_unambiguous(path.as_bytes()), "{path}");
        }
    }

    #[test]
    fn encoding_nested_deeper_than_the_bound_is_not_trusted() {
        // Each round turns "%25" into "%": five rounds still decode.
        assert!(!is_unambiguous(b"/docs/%252525252e"));
        assert!(is_unambiguous(b"/docs/%25252541"), "four rounds: 'A'");
    }

    #[test]
    fn any_bytes_are_judged_without_panicking() {
        for path in [
            &b""[..],
            b"%",
            b"%u",
            b"%u12",
            b"/%",
            b"/%e",
            b"\xff\xfe",
            b"/%uzzzz",
        ] {
            let _ = is_unambiguous(path);
        }
        assert!(is_unambiguous(b"/docs/100%"), "a lone % is just a byte");
    }
}
