//! Credentials in the query string of `:path`: which parameters carry one, and the path
//! without them, the rest of the query kept byte for byte (order, encoding, repeated
//! names, empty parameters).

use super::percent;
use super::Occurrence;

/// The occurrences of the parameters `source_of` recognizes (it gives the source a
/// decoded name belongs to), and the path without them (`None` when none is there).
/// A path without `?` costs one scan for the `?` and nothing else.
pub fn scan(path: &[u8], source_of: impl Fn(&[u8]) -> Option<usize>) -> Scanned {
    let Some(mark) = path.iter().position(|&b| b == b'?') else {
        return Scanned::default();
    };
    let (before, query) = path.split_at(mark);
    let query = query.get(1..).unwrap_or_default();
    let mut occurrences = Vec::new();
    for parameter in query.split(|&b| b == b'&') {
        let (name, value) = match parameter.iter().position(|&b| b == b'=') {
            Some(equals) => (
                parameter.get(..equals).unwrap_or_default(),
                parameter.get(equals + 1..).unwrap_or_default(),
            ),
            None => (parameter, &[][..]),
        };
        if let Some(source) = source_of(name) {
            occurrences.push(Occurrence {
                source,
                value: percent::decode_once(value),
            });
        }
    }
    if occurrences.is_empty() {
        return Scanned::default();
    }
    let kept: Vec<&[u8]> = query
        .split(|&b| b == b'&')
        .filter(|parameter| {
            let name = parameter.split(|&b| b == b'=').next().unwrap_or_default();
            source_of(name).is_none()
        })
        .collect();
    let mut rewritten = before.to_vec();
    if !kept.is_empty() {
        rewritten.push(b'?');
        rewritten.extend_from_slice(&kept.join(&b'&'));
    }
    Scanned {
        occurrences,
        rewritten: Some(rewritten),
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    pub occurrences: Vec<Occurrence>,
    /// The path without the credential parameters, when there were any.
    pub rewritten: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_key(name: &[u8]) -> Option<usize> {
        percent::decodes_to(name, b"api_key").then_some(0)
    }

    fn rewritten(path: &str) -> Option<String> {
        scan(path.as_bytes(), api_key)
            .rewritten
            .map(|path| String::from_utf8(path).unwrap())
    }

    #[test]
    fn removes_the_parameter_and_keeps_the_rest_byte_for_byte() {
        let cases = [
            ("/p?api_key=K", "/p"),
            ("/p?a=1&api_key=K&b=2", "/p?a=1&b=2"),
            ("/p?api_key=K&b=%2F+x&a=1&b=2", "/p?b=%2F+x&a=1&b=2"),
            ("/p?z=1&&api_key=K&&a", "/p?z=1&&&a"),
            ("/p?api_key=K&", "/p?"),
            ("/p?a&api_key&b=", "/p?a&b="),
            ("/p?api%5Fkey=K&a=%5F", "/p?a=%5F"),
            ("/p?api_key=K&api_key=K", "/p"),
            ("/p/?x=%20y&api_key=K#frag", "/p/?x=%20y"),
        ];
        for (path, expected) in cases {
            assert_eq!(rewritten(path).as_deref(), Some(expected), "{path}");
        }
    }

    #[test]
    fn a_path_without_the_parameter_is_left_alone() {
        for path in [
            "/p",
            "/p?",
            "/p?a=1&&b",
            "/p?api_keys=1&xapi_key=2",
            "/p?API_KEY=1",
        ] {
            assert_eq!(scan(path.as_bytes(), api_key), Scanned::default(), "{path}");
        }
    }

    #[test]
    fn values_are_decoded_once_and_broken_escapes_marked() {
        let scanned = scan(
            b"/p?api_key=sk%5Flive&api_key=%2541&api_key=%zz&api_key",
            api_key,
        );
        let values: Vec<_> = scanned.occurrences.into_iter().map(|o| o.value).collect();
        assert_eq!(
            values,
            vec![
                Some(b"sk_live".to_vec()),
                Some(b"%41".to_vec()),
                None,
                Some(Vec::new())
            ]
        );
    }

    #[test]
    fn a_huge_query_is_scanned_without_trouble() {
        let mut path = b"/p?".to_vec();
        for _ in 0..20_000 {
            path.extend_from_slice(b"a=1&api_key=K&&%&=&");
        }
        let scanned = scan(&path, api_key);
        assert_eq!(scanned.occurrences.len(), 20_000);
        assert!(scanned.rewritten.unwrap().len() < path.len());
    }
}
