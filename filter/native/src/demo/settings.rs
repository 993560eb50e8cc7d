//! The demonstration's settings: `name=value` lines (Envoy passes a `StringValue` unwrapped).

/// The value of `name` in `settings`, if present.
pub fn setting<'a>(settings: &'a [u8], name: &str) -> Option<&'a str> {
    std::str::from_utf8(settings)
        .ok()?
        .lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_value_by_name() {
        let settings = b"api_key = sk_test_demo\ncluster=echo\n";
        assert_eq!(setting(settings, "api_key"), Some("sk_test_demo"));
        assert_eq!(setting(settings, "cluster"), Some("echo"));
        assert_eq!(setting(settings, "missing"), None);
        assert_eq!(setting(&[0xff, b'='], "x"), None);
    }
}
