//! A leak report's body and keysync's answer, in the shapes of GitHub's secret-scanning
//! partner program: a JSON array of `{token, type, url, source}` in, a JSON array of
//! `{token_hash, token_type, label}` out. The answer names each token by its SHA-256
//! (hex), never by the token itself.

use std::fmt;

use keysync_contract::key_hash::KeyHash;
use serde::{Deserialize, Serialize};

/// Most tokens one report may carry; the body limit usually binds first.
pub const MAX_TOKENS: usize = 1000;

/// One match the scanner found. Fields the program may add later are ignored.
#[derive(Deserialize)]
pub struct ReportedToken {
    pub token: String,
    #[serde(rename = "type", default)]
    pub token_type: String,
    /// Where it was found (public; may be empty).
    #[serde(default)]
    pub url: String,
    /// What kind of place (`content`, `commit`, `npm`, ...).
    #[serde(default)]
    pub source: String,
}

// The token is a live key until proven otherwise: never in `{:?}` output.
impl fmt::Debug for ReportedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportedToken")
            .field("type", &self.token_type)
            .field("url", &self.url)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Why a body is not a report.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("not a JSON array of {{token, type, url, source}}: {0}")]
    Json(String),
    #[error("more than {MAX_TOKENS} tokens in one report")]
    TooMany,
}

/// Parses a report body. The error never quotes the body (it holds tokens).
pub fn parse(body: &[u8]) -> Result<Vec<ReportedToken>, ReportError> {
    let tokens: Vec<ReportedToken> = serde_json::from_slice(body).map_err(|error| {
        // serde_json's messages name the position and the expectation, not the input.
        ReportError::Json(format!(
            "{} at line {} column {}",
            describe(error.classify()),
            error.line(),
            error.column()
        ))
    })?;
    if tokens.len() > MAX_TOKENS {
        return Err(ReportError::TooMany);
    }
    Ok(tokens)
}

fn describe(category: serde_json::error::Category) -> &'static str {
    match category {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "malformed JSON",
        serde_json::error::Category::Data => "unexpected shape",
        serde_json::error::Category::Eof => "truncated JSON",
    }
}

/// Whether a reported token is one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// A key keysync issued (whatever its state now).
    TruePositive,
    /// Not a key keysync ever issued.
    FalsePositive,
}

/// The answer for one token.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct TokenLabel {
    /// SHA-256 of the token, hex: the program accepts it in place of the token.
    pub token_hash: String,
    pub token_type: String,
    pub label: Label,
}

impl TokenLabel {
    pub fn new(token: &ReportedToken, label: Label) -> TokenLabel {
        TokenLabel {
            token_hash: hex::encode(KeyHash::of_key(token.token.as_bytes()).as_bytes()),
            token_type: token.token_type.clone(),
            label,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_read_and_answered_without_the_token() {
        let body = br#"[
            {"token":"sk_live_abc","type":"keysync_api_key","url":"https://github.com/o/r/blob/x/a.env","source":"content","extra":1},
            {"token":"sk_test_def","type":"keysync_api_key"}
        ]"#;
        let tokens = parse(body).unwrap();
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].source, "content");
        assert_eq!(tokens[1].url, "");
        assert!(!format!("{tokens:?}").contains("sk_live_abc"));
        let answer =
            serde_json::to_value([TokenLabel::new(&tokens[0], Label::TruePositive)]).unwrap();
        assert_eq!(
            answer,
            serde_json::json!([{
                "token_hash": hex::encode(KeyHash::of_key(b"sk_live_abc").as_bytes()),
                "token_type": "keysync_api_key",
                "label": "true_positive",
            }])
        );
        assert!(!answer.to_string().contains("sk_live_abc"));
    }

    #[test]
    fn a_body_that_is_not_a_report_is_refused_without_quoting_it() {
        for body in [
            &br#"{"token":"sk_live_secret"}"#[..],
            br#"[{"type":"x"}]"#,
            br#"[{"token":"sk_live_secret""#,
            b"",
        ] {
            let error = parse(body).unwrap_err();
            assert!(!error.to_string().contains("secret"), "{error}");
        }
        assert_eq!(parse(b"[]").unwrap().len(), 0);
        let many = format!("[{}]", vec![r#"{"token":"t"}"#; MAX_TOKENS + 1].join(","));
        assert_eq!(parse(many.as_bytes()).unwrap_err(), ReportError::TooMany);
    }
}
