//! How a command prints its result: with `--json`, the result's serde form,
//! pretty-printed; otherwise as text, a table ([`super::text_table`]) or one
//! `name: value` line per field ([`field_lines`]). Either way the fields come from the
//! one result type the operation returns, so a field list is written once.

use std::io::{self, Write};

use clap::Args;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// Output format shared by the commands that print records.
#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// A command's result as the CLI shows it.
pub trait Render: Serialize {
    /// The text form (without `--json`).
    fn text(&self, out: &mut dyn Write) -> io::Result<()>;
}

/// Prints `result` in the format `output` asks for.
pub fn print(out: &mut dyn Write, result: &impl Render, output: Output) -> io::Result<()> {
    if output.json {
        serde_json::to_writer_pretty(&mut *out, result)?;
        writeln!(out)
    } else {
        result.text(out)
    }
}

/// Fields whose absence reads `none` rather than `never`: they are not instants.
const NONE_FIELDS: [&str; 2] = ["metadata", "external_id"];

/// One `name: value` line per serialized field of `result`, in declaration order; a
/// field without a value (an expiry) reads `never` (metadata and external ids: `none`);
/// a list reads as its items separated by spaces, and an empty list (a key without
/// scopes) is left out; an object (metadata) reads as its JSON, as given.
pub fn field_lines(out: &mut dyn Write, result: &impl Serialize) -> io::Result<()> {
    let json = serde_json::to_string(result)?;
    let Fields(fields) = serde_json::from_str(&json)?;
    for (name, raw) in fields {
        let value: Value = serde_json::from_str(raw.get())?;
        match value {
            Value::String(text) => writeln!(out, "{name}: {text}")?,
            Value::Null if NONE_FIELDS.contains(&name.as_str()) => writeln!(out, "{name}: none")?,
            Value::Null => writeln!(out, "{name}: never")?,
            Value::Object(_) => writeln!(out, "{name}: {}", raw.get())?,
            Value::Array(items) if items.is_empty() => {}
            Value::Array(items) => {
                let items: Vec<String> = items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(text) => text,
                        other => other.to_string(),
                    })
                    .collect();
                writeln!(out, "{name}: {}", items.join(" "))?;
            }
            other => writeln!(out, "{name}: {other}")?,
        }
    }
    Ok(())
}

/// The fields of a JSON object in the order they were written (`serde_json`'s own map
/// sorts them by name).
struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;

        impl<'de> Visitor<'de> for InOrder {
            type Value = Fields;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = map.next_entry()? {
                    fields.push(field);
                }
                Ok(Fields(fields))
            }
        }

        deserializer.deserialize_map(InOrder)
    }
}

/// What `print` writes for `result`, for tests.
#[cfg(test)]
pub(crate) fn printed(result: &impl Render, json: bool) -> String {
    let mut out = Vec::new();
    print(&mut out, result, Output { json }).unwrap_or_else(|error| panic!("{error}"));
    String::from_utf8(out).unwrap_or_else(|error| panic!("{error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Record {
        zulu: &'static str,
        alpha: u32,
        expires_at: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        list: Option<Vec<&'static str>>,
    }

    impl Render for Record {
        fn text(&self, out: &mut dyn Write) -> io::Result<()> {
            field_lines(out, self)
        }
    }

    #[test]
    fn text_is_one_line_per_field_in_order() {
        let record = Record {
            zulu: "z",
            alpha: 7,
            expires_at: None,
            list: None,
        };
        assert_eq!(
            printed(&record, false),
            "zulu: z\nalpha: 7\nexpires_at: never\n"
        );
        let listed = |list: Vec<&'static str>| Record {
            list: Some(list),
            ..record
        };
        assert_eq!(
            printed(&listed(vec!["a:b", "c"]), false),
            "zulu: z\nalpha: 7\nexpires_at: never\nlist: a:b c\n"
        );
        assert_eq!(
            printed(&listed(vec![]), false),
            "zulu: z\nalpha: 7\nexpires_at: never\n",
            "an empty list is left out"
        );
    }

    #[test]
    fn json_is_pretty_and_ends_with_a_newline() {
        let record = Record {
            zulu: "z",
            alpha: 7,
            expires_at: Some("2026-01-01T00:00:00Z"),
            list: None,
        };
        assert_eq!(
            printed(&record, true),
            "{\n  \"zulu\": \"z\",\n  \"alpha\": 7,\n  \"expires_at\": \"2026-01-01T00:00:00Z\"\n}\n"
        );
    }
}
