//! The endpoint usage metering counts a request under: the name of the Envoy route that
//! served it, chosen by the operator (bounded, unlike the raw path). The gateway counts
//! under these names and keysync stores and reports them, so both read the rules here:
//! what a name may be, the two reserved names, and how many distinct endpoints one
//! gateway may report.

/// The request header in which Envoy hands the route's name to the filter
/// (`usage_endpoints: "header"`): a header-mutation filter removes any value a client
/// sent, on every request, and its per-route configuration sets the route's name
/// (`envoy/render.py` renders both).
pub const ENDPOINT_HEADER: &str = "x-keysync-endpoint";

/// A request whose route has no name (or metering without endpoints).
pub const NO_NAME: &str = "-";

/// A request whose route name could not be counted as itself: not a usable name (see
/// [`is_name`]), or a name beyond the gateway's bound on distinct endpoints. Never a
/// valid name itself (parentheses), so no route can be mistaken for it.
pub const OTHER: &str = "(other)";

/// The longest name counted as itself.
pub const MAX_NAME_LEN: usize = 64;

/// Distinct named endpoints a gateway counts unless configured otherwise
/// (`usage_max_endpoints`); the next ones count as [`OTHER`].
pub const DEFAULT_MAX_ENDPOINTS: usize = 100;

/// The most a gateway may be configured to count, and so the most distinct named
/// endpoints keysync takes in one report (besides [`NO_NAME`] and [`OTHER`]): a
/// misconfigured route table cannot multiply the rollup's rows beyond it.
pub const MAX_ENDPOINTS: usize = 1000;

/// Whether `name` is counted as itself: 1 to [`MAX_NAME_LEN`] characters among ASCII
/// letters, digits and `.`, `_`, `:`, `/`, `-`. Route names are the operator's; these
/// stay readable in a table and safe in any log line.
pub fn is_name(name: &[u8]) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

/// Whether `endpoint` may appear in a usage report: a name, [`NO_NAME`] or [`OTHER`].
pub fn is_reported(endpoint: &str) -> bool {
    endpoint == OTHER || is_name(endpoint.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_plain_words() {
        for good in ["orders", "search-v2", "api.orders:list", "a/b_c", "-", "x"] {
            assert!(is_name(good.as_bytes()), "{good}");
            assert!(is_reported(good), "{good}");
        }
        let longest = "a".repeat(MAX_NAME_LEN);
        assert!(is_name(longest.as_bytes()));
        for bad in [
            "".to_string(),
            "a".repeat(MAX_NAME_LEN + 1),
            "two words".into(),
            "quote\"".into(),
            "new\nline".into(),
            "é".into(),
            "*".into(),
            OTHER.into(),
        ] {
            assert!(!is_name(bad.as_bytes()), "{bad:?}");
        }
        assert!(!is_name(b"\xff"));
        assert!(
            is_reported(OTHER),
            "reserved, reported, never a route's own"
        );
        assert!(is_reported(NO_NAME));
        assert!(!is_reported(""));
    }
}
