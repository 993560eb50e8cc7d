//! URLs fit for logs and error messages: passwords, in the user-info part or in query
//! parameters, become `***`.

use url::Url;

/// `url` with the user-info password and the value of every query parameter that
/// `is_secret` names replaced by `***`; `None` when it does not parse (unparseable
/// text may still contain a password, so callers show none of it).
pub fn redact(url: &str, is_secret: impl Fn(&str) -> bool) -> Option<String> {
    let mut parsed = Url::parse(url).ok()?;
    if parsed.password().is_some() {
        // Fails only for URLs without an authority, which have no password to hide.
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(name, _)| is_secret(&name)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret(&name) {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    Some(parsed.to_string())
}
