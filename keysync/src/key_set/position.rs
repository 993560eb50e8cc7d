//! Where a key set stands in the database's history: the revision it reflects, and the
//! epoch that revision counts in. Revisions of different epochs cannot be compared (a
//! restored dump or a promoted replica counts again from an older revision), so a
//! client holding another epoch must reload everything.

/// An epoch and a revision, read together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Position {
    /// The revision history (`Provenance.epoch`): never 0 once read from a database.
    pub epoch: u64,
    /// Every change up to this revision is reflected.
    pub revision: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "revision={} epoch={:016x}", self.revision, self.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_the_epoch_in_hex() {
        let position = Position {
            epoch: 0xab,
            revision: 7,
        };
        assert_eq!(position.to_string(), "revision=7 epoch=00000000000000ab");
    }
}
