//! Who a request is counted against: an organization (its limit or quota, one budget
//! shared by all its keys) or one key (a key's own). Written `org:<uuid>` or `key:<uuid>`:
//! the global rate-limit descriptor value, the counter names and the log lines all use
//! this one spelling. Where a subject travels as bytes or is stored (keysync's quota
//! messages, the `quotas.subject_kind` column, the gateway's shared-data records), its
//! kind is the [`SubjectKind`] code: 1 for an organization, 2 for a key.

use crate::id::Id;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Subject {
    Org(Id),
    Key(Id),
}

/// The kind of a subject, with its code on the wire and in the database.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum SubjectKind {
    Org,
    Key,
}

impl SubjectKind {
    pub const ALL: [SubjectKind; 2] = [SubjectKind::Org, SubjectKind::Key];

    /// The code the filter and keysync agree on, byte for byte.
    pub fn code(self) -> u8 {
        match self {
            SubjectKind::Org => 1,
            SubjectKind::Key => 2,
        }
    }

    /// The kind of a code read from the wire or a row; `None` for any other number.
    pub fn from_code(code: i64) -> Option<SubjectKind> {
        SubjectKind::ALL
            .into_iter()
            .find(|kind| i64::from(kind.code()) == code)
    }

    /// `org` or `key`: the spelling of [`Subject`]'s text form, the CLI and log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Org => "org",
            SubjectKind::Key => "key",
        }
    }
}

impl fmt::Display for SubjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub fn new(kind: SubjectKind, id: Id) -> Subject {
        match kind {
            SubjectKind::Org => Subject::Org(id),
            SubjectKind::Key => Subject::Key(id),
        }
    }

    /// The subject of a kind code and an id, as they travel; `None` for an unknown code.
    pub fn from_code(code: i64, id: Id) -> Option<Subject> {
        SubjectKind::from_code(code).map(|kind| Subject::new(kind, id))
    }

    pub fn subject_kind(&self) -> SubjectKind {
        match self {
            Subject::Org(_) => SubjectKind::Org,
            Subject::Key(_) => SubjectKind::Key,
        }
    }

    /// Its kind's code (see [`SubjectKind::code`]).
    pub fn code(&self) -> u8 {
        self.subject_kind().code()
    }

    /// `org` or `key`: for log lines and policy names.
    pub fn kind(&self) -> &'static str {
        self.subject_kind().as_str()
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
        SubjectKind::ALL
            .into_iter()
            .find(|known| known.as_str() == kind)
            .map(|kind| Subject::new(kind, id))
            .ok_or(BadSubject)
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
    fn kind_codes_are_pinned() {
        // keysync's quota messages and `quotas.subject_kind`, and the gateway's records,
        // all carry these numbers: changing one breaks every stored state.
        assert_eq!(SubjectKind::Org.code(), 1);
        assert_eq!(SubjectKind::Key.code(), 2);
        for kind in SubjectKind::ALL {
            assert_eq!(SubjectKind::from_code(i64::from(kind.code())), Some(kind));
        }
        for unknown in [0, 3, -1, 257, i64::MAX] {
            assert_eq!(SubjectKind::from_code(unknown), None, "{unknown}");
        }
        assert_eq!(SubjectKind::Org.to_string(), "org");
        assert_eq!(SubjectKind::Key.as_str(), "key");
    }

    #[test]
    fn a_subject_travels_as_its_kind_code_and_id() {
        let id: Id = ORG.parse().unwrap();
        for subject in [Subject::Org(id), Subject::Key(id)] {
            assert_eq!(
                Subject::from_code(i64::from(subject.code()), id),
                Some(subject)
            );
            assert_eq!(Subject::new(subject.subject_kind(), id), subject);
            assert_eq!(subject.kind(), subject.subject_kind().as_str());
        }
        assert_eq!(Subject::Org(id).code(), 1);
        assert_eq!(Subject::Key(id).code(), 2);
        assert_eq!(Subject::from_code(9, id), None);
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
