//! `keysync keys check`: tells from a key's text alone whether keysync could have issued
//! it (its checksum), without a database and without showing the key back.

use std::io::{self, BufRead, Write};

use keysync_contract::credential;
use keysync_contract::key_format::{self, KeyForm};
use serde::Serialize;

use super::render::{field_lines, Render};
use crate::operations::key_secret::PREFIX_LEN;

/// Why a text is not a key keysync issued; the message never contains the text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyCheckError {
    #[error("not an API key: expected sk_live_ or sk_test_ and base62 characters")]
    Malformed,
    #[error(
        "the checksum does not match ({prefix}...): a typo, a truncated copy, or a key \
         keysync never issued; gateways refuse it without a lookup"
    )]
    BadChecksum { prefix: String },
    #[error("cannot read the key from standard input: {0}")]
    Input(String),
}

/// The form of a key whose text holds together.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct KeyCheck {
    /// The display prefix, as `keysync keys list` shows it.
    pub prefix: String,
    /// `checksummed`, or `legacy` (issued before checksums: nothing to verify).
    pub form: &'static str,
    pub note: &'static str,
}

impl Render for KeyCheck {
    fn text(&self, out: &mut dyn Write) -> io::Result<()> {
        field_lines(out, self)
    }
}

/// The key to check: the argument, or standard input's first line when the argument is
/// `-` or absent (so the key need not appear in shell history or `ps`).
pub fn key_text(argument: Option<String>) -> Result<String, KeyCheckError> {
    match argument {
        Some(key) if key != "-" => Ok(key),
        _ => {
            let mut line = String::new();
            io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|error| KeyCheckError::Input(error.to_string()))?;
            Ok(line)
        }
    }
}

/// Checks `text` (surrounding white space ignored).
pub fn check(text: &str) -> Result<KeyCheck, KeyCheckError> {
    let key = text.trim();
    if !credential::is_well_formed(key.as_bytes()) {
        return Err(KeyCheckError::Malformed);
    }
    // Well formed: ASCII, longer than the prefix.
    let prefix = key.get(..PREFIX_LEN).unwrap_or(key).to_owned();
    match key_format::classify(key.as_bytes()) {
        KeyForm::Checksummed => Ok(KeyCheck {
            prefix,
            form: "checksummed",
            note: "the checksum matches: keysync could have issued this key \
                   (whether it is active, only keysync keys list can tell)",
        }),
        KeyForm::Legacy => Ok(KeyCheck {
            prefix,
            form: "legacy",
            note: "issued before checksums: gateways accept it while accept_legacy_keys \
                   is on; rotate it to get a checksummed key",
        }),
        KeyForm::BadChecksum => Err(KeyCheckError::BadChecksum { prefix }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operations::key_secret::{KeyEnvironment, KeySecret};

    #[test]
    fn an_issued_key_passes_and_is_not_shown_back() {
        let key = KeySecret::generate(KeyEnvironment::Live);
        let checked = check(&format!("  {}\n", key.secret())).unwrap();
        assert_eq!(checked.form, "checksummed");
        assert_eq!(checked.prefix, key.prefix());
        let mut text = Vec::new();
        checked.text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("form: checksummed"), "{text}");
        assert!(!text.contains(key.secret()), "{text}");
    }

    #[test]
    fn one_changed_character_fails_without_showing_the_key() {
        let key = KeySecret::generate(KeyEnvironment::Test);
        let secret = key.secret();
        let position = 20;
        let replacement = if &secret[position..=position] == "a" {
            "b"
        } else {
            "a"
        };
        let typo = format!(
            "{}{replacement}{}",
            &secret[..position],
            &secret[position + 1..]
        );
        let error = check(&typo).unwrap_err();
        assert_eq!(
            error,
            KeyCheckError::BadChecksum {
                prefix: key.prefix().to_owned()
            }
        );
        assert!(!error.to_string().contains(&typo[PREFIX_LEN..]));
    }

    #[test]
    fn legacy_and_malformed_keys_are_told_apart() {
        assert_eq!(
            check("sk_live_0123456789abcdefABCDEF0123456789")
                .unwrap()
                .form,
            "legacy"
        );
        for text in [
            "",
            "hello",
            "sk_prod_0123456789",
            "sk_live_short",
            "sk_live_a b c d e f",
        ] {
            assert_eq!(check(text), Err(KeyCheckError::Malformed), "{text:?}");
        }
    }
}
