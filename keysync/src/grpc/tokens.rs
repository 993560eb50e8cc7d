//! The gRPC tokens keysync accepts, each with its [`Rights`], from up to three places at
//! once, so a rotation never has a moment where gateways and keysync disagree:
//!
//! - `KEYSYNC_GRPC_TOKEN` or `KEYSYNC_GRPC_TOKEN_FILE`: one token, gateway rights (the
//!   token gateways send);
//! - `KEYSYNC_GRPC_TOKENS_FILE`: any number, one a line, `<token>` (gateway rights) or
//!   `<token> read-only`; blank lines and lines starting with `#` are ignored.
//!
//! Both files are read again every [`RELOAD_PERIOD`] ([`crate::watched_file`]): a
//! Kubernetes Secret update reaches keysync without a restart. Beside another token, a
//! tokens file that is not there yet counts as empty (a Secret's key added later
//! appears in its volume, and is read then). A file that no longer
//! parses keeps the tokens in use and says so in one log line, which names the line
//! and never a token. A call's token is compared with every accepted one by SHA-256 in
//! constant time ([`crate::grpc::token`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use subtle::Choice;

use crate::grpc::rights::Rights;
use crate::grpc::token::{GrpcToken, PresentedToken, Refusal};
use crate::watched_file::{self, Described, Naming, WatchedFile};

pub const GRPC_TOKEN: &str = "KEYSYNC_GRPC_TOKEN";
pub const GRPC_TOKEN_FILE: &str = "KEYSYNC_GRPC_TOKEN_FILE";
pub const GRPC_TOKENS_FILE: &str = "KEYSYNC_GRPC_TOKENS_FILE";

/// How often the token files are read again.
pub const RELOAD_PERIOD: Duration = Duration::from_secs(5);

/// The word after a token that makes it read-only.
const READ_ONLY: &str = "read-only";

/// Tokens and their rights: the contents of a tokens file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AcceptedTokens {
    tokens: Vec<(GrpcToken, Rights)>,
}

impl AcceptedTokens {
    /// A tokens file's text. `may_be_empty`: whether a file without tokens is fine
    /// (another source gives one); otherwise it would lock every gateway out, and is
    /// refused. Errors name the line, never the token.
    pub fn parse(text: &str, may_be_empty: bool) -> Result<Self, String> {
        let mut tokens: Vec<(GrpcToken, Rights)> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(token), rights, None) = (words.next(), words.next(), words.next()) else {
                return Err(format!(
                    "line {number}: expected `<token>` or `<token> {READ_ONLY}`"
                ));
            };
            let rights = match rights {
                None => Rights::Gateway,
                Some(READ_ONLY) => Rights::ReadOnly,
                Some(_) => {
                    return Err(format!(
                        "line {number}: expected `<token>` or `<token> {READ_ONLY}` (a token \
                         holds no spaces)"
                    ))
                }
            };
            let token =
                GrpcToken::new(token).map_err(|reason| format!("line {number}: {reason}"))?;
            if tokens.iter().any(|(seen, _)| *seen == token) {
                return Err(format!("line {number}: a token listed twice"));
            }
            tokens.push((token, rights));
        }
        if tokens.is_empty() && !may_be_empty {
            return Err(format!(
                "no token in it (the only source of tokens: an empty file would refuse \
                 every gateway; set {GRPC_TOKEN_FILE} too, or list a token)"
            ));
        }
        Ok(AcceptedTokens { tokens })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn read_only(&self) -> usize {
        self.tokens
            .iter()
            .filter(|(_, rights)| *rights == Rights::ReadOnly)
            .count()
    }
}

impl Described for AcceptedTokens {
    fn in_use(&self) -> String {
        format!("{} tokens ({} read-only)", self.len(), self.read_only())
    }
}

impl Described for GrpcToken {
    fn in_use(&self) -> String {
        "token".to_owned()
    }

    fn reloaded(&self) -> String {
        "a new token".to_owned()
    }
}

