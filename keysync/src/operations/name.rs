//! The display name of an organization, a key, a plan or an admin token, as the schema
//! accepts it (1 to 200 characters) and a table can show it (one line).

/// Longest name the schema accepts.
pub const MAX_NAME_CHARS: usize = 200;

/// A name that cannot be used, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} name: {reason}")]
pub struct InvalidName {
    /// `organization`, `key`, `plan` or `admin token`.
    pub what: &'static str,
    pub reason: &'static str,
}

/// A checked name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// An organization's name.
    pub fn of_org(text: &str) -> Result<Name, InvalidName> {
        Name::parse("organization", text)
    }

    /// A key's name.
    pub fn of_key(text: &str) -> Result<Name, InvalidName> {
        Name::parse("key", text)
    }

    /// A price plan's.
    pub fn of_plan(text: &str) -> Result<Name, InvalidName> {
        Name::parse("plan", text)
    }

    /// An admin token's.
    pub fn of_admin_token(text: &str) -> Result<Name, InvalidName> {
        Name::parse("admin token", text)
    }

    fn parse(what: &'static str, text: &str) -> Result<Name, InvalidName> {
        let invalid = |reason| InvalidName { what, reason };
        let name = text.trim();
        if name.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(invalid("longer than 200 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("contains control characters"));
        }
        Ok(Name(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(Name::of_key("  ci key ").unwrap().as_str(), "ci key");
        let error = Name::of_org("   ").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid organization name: must not be empty"
        );
        assert!(Name::of_key(&"x".repeat(201)).is_err());
        assert!(Name::of_key(&"é".repeat(200)).is_ok());
        assert!(Name::of_key("two\nlines").is_err());
    }
}
