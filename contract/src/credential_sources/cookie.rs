//! Credentials in the `Cookie` header: which cookies carry one, and the header without
//! them, the other cookies kept in their order.

use super::percent;
use super::Occurrence;

/// The occurrences of the cookies `source_of` recognizes (it gives the source a name
/// belongs to), and the header without them (`Some(empty)`: no cookie is left, remove the
/// header); `rewritten` is `None` when none is there.
pub fn scan(header: &[u8], source_of: impl Fn(&[u8]) -> Option<usize>) -> Scanned {
    let mut occurrences = Vec::new();
    for pair in header.split(|&b| b == b';') {
        let (name, value) = split_pair(pair);
        if let Some(source) = source_of(name) {
            occurrences.push(Occurrence {
                source,
                value: percent::decode_once(unquoted(value)),
            });
        }
    }
    if occurrences.is_empty() {
        return Scanned::default();
    }
    let kept: Vec<&[u8]> = header
        .split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty() && source_of(split_pair(pair).0).is_none())
        .collect();
    Scanned {
        occurrences,
        rewritten: Some(kept.join(b"; ".as_slice())),
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    pub occurrences: Vec<Occurrence>,
    /// The header without the credential cookies, when there were any.
    pub rewritten: Option<Vec<u8>>,
}

/// `name=value` with the white space around each trimmed (RFC 6265 5.2); a pair without
/// `=` is a name with an empty value.
fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|&b| b == b'=') {
        Some(equals) => (
            pair.get(..equals).unwrap_or_default().trim_ascii(),
            pair.get(equals + 1..).unwrap_or_default().trim_ascii(),
        ),
        None => (pair.trim_ascii(), &[]),
    }
}

/// A cookie value may be wrapped in double quotes (RFC 6265 4.1.1).
fn unquoted(value: &[u8]) -> &[u8] {
    value
        .strip_prefix(b"\"")
        .and_then(|inner| inner.strip_suffix(b"\""))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(name: &[u8]) -> Option<usize> {
        (name == b"session").then_some(1)
    }

    fn rewritten(header: &str) -> Option<String> {
        scan(header.as_bytes(), session)
            .rewritten
            .map(|header| String::from_utf8(header).unwrap())
    }

    #[test]
    fn removes_the_cookie_and_keeps_the_others_in_order() {
        let cases = [
            ("session=K", ""),
            ("a=1; session=K; b=2", "a=1; b=2"),
            ("session=K;b=%2F;a", "b=%2F; a"),
            ("a=\"q\"; session=\"K\"", "a=\"q\""),
            ("  session = K ;; z=9 ", "z=9"),
        ];
        for (header, expected) in cases {
            assert_eq!(rewritten(header).as_deref(), Some(expected), "{header}");
        }
    }

    #[test]
    fn a_header_without_the_cookie_is_left_alone() {
        for header in ["", "a=1", "sessions=1; xsession=2", "SESSION=1", ";;;"] {
            assert_eq!(
                scan(header.as_bytes(), session),
                Scanned::default(),
                "{header}"
            );
        }
    }

    #[test]
    fn values_are_unquoted_and_decoded_once() {
        let scanned = scan(b"session=\"sk%5Flive\"; session=%255F; session=%", session);
        let values: Vec<_> = scanned.occurrences.into_iter().map(|o| o.value).collect();
        assert_eq!(
            values,
            vec![Some(b"sk_live".to_vec()), Some(b"%5F".to_vec()), None]
        );
    }

    #[test]
    fn a_huge_header_is_scanned_without_trouble() {
        let header = b"a=1; session=K; ;=;\"; ".repeat(20_000);
        let scanned = scan(&header, session);
        assert_eq!(scanned.occurrences.len(), 20_000);
        assert!(scanned.rewritten.unwrap().len() < header.len());
    }
}
