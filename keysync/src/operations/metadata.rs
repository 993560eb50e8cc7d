//! Metadata of a key or an organization: a JSON object of at most [`MAX_METADATA_BYTES`]
//! that keysync keeps for the operator and returns as given, byte for byte (key order
//! and whitespace inside the object kept; stored in a `json` column, which keeps the
//! text, not `jsonb`, which would reorder it). keysync never reads inside it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The longest metadata text, in bytes (UTF-8), as given.
pub const MAX_METADATA_BYTES: usize = 1024;

/// Metadata that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid metadata: {0}")]
pub struct InvalidMetadata(String);

/// Checked metadata: the text of one JSON object, at most [`MAX_METADATA_BYTES`] long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata(String);

impl Metadata {
    /// `text` if it is a JSON object of at most [`MAX_METADATA_BYTES`] bytes; kept as
    /// given, without the whitespace around the object.
    pub fn parse(text: &str) -> Result<Metadata, InvalidMetadata> {
        let text = text.trim();
        if text.len() > MAX_METADATA_BYTES {
            return Err(InvalidMetadata(format!(
                "{} bytes, more than the {MAX_METADATA_BYTES} allowed",
                text.len()
            )));
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(_)) => Ok(Metadata(text.to_owned())),
            Ok(_) => Err(InvalidMetadata("not a JSON object".to_owned())),
            Err(error) => Err(InvalidMetadata(format!("not JSON ({error})"))),
        }
    }

    /// Metadata as stored: checked when written, so a row that fails the check (written
    /// by hand) is shown as it is rather than failing a listing.
    pub fn stored(text: String) -> Metadata {
        Metadata(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Written into JSON as the object it is, not as a string.
impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match RawValue::from_string(self.0.clone()) {
            Ok(raw) => raw.serialize(serializer),
            // Only a hand-written row that is not JSON: shown as a string.
            Err(_) => serializer.serialize_str(&self.0),
        }
    }
}

/// Read from a request's JSON as the object's own text (so its order and spacing are
/// kept), then checked.
impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Metadata::parse(raw.get()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_kept_byte_for_byte() {
        let text = r#"{"plan": "gold",  "a":1, "plan2" :[1, 2]}"#;
        let metadata = Metadata::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(metadata.as_str(), text);
        // In a JSON answer: the object as given, not a string.
        let answer = serde_json::to_string(&serde_json::json!({"m": 1})).unwrap();
        assert_eq!(answer, r#"{"m":1}"#);
        #[derive(Serialize)]
        struct Answer {
            metadata: Metadata,
        }
        assert_eq!(
            serde_json::to_string(&Answer { metadata }).unwrap(),
            format!(r#"{{"metadata":{text}}}"#)
        );
    }

    #[test]
    fn only_objects_of_at_most_1_kib() {
        for bad in ["[1]", "\"x\"", "1", "null", "{", "{\"a\":}", ""] {
            assert!(Metadata::parse(bad).is_err(), "{bad}");
        }
        let fits = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_METADATA_BYTES - 8));
        assert_eq!(fits.len(), MAX_METADATA_BYTES);
        assert!(Metadata::parse(&fits).is_ok());
        let over = format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_METADATA_BYTES - 7));
        let error = Metadata::parse(&over).unwrap_err().to_string();
        assert!(error.contains("1025 bytes"), "{error}");
    }
}
