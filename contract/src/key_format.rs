//! The format of API keys: `sk_live_` or `sk_test_`, then 32 random base62 characters,
//! then 6 base62 characters of the CRC32 of everything before them (the scheme GitHub
//! uses for its tokens). The checksum lets the gateway refuse a mistyped or made-up key
//! before any lookup, and lets secret scanners tell a real key from noise.
//!
//! Keys issued before checksums (the 32 random characters alone) are told apart by
//! length: a checksummed key is always [`CHECKSUMMED_LEN`] bytes long. Whether such
//! legacy keys are still accepted is a gateway setting.

/// The whole key: prefix, random part, checksum.
pub const CHECKSUMMED_LEN: usize = PREFIX_LEN + RANDOM_LEN + CHECKSUM_LEN;
/// The random part keysync issues.
pub const RANDOM_LEN: usize = 32;
/// The base62 digits of the CRC32.
pub const CHECKSUM_LEN: usize = 6;
const PREFIX_LEN: usize = 8;

/// A regular expression for secret scanners: the checksummed form (the random part and
/// the checksum are 38 base62 characters). `secret-scanning/gitleaks.toml` carries it.
pub const SCANNER_REGEX: &str = r"\bsk_(?:live|test)_[0-9A-Za-z]{38}\b";
/// Keys issued before checksums: 32 base62 characters, nothing to verify them by.
pub const LEGACY_SCANNER_REGEX: &str = r"\bsk_(?:live|test)_[0-9A-Za-z]{32}\b";

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// What a well-formed key (see `credential::is_well_formed`) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyForm {
    /// The checksummed form, with a checksum that matches.
    Checksummed,
    /// The checksummed form's length and alphabet, but the checksum does not match: a
    /// typo or a made-up key. Never worth a lookup.
    BadChecksum,
    /// Issued before checksums (any other length).
    Legacy,
}

/// Tells the forms apart. `key` must already be well formed (prefix, alphabet, length).
pub fn classify(key: &[u8]) -> KeyForm {
    if key.len() != CHECKSUMMED_LEN {
        return KeyForm::Legacy;
    }
    let (body, checksum) = key.split_at(CHECKSUMMED_LEN - CHECKSUM_LEN);
    let random = body.get(PREFIX_LEN..).unwrap_or_default();
    if !random.iter().chain(checksum).all(u8::is_ascii_alphanumeric) {
        return KeyForm::Legacy;
    }
    if checksum == encode_checksum(crc32(body)) {
        KeyForm::Checksummed
    } else {
        KeyForm::BadChecksum
    }
}

/// The checksum keysync appends to `body` (the prefix and the random part).
pub fn checksum_for(body: &str) -> String {
    let digits = encode_checksum(crc32(body.as_bytes()));
    digits.iter().map(|&b| char::from(b)).collect()
}

/// CRC32 (IEEE 802.3, as zlib computes it), a byte at a time from a table: it runs on
/// every request that carries a key.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        let index = usize::from((crc as u8) ^ byte);
        crc = (crc >> 8) ^ CRC_TABLE.get(index).copied().unwrap_or(0);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = crc_table();

// Evaluated at compile time: an index out of bounds would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// Six base62 digits, most significant first, zero-padded.
fn encode_checksum(mut value: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        let digit = usize::try_from(value % 62).unwrap_or(0);
        *slot = BASE62.get(digit).copied().unwrap_or(b'0');
        value /= 62;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RANDOM: &str = "0123456789abcdefghijABCDEFGHIJkl";

    fn key(prefix: &str) -> String {
        let body = format!("{prefix}{RANDOM}");
        format!("{body}{}", checksum_for(&body))
    }

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
    }

    #[test]
    fn issued_keys_check_out() {
        for prefix in ["sk_live_", "sk_test_"] {
            let key = key(prefix);
            assert_eq!(key.len(), CHECKSUMMED_LEN);
            assert_eq!(classify(key.as_bytes()), KeyForm::Checksummed, "{key}");
        }
    }

    #[test]
    fn any_one_character_changed_is_caught() {
        let key = key("sk_live_");
        for i in 8..key.len() {
            let mut bytes = key.clone().into_bytes();
            bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
            assert_eq!(classify(&bytes), KeyForm::BadChecksum, "position {i}");
        }
        let mut swapped_env = key.clone().into_bytes();
        swapped_env[3..7].copy_from_slice(b"test");
        assert_eq!(
            classify(&swapped_env),
            KeyForm::BadChecksum,
            "the prefix counts"
        );
    }

    #[test]
    fn other_lengths_are_legacy() {
        assert_eq!(
            classify(format!("sk_live_{RANDOM}").as_bytes()),
            KeyForm::Legacy
        );
        assert_eq!(classify(b"sk_test_abcdefgh"), KeyForm::Legacy);
        let with_dash = format!("sk_live_{}-", &key("")[..37]);
        assert_eq!(with_dash.len(), CHECKSUMMED_LEN);
        assert_eq!(
            classify(with_dash.as_bytes()),
            KeyForm::Legacy,
            "the checksummed form is base62 only"
        );
    }

    #[test]
    fn the_checksum_is_six_padded_base62_digits() {
        assert_eq!(encode_checksum(0), *b"000000");
        assert_eq!(encode_checksum(61), *b"00000z");
        assert_eq!(encode_checksum(62), *b"000010");
        assert_eq!(encode_checksum(u32::MAX), *b"4gfFC3");
    }
}
