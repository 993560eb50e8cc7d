//! Where a request's API key may be: the configured credential sources, in order
//! (`credentials` in the filter's configuration, `CREDENTIALS` for keysync's ext_authz
//! mode), and the one decision both enforcers share: which key a request offers, and
//! what must be taken off it before it goes upstream.
//!
//! Each source is a header (optionally with the `Bearer` scheme), a query parameter or a
//! cookie. The first source present decides. When that is a header, nothing else is read:
//! a request keyed in a header pays nothing for query or cookie sources (their carriers,
//! `:path` and `Cookie`, are not even read; list them first to have every request checked).
//! When it is a query parameter or a cookie, every later source is read too: any other
//! credential must be the same key (or the request is refused as invalid), and all of them
//! are stripped. Query and cookie values are percent-decoded once.

mod cookie;
mod percent;
mod query;

use crate::credential::{self, MAX_KEY_LEN};
use serde::Deserialize;

/// The request's path, the carrier of query sources, as Envoy names it.
pub const PATH: &str = ":path";
/// The carrier of cookie sources.
pub const COOKIE: &str = "cookie";

/// At most this many sources: a request reads at most this many carriers.
pub const MAX_SOURCES: usize = 8;
const MAX_NAME_LEN: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// A request header (its name in lower case); `bearer`: the value is
    /// `Bearer <key>` (scheme case-insensitive) and other schemes are not a key.
    Header {
        name: String,
        bearer: bool,
    },
    Query(String),
    Cookie(String),
}

/// One source as written in the configuration: exactly one of `header`, `query` and
/// `cookie`; `scheme` (only `"Bearer"`) with `header` only.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub header: Option<String>,
    pub scheme: Option<String>,
    pub query: Option<String>,
    pub cookie: Option<String>,
}

/// The configured sources, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialSources {
    sources: Vec<CredentialSource>,
    /// Whether any source is a query parameter or a cookie (the default has neither).
    beyond_headers: bool,
    /// For each source, what follows it: once a header there holds the key, the walk
    /// stops at once unless a later header has a scheme (and must be read to know
    /// whether it is a credential), so the sources after it cost nothing.
    after: Vec<After>,
}

/// The sources after one: the scheme-less headers among them (removed unread, one bit
/// each) and whether any header has a scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct After {
    blind: u16,
    schemed: bool,
}

impl Default for CredentialSources {
    /// The contract's own: `Authorization: Bearer <key>`, then `x-api-key`.
    fn default() -> Self {
        CredentialSources::of(vec![
            CredentialSource::Header {
                name: "authorization".into(),
                bearer: true,
            },
            CredentialSource::Header {
                name: "x-api-key".into(),
                bearer: false,
            },
        ])
    }
}

