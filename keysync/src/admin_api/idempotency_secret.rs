//! The server-side secret that idempotent answers are sealed under, beside the client's
//! `Idempotency-Key` ([`super::idempotency`]): a copy of the database (a backup, a
//! replica, a dump) and a guessed Idempotency-Key do not open a stored answer, which may
//! hold a new API key.
//!
//! It comes from a file (`KEYSYNC_IDEMPOTENCY_SECRET_FILE`, at least 32 bytes, the same
//! on every replica), never from PostgreSQL, since the threat is a copy of the database.
//! Without one, each process draws its own: nothing is weaker, but an answer stored by
//! one process cannot be replayed by another (after a restart, or from another replica),
//! and such a retry is refused with 409 rather than carried out again.

use std::fmt;

use sha2::{Digest, Sha256};

/// The variable that names the file.
pub const SECRET_FILE_VARIABLE: &str = "KEYSYNC_IDEMPOTENCY_SECRET_FILE";
/// The fewest bytes the file must hold (after a final line break): 256 bits, such as
/// `head -c 32 /dev/urandom | base64`.
pub const MIN_SECRET_BYTES: usize = 32;

/// Context of the derivation from the file's bytes.
const DERIVATION: &[u8] = b"keysync idempotency secret v1\0";

#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencySecret {
    key: [u8; 32],
    /// Whether it came from the operator's file (so survives restarts).
    from_file: bool,
}

impl IdempotencySecret {
    /// The secret of a file's contents: its bytes without a final line break (a file
    /// written by `echo` has one), at least [`MIN_SECRET_BYTES`] of them.
    pub fn from_file_contents(contents: &[u8]) -> Result<IdempotencySecret, String> {
        let secret = contents
            .strip_suffix(b"\n")
            .map_or(contents, |text| text.strip_suffix(b"\r").unwrap_or(text));
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "its contents: {} bytes, at least {MIN_SECRET_BYTES} needed (such as the \
                 output of `head -c 32 /dev/urandom | base64`)",
                secret.len()
            ));
        }
        Ok(IdempotencySecret {
            key: Sha256::new()
                .chain_update(DERIVATION)
                .chain_update(secret)
                .finalize()
                .into(),
            from_file: true,
        })
    }

    /// A secret of this process alone.
    pub fn generate() -> IdempotencySecret {
        IdempotencySecret {
            key: rand::random(),
            from_file: false,
        }
    }

    pub fn from_file(&self) -> bool {
        self.from_file
    }

    pub(super) fn as_bytes(&self) -> &[u8; 32] {
        &self.key
    }
}

// Never in `{:?}` output, logs or panics.
impl fmt::Debug for IdempotencySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencySecret")
            .field("from_file", &self.from_file)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_needs_32_bytes_without_its_line_break() {
        let base64 = "c2VjcmV0LW9mLTMyLWJ5dGVzLWF0LWxlYXN0LW5vdy4uLg==";
        let secret = IdempotencySecret::from_file_contents(base64.as_bytes()).unwrap();
        assert!(secret.from_file());
        for variant in [format!("{base64}\n"), format!("{base64}\r\n")] {
            assert_eq!(
                IdempotencySecret::from_file_contents(variant.as_bytes()).unwrap(),
                secret,
                "{variant:?}"
            );
        }
        let error = IdempotencySecret::from_file_contents(b"0123456789abcdef0123456789abcde\n")
            .unwrap_err();
        assert!(error.contains("31 bytes, at least 32"), "{error}");
        assert_ne!(
            IdempotencySecret::from_file_contents(&[b'x'; 32]).unwrap(),
            secret
        );
    }

    #[test]
    fn a_generated_secret_is_its_process_own_and_never_shown() {
        let secret = IdempotencySecret::generate();
        assert!(!secret.from_file());
        assert_ne!(secret, IdempotencySecret::generate());
        let shown = format!("{secret:?}");
        assert!(
            !shown.contains(&format!("{:?}", secret.as_bytes())),
            "{shown}"
        );
        assert!(!shown.contains(&hex::encode(secret.as_bytes())), "{shown}");
    }
}
