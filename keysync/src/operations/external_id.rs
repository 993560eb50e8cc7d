//! An organization's external id: the customer's id in the operator's own billing
//! system (`cus_...`), unique among organizations, carried by the usage export's events
//! as `subject` so that a billing consumer needs no mapping of its own.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest external id, in characters (the schema's bound too).
pub const MAX_EXTERNAL_ID_CHARS: usize = 200;

/// An external id that cannot be used, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid external id: {0}")]
pub struct InvalidExternalId(&'static str);

/// A checked external id: trimmed, 1 to [`MAX_EXTERNAL_ID_CHARS`] characters, no
/// control characters or spaces (it is an identifier, shown in one table cell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId(String);

impl ExternalId {
    pub fn parse(text: &str) -> Result<ExternalId, InvalidExternalId> {
        let id = text.trim();
        if id.is_empty() {
            return Err(InvalidExternalId("must not be empty"));
        }
        if id.chars().count() > MAX_EXTERNAL_ID_CHARS {
            return Err(InvalidExternalId("longer than 200 characters"));
        }
        if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(InvalidExternalId("contains spaces or control characters"));
        }
        Ok(ExternalId(id.to_owned()))
    }

    /// As stored (checked when written).
    pub fn stored(text: String) -> ExternalId {
        ExternalId(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ExternalId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ExternalId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ExternalId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identifier_of_one_to_200_characters() {
        assert_eq!(ExternalId::parse(" cus_42 ").unwrap().as_str(), "cus_42");
        for bad in ["", "  ", "cus 42", "cus\n42"] {
            assert!(ExternalId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ExternalId::parse(&"x".repeat(200)).is_ok());
        assert!(ExternalId::parse(&"x".repeat(201)).is_err());
    }
}