impl CredentialSources {
    /// Validates `raw`; the error says which entry is wrong and why.
    pub fn new(raw: &[RawSource]) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > MAX_SOURCES {
            return Err(format!(
                "credentials must list between 1 and {MAX_SOURCES} sources, not {}",
                raw.len()
            ));
        }
        let mut sources = Vec::with_capacity(raw.len());
        for (index, entry) in raw.iter().enumerate() {
            let source = parse_source(entry).map_err(|e| format!("credentials[{index}]: {e}"))?;
            if sources.contains(&source) {
                return Err(format!("credentials[{index}]: listed twice"));
            }
            if let CredentialSource::Header { name, .. } = &source {
                if sources.iter().any(|other| {
                    matches!(other, CredentialSource::Header { name: other, .. } if other == name)
                }) {
                    return Err(format!("credentials[{index}]: header {name:?} listed twice"));
                }
            }
            sources.push(source);
        }
        Ok(CredentialSources::of(sources))
    }

    fn of(sources: Vec<CredentialSource>) -> Self {
        let beyond_headers = sources
            .iter()
            .any(|source| !matches!(source, CredentialSource::Header { .. }));
        let after = (0..sources.len())
            .map(|index| {
                let mut after = After::default();
                for (later, source) in sources.iter().enumerate().skip(index + 1) {
                    match source {
                        CredentialSource::Header { bearer: false, .. } => after.blind |= 1 << later,
                        CredentialSource::Header { bearer: true, .. } => after.schemed = true,
                        _ => {}
                    }
                }
                after
            })
            .collect();
        CredentialSources {
            sources,
            beyond_headers,
            after,
        }
    }

    pub fn sources(&self) -> &[CredentialSource] {
        &self.sources
    }

    /// Finds the request's key. `read` gives a request header's value (`:path` and
    /// `cookie` included; every `Cookie` line, joined with `; `: a credential in a second
    /// line must not slip through); it is called at most once for each carrier, and only for the
    /// carriers the decision needs.
    pub fn extract(&self, mut read: impl FnMut(&str) -> Option<Vec<u8>>) -> Extraction {
        let mut state = Walk::default();
        for (index, source) in self.sources.iter().enumerate() {
            if let Some(winner) = state.winner {
                let winner_is_header = matches!(
                    self.sources.get(winner),
                    Some(CredentialSource::Header { .. })
                );
                match source {
                    // A request keyed in a header reads nothing for the new sources.
                    CredentialSource::Query(_) | CredentialSource::Cookie(_)
                        if winner_is_header =>
                    {
                        continue
                    }
                    // Removed unread: a header that only ever holds a key.
                    CredentialSource::Header { bearer: false, .. } if winner_is_header => {
                        state.strip.headers |= 1 << index;
                        continue;
                    }
                    _ => {}
                }
            }
            match source {
                CredentialSource::Header { name, bearer } => {
                    let Some(value) = read(name) else { continue };
                    let offered = if *bearer {
                        if credential::authorization_is_credential(&value) {
                            state.strip.headers |= 1 << index;
                        }
                        credential::bearer_token(&value)
                    } else {
                        state.strip.headers |= 1 << index;
                        Some(value.as_slice())
                    };
                    if let Some(token) = offered.filter(|token| !token.is_empty()) {
                        state.offer(index, Some(token));
                    }
                    if state.winner == Some(index) {
                        let after = self.after.get(index).copied().unwrap_or_default();
                        state.strip.headers |= after.blind;
                        if !after.schemed {
                            break;
                        }
                    }
                }
                CredentialSource::Query(_) => {
                    if state.path_read {
                        continue;
                    }
                    state.path_read = true;
                    let Some(path) = read(PATH) else { continue };
                    let scanned = query::scan(&path, |name| self.query_source(name));
                    state.offer_all(scanned.occurrences);
                    if let Some(path) = scanned.rewritten {
                        state.strip.rewritten().path = Some(to_text(path, &mut state.unstrippable));
                    }
                }
                CredentialSource::Cookie(_) => {
                    if state.cookie_read {
                        continue;
                    }
                    state.cookie_read = true;
                    let Some(header) = read(COOKIE) else { continue };
                    let scanned = cookie::scan(&header, |name| self.cookie_source(name));
                    state.offer_all(scanned.occurrences);
                    if let Some(header) = scanned.rewritten {
                        let header = to_text(header, &mut state.unstrippable);
                        state.strip.rewritten().cookie =
                            Some(Some(header).filter(|h| !h.is_empty()));
                    }
                }
            }
        }
        state.finish()
    }

    /// Whether any source is a query parameter or a cookie.
    pub fn beyond_headers(&self) -> bool {
        self.beyond_headers
    }

    /// The header names of the sources `strip` removes.
    pub fn headers_to_remove<'a>(&'a self, strip: &'a Strip) -> impl Iterator<Item = &'a str> {
        self.sources
            .iter()
            .enumerate()
            .filter(move |(index, _)| strip.headers & (1 << index) != 0)
            .filter_map(|(_, source)| match source {
                CredentialSource::Header { name, .. } => Some(name.as_str()),
                _ => None,
            })
    }

    fn query_source(&self, name: &[u8]) -> Option<usize> {
        self.sources.iter().position(|source| {
            matches!(source, CredentialSource::Query(wanted) if percent::decodes_to(name, wanted.as_bytes()))
        })
    }

    fn cookie_source(&self, name: &[u8]) -> Option<usize> {
        self.sources.iter().position(
            |source| matches!(source, CredentialSource::Cookie(wanted) if name == wanted.as_bytes()),
        )
    }
}

/// A carrier rewritten to bytes that are not UTF-8 cannot be written back byte for byte
/// through the host's string API: a key there is refused as malformed, and the carrier
/// written back lossily (the credential taken out all the same) should the request be
/// forwarded anyway (a public path).
fn to_text(bytes: Vec<u8>, unstrippable: &mut bool) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| {
        *unstrippable = true;
        String::from_utf8_lossy(e.as_bytes()).into_owned()
    })
}

