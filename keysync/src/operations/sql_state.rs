//! The PostgreSQL errors (by SQLSTATE) that operations turn into errors of their own:
//! a missing organization behind a foreign key, an id that is already taken.

/// A constraint a statement violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// `23503`: the row it points at does not exist.
    ForeignKey,
    /// `23505`: the key is taken.
    Unique,
}

/// The constraint `error` reports violated, if that is what it is.
pub fn violation(error: &sqlx::Error) -> Option<Violation> {
    let sqlx::Error::Database(database) = error else {
        return None;
    };
    match database.code().as_deref() {
        Some("23503") => Some(Violation::ForeignKey),
        Some("23505") => Some(Violation::Unique),
        _ => None,
    }
}
