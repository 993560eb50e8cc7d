//! A change of an optional field in a request that updates an object: absent (left as
//! it is), `null` (cleared) or a value (set). JSON needs the three apart; `Option`
//! alone would take `null` for absent.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A change of an optional field in a request: absent (unchanged), `null` (cleared) or a
/// value (set). Use with `#[serde(default)]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FieldChange<T> {
    #[default]
    Unchanged,
    Clear,
    Set(T),
}

impl<T> FieldChange<T> {
    pub fn is_unchanged(&self) -> bool {
        matches!(self, FieldChange::Unchanged)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for FieldChange<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Present: `null` clears, anything else sets (absent is the field's default).
        Ok(match Option::<T>::deserialize(deserializer)? {
            None => FieldChange::Clear,
            Some(value) => FieldChange::Set(value),
        })
    }
}

impl<T: Serialize> Serialize for FieldChange<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldChange::Unchanged | FieldChange::Clear => serializer.serialize_none(),
            FieldChange::Set(value) => value.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operations::metadata::Metadata;

    #[test]
    fn a_request_field_tells_absent_null_and_a_value_apart() {
        #[derive(Deserialize)]
        struct Request {
            #[serde(default)]
            metadata: FieldChange<Metadata>,
        }
        let read = |body: &str| serde_json::from_str::<Request>(body).map(|r| r.metadata);
        assert_eq!(read("{}").unwrap(), FieldChange::Unchanged);
        assert_eq!(read(r#"{"metadata":null}"#).unwrap(), FieldChange::Clear);
        assert_eq!(
            read(r#"{"metadata":{"b":1,  "a":2}}"#).unwrap(),
            FieldChange::Set(Metadata::parse(r#"{"b":1,  "a":2}"#).unwrap())
        );
        assert!(read(r#"{"metadata":[1]}"#).is_err());
    }
}
