//! Who a request is counted against: an organization (its limit, one budget shared by
//! all its keys) or one key (a key's own limit). Written `org:<uuid>` or `key:<uuid>`:
//! the global rate-limit descriptor value, the counter names and the log lines all use
//! this one spelling.

use crate::id::Id;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Subject {
    Org(Id),
    Key(Id),
}

/// Text that is not `org:<uuid>` or `key:<uuid>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSubject;

impl fmt::Display for BadSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not org:<uuid> or key:<uuid>")
    }
}

impl Subject {
    /// `org` or `key`: for log lines and policy names.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Org(_) => "org",
            Subject::Key(_) => "key",
        }
    }

    pub fn id(&self) -> Id {
        match self {
            Subject::Org(id) | Subject::Key(id) => *id,
        }
    }
}

/// The canonical spelling (lower-case, hyphenated) whatever form was parsed, so one
/// subject always maps to one counter.
impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id())
    }
}

impl FromStr for Subject {
    type Err = BadSubject;

    fn from_str(text: &str) -> Result<Self, BadSubject> {
        let (kind, id) = text.split_once(':').ok_or(BadSubject)?;
        let id: Id = id.parse().map_err(|_| BadSubject)?;
        match kind {
            "org" => Ok(Subject::Org(id)),
            "key" => Ok(Subject::Key(id)),
            _ => Err(BadSubject),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "6f1c1f58-5d7e-4a7e-9d0e-0a1b2c3d4e5f";

    #[test]
    fn round_trips_in_the_canonical_spelling() {
        let org: Subject = format!("org:{ORG}").parse().unwrap();
        assert_eq!(org.kind(), "org");
        assert_eq!(org.to_string(), format!("org:{ORG}"));
        let key: Subject = format!("key:{}", ORG.to_uppercase()).parse().unwrap();
        assert!(matches!(key, Subject::Key(_)));
        assert_eq!(key.to_string(), format!("key:{ORG}"));
        assert_eq!(org.id(), key.id());
        assert_ne!(org, key);
    }

    #[test]
    fn refuses_anything_else() {
        for text in [
            "org:".to_string(),
            "org".to_string(),
            format!(":{ORG}"),
            format!("team:{ORG}"),
            format!("ORG:{ORG}"),
            format!("org: {ORG}"),
            format!("org:{ORG}:x"),
            "org:6f1c1f585d7e4a7e9d0e0a1b2c3d4e5f".to_string(),
            String::new(),
        ] {
            assert_eq!(text.parse::<Subject>(), Err(BadSubject), "{text:?}");
        }
    }
}