/// The tokens as read at start (`ServeConfig`): what [`GrpcTokens`] begins with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenSettings {
    /// `KEYSYNC_GRPC_TOKEN`.
    pub token: Option<GrpcToken>,
    /// `KEYSYNC_GRPC_TOKEN_FILE` and its token.
    pub token_file: Option<(PathBuf, GrpcToken)>,
    /// `KEYSYNC_GRPC_TOKENS_FILE` and its tokens.
    pub tokens_file: Option<(PathBuf, AcceptedTokens)>,
}

impl TokenSettings {
    /// Whether any token is configured (then every call needs one).
    pub fn any(&self) -> bool {
        self.token.is_some() || self.token_file.is_some() || self.tokens_file.is_some()
    }

    /// How many tokens are accepted at start, and how many of them are read-only.
    pub fn count(&self) -> (usize, usize) {
        let single = usize::from(self.token.is_some()) + usize::from(self.token_file.is_some());
        let (listed, read_only) = self
            .tokens_file
            .as_ref()
            .map_or((0, 0), |(_, tokens)| (tokens.len(), tokens.read_only()));
        (single + listed, read_only)
    }
}

/// The contents of `KEYSYNC_GRPC_TOKEN_FILE`: one token, without the line break `echo`
/// leaves.
pub fn parse_token_file(contents: &[u8]) -> Result<GrpcToken, String> {
    let text = std::str::from_utf8(contents).map_err(|_| "not UTF-8".to_owned())?;
    GrpcToken::new(text.trim_end_matches(['\n', '\r']))
}

/// The tokens accepted now; cheap to share.
#[derive(Debug)]
pub struct GrpcTokens {
    token: Option<GrpcToken>,
    token_file: Option<Arc<WatchedFile<GrpcToken>>>,
    tokens_file: Option<Arc<WatchedFile<AcceptedTokens>>>,
}

impl GrpcTokens {
    /// The tokens of `settings`; their files are read again once [`GrpcTokens::watch`]
    /// runs.
    pub fn new(settings: TokenSettings) -> Self {
        let naming = |variable| Naming {
            subsystem: "grpc",
            noun: "tokens",
            variable,
        };
        let alone = settings.token.is_none() && settings.token_file.is_none();
        GrpcTokens {
            token: settings.token,
            token_file: settings.token_file.map(|(path, token)| {
                Arc::new(WatchedFile::new(
                    path,
                    naming(GRPC_TOKEN_FILE),
                    token,
                    Box::new(parse_token_file),
                ))
            }),
            tokens_file: settings.tokens_file.map(|(path, tokens)| {
                Arc::new(WatchedFile::new(
                    path,
                    naming(GRPC_TOKENS_FILE),
                    tokens,
                    Box::new(move |contents| {
                        let text =
                            std::str::from_utf8(contents).map_err(|_| "not UTF-8".to_owned())?;
                        AcceptedTokens::parse(text, !alone)
                    }),
                ))
            }),
        }
    }

    /// Reads the files again every `period`, for as long as these tokens are in use (on
    /// the current tokio runtime).
    pub fn watch(&self, period: Duration) {
        if let Some(file) = &self.token_file {
            tokio::spawn(watched_file::watch(Arc::downgrade(file), period));
        }
        if let Some(file) = &self.tokens_file {
            tokio::spawn(watched_file::watch(Arc::downgrade(file), period));
        }
    }

