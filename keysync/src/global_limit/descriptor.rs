//! Reading a rate-limit descriptor as Envoy sends it: the entries our gateway
//! configuration fills from two request headers the wasm filter sets.
//!
//! - `keysync_subject`: `org:<uuid>` (the organization's limit, shared by its keys) or
//!   `key:<uuid>` (a key's own limit), a [`Subject`];
//! - `keysync_limit`: `<requests_per_minute>+<burst>`, such as `100+0`, a [`Limit`].
//!
//! Both are spelled by the contract's types (`keysync_contract::{subject, limit}`),
//! which the gateway writes them with.
//!
//! A descriptor without both entries is not ours and is left alone. One with both but a
//! malformed value is refused with a [`DescriptorError`] (the service then leaves it
//! alone too, and says so in the log).
//!
//! Whoever can call the service chooses the limit and the hits, so both are capped at
//! what the gateway can really send: a limit's parts at [`MAX_LIMIT_VALUE`] each (what
//! `keysync orgs set-limit` and `keys set-limit` accept), and the hits one request adds
//! at [`MAX_HITS`]. A descriptor beyond either is refused like a malformed one.

use keysync_contract::limit::{BadLimit, Limit};
use keysync_contract::subject::{BadSubject, Subject};

pub use crate::key_set::limit_columns::MAX_LIMIT_VALUE;

/// Most hits one request may add to a counter (Envoy sends 0, meaning 1, unless a
/// configuration asks for more).
pub const MAX_HITS: u64 = 1000;

/// The descriptor entry naming who is counted.
pub const SUBJECT_ENTRY: &str = "keysync_subject";
/// The descriptor entry carrying the limit.
pub const LIMIT_ENTRY: &str = "keysync_limit";

/// Longest part of a bad value repeated in an error (the values come from request
/// headers, so they are cut and escaped before they reach a log).
const SHOWN_CHARS: usize = 64;

/// A descriptor of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub subject: Subject,
    pub limit: Limit,
}

/// A descriptor that carries our entries with values that cannot be used. The message
/// shows the value (quoted, escaped, cut) and what the contract expects instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    #[error("{SUBJECT_ENTRY} {value} is {expected}")]
    BadSubject { value: String, expected: BadSubject },
    #[error("{LIMIT_ENTRY} {value} is {expected}")]
    BadLimit { value: String, expected: BadLimit },
    #[error("{0} appears more than once")]
    Repeated(&'static str),
    #[error("{LIMIT_ENTRY} {value} is over the largest limit a key can have ({MAX_LIMIT_VALUE}+{MAX_LIMIT_VALUE})")]
    LimitOverCap { value: String },
    #[error("hits_addend {hits} is over the most one request may add ({MAX_HITS})")]
    HitsOverCap { hits: u64 },
}

/// Our descriptor among `entries` (key, value pairs in the order Envoy sent them), or
/// `None` when either of our entries is missing.
pub fn parse<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Option<Descriptor>, DescriptorError> {
    let mut subject = None;
    let mut limit = None;
    for (key, value) in entries {
        let slot = match key {
            SUBJECT_ENTRY => &mut subject,
            LIMIT_ENTRY => &mut limit,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(DescriptorError::Repeated(if key == SUBJECT_ENTRY {
                SUBJECT_ENTRY
            } else {
                LIMIT_ENTRY
            }));
        }
    }
    let (Some(subject), Some(limit)) = (subject, limit) else {
        return Ok(None);
    };
    Ok(Some(Descriptor {
        subject: parse_subject(subject)?,
        limit: parse_limit(limit)?,
    }))
}

/// `org:<uuid>` or `key:<uuid>`, in the contract's spelling ([`Subject`]).
pub fn parse_subject(value: &str) -> Result<Subject, DescriptorError> {
    value
        .parse()
        .map_err(|expected| DescriptorError::BadSubject {
            value: shown(value),
            expected,
        })
}

/// `<requests_per_minute>+<burst>`, in the contract's spelling ([`Limit`]).
pub fn parse_limit(value: &str) -> Result<Limit, DescriptorError> {
    let limit: Limit = value
        .parse()
        .map_err(|expected| DescriptorError::BadLimit {
            value: shown(value),
            expected,
        })?;
    if limit.requests_per_minute > MAX_LIMIT_VALUE || limit.burst > MAX_LIMIT_VALUE {
        return Err(DescriptorError::LimitOverCap {
            value: shown(value),
        });
    }
    Ok(limit)
}

/// The hits a descriptor adds: its own `hits_addend` when set, else the request's; 0
/// means 1 (Envoy leaves the field 0 for a plain request). More than [`MAX_HITS`] is
/// refused.
pub fn hits(descriptor_hits: Option<u64>, request_hits: u32) -> Result<u64, DescriptorError> {
    let hits = descriptor_hits.unwrap_or(u64::from(request_hits)).max(1);
    if hits > MAX_HITS {
        return Err(DescriptorError::HitsOverCap { hits });
    }
    Ok(hits)
}

