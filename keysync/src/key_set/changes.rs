//! What changed in the database after some revision, up to a newer one: a catch-up's
//! result (or the difference a full reload found), applied to the key set, kept in the
//! changelog and sent to watchers.

use std::collections::HashSet;

use keysync_contract::key_hash::KeyHash;

use crate::key_set::key_entry::KeyEntry;

/// The changes up to `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub revision: u64,
    /// Keys written since, and still active: insert or replace.
    pub upserts: Vec<KeyEntry>,
    /// Keys revoked or deleted since: drop.
    pub removals: Vec<KeyHash>,
}

impl Changes {
    /// Records carried (upserts plus removals); what the catch-up log line reports and
    /// what the changelog's bound counts.
    pub fn len(&self) -> usize {
        self.upserts.len() + self.removals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same changes with every hash in at most one list, so they mean the same
    /// whatever order a client applies the lists in: a key deleted and re-created with
    /// the same hash ends up present (its upsert stays, its removal goes), and a hash
    /// removed twice is removed once. Spare capacity goes too: batches are kept in the
    /// changelog.
    pub fn normalized(mut self) -> Changes {
        let upserted: HashSet<KeyHash> = self.upserts.iter().map(|e| e.key_hash).collect();
        let mut removed = HashSet::with_capacity(self.removals.len());
        self.removals
            .retain(|hash| !upserted.contains(hash) && removed.insert(*hash));
        self.upserts.shrink_to_fit();
        self.removals.shrink_to_fit();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_changes_name_each_hash_once() {
        let (one, two) = (KeyEntry::numbered(1), KeyEntry::numbered(2));
        let changes = Changes {
            revision: 4,
            upserts: vec![one.clone()],
            removals: vec![one.key_hash, two.key_hash, two.key_hash],
        }
        .normalized();
        assert_eq!(changes.upserts, vec![one]);
        assert_eq!(changes.removals, vec![two.key_hash]);
    }
}