    /// The rights of the token in the `authorization` metadata's value (`None` when
    /// absent). Every accepted token is compared, whichever matches; when the same token
    /// is accepted twice, the larger rights count.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<Rights, Refusal> {
        let presented = PresentedToken::from_authorization(authorization)?;
        let mut gateway = Choice::from(0);
        let mut read_only = Choice::from(0);
        let mut compare = |token: &GrpcToken, rights: Rights| {
            let matched = token.matches(&presented);
            match rights {
                Rights::Gateway => gateway |= matched,
                Rights::ReadOnly => read_only |= matched,
            }
        };
        if let Some(token) = &self.token {
            compare(token, Rights::Gateway);
        }
        if let Some(file) = &self.token_file {
            compare(&file.current(), Rights::Gateway);
        }
        if let Some(file) = &self.tokens_file {
            for (token, rights) in &file.current().tokens {
                compare(token, *rights);
            }
        }
        if bool::from(gateway) {
            Ok(Rights::Gateway)
        } else if bool::from(read_only) {
            Ok(Rights::ReadOnly)
        } else {
            Err(Refusal::Wrong)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watched_file::{written, Reload};

    const GATEWAY: &str = "gateway-0123456789abcdef";
    const NEXT: &str = "next-gateway-0123456789abcdef";
    const READER: &str = "reader-0123456789abcdef";

    fn bearer(token: &str) -> Vec<u8> {
        format!("Bearer {token}").into_bytes()
    }

    fn token(text: &str) -> GrpcToken {
        GrpcToken::new(text).unwrap()
    }

    #[test]
    fn a_tokens_file_is_tokens_with_their_rights_one_a_line() {
        let text = format!("# gateways\n{GATEWAY}\n\n  {READER} read-only  \r\n# {NEXT}\n{NEXT}\n");
        let tokens = AcceptedTokens::parse(&text, false).unwrap();
        assert_eq!(
            tokens.tokens,
            vec![
                (token(GATEWAY), Rights::Gateway),
                (token(READER), Rights::ReadOnly),
                (token(NEXT), Rights::Gateway),
            ]
        );
        assert_eq!(tokens.in_use(), "3 tokens (1 read-only)");
        assert_eq!(
            AcceptedTokens::parse("# none yet\n\n", true).unwrap(),
            AcceptedTokens::default()
        );
    }

    #[test]
    fn a_bad_tokens_file_says_which_line_without_the_token() {
        for (text, expected) in [
            (
                format!("{GATEWAY}\n{READER} readonly\n"),
                "line 2: expected",
            ),
            (format!("{GATEWAY} read-only extra\n"), "line 1: expected"),
            (
                "\nshort\n".to_owned(),
                "line 2: a token must be at least 16",
            ),
            (
                format!("{GATEWAY}\n{GATEWAY} read-only\n"),
                "line 2: a token listed twice",
            ),
            ("# nothing\n".to_owned(), "no token in it"),
            (String::new(), "no token in it"),
        ] {
            let error = AcceptedTokens::parse(&text, false).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
            for secret in [GATEWAY, READER, "short"] {
                assert!(!error.contains(secret), "{error}");
            }
        }
    }

    #[test]
    fn every_source_is_accepted_with_its_rights() {
        let tokens = GrpcTokens::new(TokenSettings {
            token: Some(token(GATEWAY)),
            token_file: None,
            tokens_file: Some((
                PathBuf::from("/nonexistent"),
                AcceptedTokens::parse(&format!("{NEXT}\n{READER} read-only\n"), true).unwrap(),
            )),
        });
        assert_eq!(tokens.check(Some(&bearer(GATEWAY))), Ok(Rights::Gateway));
        assert_eq!(tokens.check(Some(&bearer(NEXT))), Ok(Rights::Gateway));
        assert_eq!(tokens.check(Some(&bearer(READER))), Ok(Rights::ReadOnly));
        assert_eq!(
            tokens.check(Some(&bearer("someone-else-0123456789"))),
            Err(Refusal::Wrong)
        );
        assert_eq!(tokens.check(None), Err(Refusal::Missing));
        // The same token as a gateway's and as read-only: a gateway's.
        let twice = GrpcTokens::new(TokenSettings {
            token: Some(token(READER)),
            token_file: None,
            tokens_file: Some((
                PathBuf::from("/nonexistent"),
                AcceptedTokens::parse(&format!("{READER} read-only\n"), true).unwrap(),
            )),
        });
        assert_eq!(twice.check(Some(&bearer(READER))), Ok(Rights::Gateway));
    }

    #[tokio::test]
    async fn both_files_are_read_again_and_a_bad_one_keeps_its_tokens() {
        let dir = std::env::temp_dir().join(format!("keysync-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (single, listed) = (dir.join("token"), dir.join("accepted-tokens"));
        written(&single, &format!("{GATEWAY}\n"));
        written(&listed, "");
        let tokens = GrpcTokens::new(TokenSettings {
            token: None,
            token_file: Some((single.clone(), token(GATEWAY))),
            tokens_file: Some((listed.clone(), AcceptedTokens::default())),
        });
        let reload = || async {
            (
                tokens.token_file.as_ref().unwrap().reload().await,
                tokens.tokens_file.as_ref().unwrap().reload().await,
            )
        };
        // Step 1 of a rotation: the next token accepted too.
        written(&listed, &format!("{NEXT}\n"));
        assert_eq!(reload().await, (Reload::Unchanged, Reload::Reloaded));
        assert_eq!(tokens.check(Some(&bearer(NEXT))), Ok(Rights::Gateway));
        assert_eq!(tokens.check(Some(&bearer(GATEWAY))), Ok(Rights::Gateway));
        // Step 2: the next token is the one gateways send, the old one still accepted.
        written(&single, &format!("{NEXT}\n"));
        written(&listed, &format!("{GATEWAY}\n"));
        assert_eq!(reload().await, (Reload::Reloaded, Reload::Reloaded));
        assert_eq!(tokens.check(Some(&bearer(GATEWAY))), Ok(Rights::Gateway));
        // A bad tokens file: the tokens in use stay.
        written(&listed, "oops\n");
        assert_eq!(reload().await, (Reload::Unchanged, Reload::Refused));
        assert_eq!(tokens.check(Some(&bearer(GATEWAY))), Ok(Rights::Gateway));
        // Step 3: the old token dropped.
        written(&listed, "");
        assert_eq!(reload().await, (Reload::Unchanged, Reload::Reloaded));
        assert_eq!(tokens.check(Some(&bearer(GATEWAY))), Err(Refusal::Wrong));
        assert_eq!(tokens.check(Some(&bearer(NEXT))), Ok(Rights::Gateway));
        // An emptied token file is refused: the token in use stays.
        written(&single, "");
        assert_eq!(reload().await, (Reload::Refused, Reload::Unchanged));
        assert_eq!(tokens.check(Some(&bearer(NEXT))), Ok(Rights::Gateway));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_tokens_file_that_appears_later_is_read_then() {
        let dir = std::env::temp_dir().join(format!("keysync-tokens-later-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let listed = dir.join("accepted-tokens");
        let tokens = GrpcTokens::new(TokenSettings {
            token: Some(token(GATEWAY)),
            token_file: None,
            tokens_file: Some((listed.clone(), AcceptedTokens::default())),
        });
        let file = tokens.tokens_file.as_ref().unwrap();
        assert_eq!(file.reload().await, Reload::Refused, "not there yet");
        written(&listed, &format!("{NEXT}\n"));
        assert_eq!(file.reload().await, Reload::Reloaded);
        assert_eq!(tokens.check(Some(&bearer(NEXT))), Ok(Rights::Gateway));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_tokens_file_alone_may_not_become_empty() {
        let dir = std::env::temp_dir().join(format!("keysync-tokens-alone-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let listed = dir.join("accepted-tokens");
        written(&listed, &format!("{GATEWAY}\n"));
        let start = AcceptedTokens::parse(&format!("{GATEWAY}\n"), false).unwrap();
        let tokens = GrpcTokens::new(TokenSettings {
            tokens_file: Some((listed.clone(), start)),
            ..TokenSettings::default()
        });
        written(&listed, "# emptied\n");
        let file = tokens.tokens_file.as_ref().unwrap();
        assert_eq!(file.reload().await, Reload::Refused);
        assert_eq!(tokens.check(Some(&bearer(GATEWAY))), Ok(Rights::Gateway));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