fn parse_source(raw: &RawSource) -> Result<CredentialSource, String> {
    if raw.scheme.is_some() && raw.header.is_none() {
        return Err("scheme goes with header only".into());
    }
    let source = match (&raw.header, &raw.query, &raw.cookie) {
        (Some(name), None, None) => {
            let bearer = match raw.scheme.as_deref() {
                None => false,
                Some(scheme) if scheme.eq_ignore_ascii_case("bearer") => true,
                Some(other) => {
                    return Err(format!("scheme must be \"Bearer\", not {other:?}"));
                }
            };
            check_name("header", name, |b| {
                b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
            })?;
            CredentialSource::Header {
                name: name.to_ascii_lowercase(),
                bearer,
            }
        }
        (None, Some(name), None) => {
            check_name("query", name, is_plain_name_byte)?;
            CredentialSource::Query(name.clone())
        }
        (None, None, Some(name)) => {
            check_name("cookie", name, is_plain_name_byte)?;
            CredentialSource::Cookie(name.clone())
        }
        _ => {
            return Err(
                "each source is exactly one of {\"header\": NAME}, {\"query\": NAME} or {\"cookie\": NAME}"
                    .into(),
            )
        }
    };
    Ok(source)
}

fn is_plain_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-_.".contains(&byte)
}

fn check_name(kind: &str, name: &str, allowed: impl Fn(u8) -> bool) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(allowed) {
        return Err(format!(
            "{kind} name {name:?} must be 1 to {MAX_NAME_LEN} characters of [A-Za-z0-9._-]{}",
            if kind == "header" {
                " (or another token character)"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// What a request offered.
#[derive(Debug, PartialEq, Eq)]
pub enum Offered {
    /// No source holds a key (absent or empty everywhere).
    Missing,
    /// Something was offered that cannot be a key (junk, a broken `%` escape, a carrier
    /// that could not be rewritten).
    Malformed,
    /// Two places hold different keys.
    Disagreeing,
    Key(Vec<u8>),
}

/// What must be taken off the request before it goes upstream. Small (a request keeps
/// one): the rewritten carriers, rare, are boxed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Strip {
    /// The header sources to remove, one bit per source index
    /// ([`CredentialSources::headers_to_remove`]).
    pub headers: u16,
    pub rewritten: Option<Box<Rewritten>>,
}

/// The carriers a query or cookie credential was taken out of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// The new `:path`, without the credential parameters.
    pub path: Option<String>,
    /// The new `Cookie` header without the credential cookies; `Some(None)`: none is
    /// left, remove the header.
    pub cookie: Option<Option<String>>,
}

impl Strip {
    /// The new `:path`, when a credential parameter was taken out.
    pub fn path(&self) -> Option<&str> {
        self.rewritten.as_ref()?.path.as_deref()
    }

    /// The new `Cookie` (`Some(None)`: remove it), when a credential cookie was taken out.
    pub fn cookie(&self) -> Option<Option<&str>> {
        self.rewritten
            .as_ref()?
            .cookie
            .as_ref()
            .map(Option::as_deref)
    }

    fn rewritten(&mut self) -> &mut Rewritten {
        self.rewritten.get_or_insert_with(Box::default)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Extraction {
    pub offered: Offered,
    pub strip: Strip,
}

/// One place a query or cookie source was found: its source, and its value decoded
/// (`None`: a broken escape).
#[derive(Debug, PartialEq, Eq)]
pub struct Occurrence {
    pub source: usize,
    pub value: Option<Vec<u8>>,
}

#[derive(Default)]
struct Walk {
    winner: Option<usize>,
    key: Option<Vec<u8>>,
    malformed: bool,
    disagreeing: bool,
    unstrippable: bool,
    path_read: bool,
    cookie_read: bool,
    strip: Strip,
}

impl Walk {
    /// A source offered `value` (`None`: one that cannot be a key).
    fn offer(&mut self, source: usize, value: Option<&[u8]>) {
        let Some(value) = value else {
            self.malformed = true;
            self.winner.get_or_insert(source);
            return;
        };
        if value.is_empty() {
            return;
        }
        match &self.key {
            Some(key) if key.as_slice() != value => self.disagreeing = true,
            Some(_) => {}
            None if self.winner.is_none() => {
                self.winner = Some(source);
                self.key = Some(value.to_vec());
            }
            // The first present source held junk: later keys do not rescue it.
            None => {}
        }
    }

    fn offer_all(&mut self, occurrences: Vec<Occurrence>) {
        for occurrence in occurrences {
            self.offer(occurrence.source, occurrence.value.as_deref());
        }
    }

    fn finish(self) -> Extraction {
        let offered = if self.disagreeing {
            Offered::Disagreeing
        } else if self.malformed || self.unstrippable {
            Offered::Malformed
        } else {
            match self.key {
                Some(key) if key.len() <= MAX_KEY_LEN && credential::is_well_formed(&key) => {
                    Offered::Key(key)
                }
                Some(_) => Offered::Malformed,
                None => Offered::Missing,
            }
        };
        Extraction {
            offered,
            strip: self.strip,
        }
    }
}

#[cfg(test)]
mod tests;
