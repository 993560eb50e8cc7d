//! The ids of organizations and keys as the gateway handles them: a UUID kept as its 16
//! bytes, written out (lower-case, hyphenated, as PostgreSQL prints it) only where a
//! header or a descriptor needs the text.

use std::fmt;
use std::str::FromStr;

/// A UUID as 16 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Id(pub [u8; 16]);

/// Text that is not a hyphenated UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadId;

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a hyphenated UUID")
    }
}

impl Id {
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Id)
    }

    /// Lower-case hyphenated form (36 characters).
    pub fn hyphenated(&self) -> String {
        let mut out = String::with_capacity(36);
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push('-');
            }
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0x0f));
        }
        out
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hyphenated())
    }
}

/// Only the hyphenated form (hex digits in any case): what PostgreSQL, the CLI and the
/// gateway write. Braces, `urn:uuid:` and the 32-digit form are refused, so that one id
/// has one spelling once written back.
impl FromStr for Id {
    type Err = BadId;

    fn from_str(text: &str) -> Result<Self, BadId> {
        let bytes = text.as_bytes();
        if bytes.len() != 36 {
            return Err(BadId);
        }
        let mut out = [0u8; 16];
        let mut nibbles = 0usize;
        for (i, &byte) in bytes.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if byte != b'-' {
                    return Err(BadId);
                }
                continue;
            }
            let value = hex_value(byte).ok_or(BadId)?;
            let slot = out.get_mut(nibbles / 2).ok_or(BadId)?;
            *slot = *slot << 4 | value;
            nibbles += 1;
        }
        Ok(Id(out))
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).unwrap_or('0')
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "550e8400-e29b-41d4-a716-446655440000";
    const BYTES: [u8; 16] = [
        0x55, 0x0e, 0x84, 0x00, 0xe2, 0x9b, 0x41, 0xd4, 0xa7, 0x16, 0x44, 0x66, 0x55, 0x44, 0x00,
        0x00,
    ];

    #[test]
    fn formats_like_postgres() {
        assert_eq!(Id(BYTES).hyphenated(), TEXT);
        assert_eq!(Id(BYTES).to_string(), TEXT);
    }

    #[test]
    fn parses_the_hyphenated_form_in_any_case() {
        assert_eq!(TEXT.parse(), Ok(Id(BYTES)));
        assert_eq!(TEXT.to_uppercase().parse(), Ok(Id(BYTES)));
    }

    #[test]
    fn refuses_every_other_spelling() {
        for text in [
            "",
            "550e8400e29b41d4a716446655440000",
            "{550e8400-e29b-41d4-a716-44665544000}",
            "550e8400-e29b-41d4-a716-44665544000g",
            "550e8400-e29b-41d4-a716_446655440000",
            "550e8400-e29b-41d4-a7164-46655440000",
            " 50e8400-e29b-41d4-a716-446655440000",
            "550e8400-e29b-41d4-a716-4466554400000",
            "+50e8400-e29b-41d4-a716-446655440000",
            "550e8400-e29b-41d4-a716-44665544000é",
        ] {
            assert_eq!(text.parse::<Id>(), Err(BadId), "{text:?}");
        }
    }

    #[test]
    fn from_slice_wants_exactly_16_bytes() {
        assert_eq!(Id::from_slice(&BYTES), Some(Id(BYTES)));
        assert_eq!(Id::from_slice(&BYTES[..15]), None);
        assert_eq!(Id::from_slice(&[0; 17]), None);
    }
}