/// A value as an error may show it: quoted, escaped, and cut to a readable length.
fn shown(value: &str) -> String {
    let mut text: String = value.chars().take(SHOWN_CHARS).collect();
    if text.len() < value.len() {
        text.push_str("...");
    }
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "6f1c1f58-5d7e-4a7e-9d0e-0a1b2c3d4e5f";

    fn parsed(entries: &[(&str, &str)]) -> Result<Option<Descriptor>, DescriptorError> {
        parse(entries.iter().copied())
    }

    #[test]
    fn a_good_descriptor() {
        let descriptor = parsed(&[
            ("generic_key", "keysync"),
            (SUBJECT_ENTRY, &format!("org:{ORG}")),
            (LIMIT_ENTRY, "100+20"),
        ])
        .unwrap()
        .unwrap();
        assert!(matches!(descriptor.subject, Subject::Org(_)));
        assert_eq!(descriptor.subject.to_string(), format!("org:{ORG}"));
        assert_eq!(
            descriptor.limit,
            Limit {
                requests_per_minute: 100,
                burst: 20
            }
        );
        assert_eq!(descriptor.limit.budget(), 120);

        let key = parsed(&[
            (LIMIT_ENTRY, "5+0"),
            (SUBJECT_ENTRY, &format!("key:{}", ORG.to_uppercase())),
        ])
        .unwrap()
        .unwrap();
        assert!(matches!(key.subject, Subject::Key(_)));
        // One subject, one counter: the spelling is canonical.
        assert_eq!(key.subject.to_string(), format!("key:{ORG}"));
        assert_eq!(key.limit.budget(), 5);
    }

    #[test]
    fn missing_entries_mean_not_ours() {
        assert_eq!(parsed(&[]).unwrap(), None);
        assert_eq!(parsed(&[("generic_key", "x")]).unwrap(), None);
        assert_eq!(parsed(&[(SUBJECT_ENTRY, "org:nonsense")]).unwrap(), None);
        assert_eq!(parsed(&[(LIMIT_ENTRY, "100+0")]).unwrap(), None);
    }

    #[test]
    fn garbage_subjects_are_refused() {
        for subject in [
            "org:",
            "org",
            ":6f1c1f58-5d7e-4a7e-9d0e-0a1b2c3d4e5f",
            "team:6f1c1f58-5d7e-4a7e-9d0e-0a1b2c3d4e5f",
            "ORG:6f1c1f58-5d7e-4a7e-9d0e-0a1b2c3d4e5f",
            "org:6f1c1f585d7e4a7e9d0e0a1b2c3d4e5f",
            "org:{6f1c1f58-5d7e-4a7e-9d0e-0a1b2c3d4e5}",
            "org:6f1c1f58-5d7e-4a7e-9d0e-0a1b2c3d4e5g",
            "org: 6f1c1f58-5d7e-4a7e-9d0e-0a1b2c3d4e5",
            "",
        ] {
            let error = parsed(&[(SUBJECT_ENTRY, subject), (LIMIT_ENTRY, "1+0")]).unwrap_err();
            assert!(
                matches!(error, DescriptorError::BadSubject { .. }),
                "{subject:?}: {error}"
            );
        }
    }

    #[test]
    fn garbage_limits_are_refused() {
        for limit in [
            "100+", "+5", "100", "", "0+5", "-1+0", "1+-1", "+1+0", "1++0", "1+0+0", " 1+0",
            "1+0 ", "1.5+0", "ten+0", "1e3+0",
        ] {
            let error = parsed(&[(SUBJECT_ENTRY, &format!("org:{ORG}")), (LIMIT_ENTRY, limit)])
                .unwrap_err();
            assert!(
                matches!(error, DescriptorError::BadLimit { .. }),
                "{limit:?}: {error}"
            );
        }
    }

    #[test]
    fn overflowing_limits_are_refused() {
        assert!(parse_limit("4294967296+0").is_err());
        assert!(parse_limit("99999999999999999999+0").is_err());
        assert!(parse_limit("4294967295+1").is_err());
        assert!(parse_limit("2147483648+2147483648").is_err());
    }

    #[test]
    fn limits_no_key_can_have_are_refused() {
        let largest = parse_limit("2147483647+2147483647").unwrap();
        assert_eq!(largest.budget(), u32::MAX - 1);
        for value in ["2147483648+0", "1+2147483648", "4294967295+0"] {
            let error = parse_limit(value).unwrap_err();
            assert!(
                matches!(error, DescriptorError::LimitOverCap { .. }),
                "{value}: {error}"
            );
        }
        assert_eq!(
            parse_limit("2147483648+0").unwrap_err().to_string(),
            "keysync_limit \"2147483648+0\" is over the largest limit a key can have \
             (2147483647+2147483647)"
        );
    }

    #[test]
    fn hits_are_capped() {
        assert_eq!(hits(None, 0), Ok(1));
        assert_eq!(hits(Some(0), 9), Ok(1));
        assert_eq!(hits(None, 7), Ok(7));
        assert_eq!(hits(Some(2), 50), Ok(2));
        assert_eq!(hits(Some(MAX_HITS), 0), Ok(MAX_HITS));
        assert_eq!(
            hits(Some(MAX_HITS + 1), 0),
            Err(DescriptorError::HitsOverCap { hits: MAX_HITS + 1 })
        );
        assert_eq!(
            hits(None, u32::MAX),
            Err(DescriptorError::HitsOverCap {
                hits: u64::from(u32::MAX)
            })
        );
    }

    #[test]
    fn repeated_entries_are_refused() {
        let error = parsed(&[
            (SUBJECT_ENTRY, &format!("org:{ORG}")),
            (SUBJECT_ENTRY, &format!("key:{ORG}")),
            (LIMIT_ENTRY, "1+0"),
        ])
        .unwrap_err();
        assert_eq!(error, DescriptorError::Repeated(SUBJECT_ENTRY));
    }

    #[test]
    fn errors_show_a_short_escaped_value() {
        let long = format!("org:{}\n", "x".repeat(500));
        let message = parse_subject(&long).unwrap_err().to_string();
        assert!(message.len() < 200, "{message}");
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains("..."), "{message}");
        let message = parse_limit("100+").unwrap_err().to_string();
        assert_eq!(
            message,
            "keysync_limit \"100+\" is not <requests_per_minute>+<burst> with \
             requests_per_minute at least 1 and a sum below 2^32"
        );
    }
}
