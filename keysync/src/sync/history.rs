//! The epoch: an identity of the database's revision history, the same for every
//! keysync that reads the same history, and different whenever revisions stop being
//! comparable with the ones counted before.
//!
//! Revisions alone cannot tell. A dump restored into the database, a failover to a
//! replica that lagged, or a promoted standby count again from an older revision, and
//! then past it with other changes; a client that resumes "after revision R" would
//! silently miss what differs. So the epoch hashes what changes in each of those cases:
//!
//! - the database's OID (`pg_database`): a dump restored into a new database;
//! - the OID of the `keysync_revision` table: a dump restored over the old database
//!   (`pg_restore --clean` drops and re-creates the table);
//! - the WAL timeline, where it can be read (not on a standby, and only with the right to
//!   call `pg_current_wal_lsn`): a promoted replica or a point-in-time recovery starts a
//!   new timeline;
//! - a random `history_id` kept in the counter row (migration 0004), which keysync
//!   replaces when it sees the revision counter go backwards without any of the above
//!   changing (an older dump's rows copied in, a counter rewritten by hand), so that
//!   every keysync and every client learns that the history changed.
//!
//! keysync processes reading the same database compute the same epoch, so a gateway may
//! move between them without reloading.

use sha2::{Digest, Sha256};

/// What the epoch is made of, as read from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub database_oid: i64,
    pub table_oid: i64,
    pub history_id: i64,
    /// `None` where it cannot be read (see the module documentation).
    pub timeline: Option<u32>,
}

/// The epoch of `identity`: a hash, never 0 (0 means "unknown" on the wire).
pub fn epoch(identity: &Identity) -> u64 {
    let mut hash = Sha256::new();
    hash.update(b"keysync epoch v1");
    hash.update(identity.database_oid.to_le_bytes());
    hash.update(identity.table_oid.to_le_bytes());
    hash.update(identity.history_id.to_le_bytes());
    match identity.timeline {
        Some(timeline) => {
            hash.update([1]);
            hash.update(timeline.to_le_bytes());
        }
        None => hash.update([0]),
    }
    let digest = hash.finalize();
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: Identity = Identity {
        database_oid: 16384,
        table_oid: 16420,
        history_id: -42,
        timeline: Some(1),
    };

    #[test]
    fn the_same_history_gives_the_same_epoch() {
        assert_eq!(epoch(&IDENTITY), epoch(&IDENTITY.clone()));
        assert_ne!(epoch(&IDENTITY), 0);
    }

    #[test]
    fn each_part_changes_the_epoch() {
        let base = epoch(&IDENTITY);
        for other in [
            Identity {
                database_oid: 16385,
                ..IDENTITY
            },
            Identity {
                table_oid: 16421,
                ..IDENTITY
            },
            Identity {
                history_id: 42,
                ..IDENTITY
            },
            Identity {
                timeline: Some(2),
                ..IDENTITY
            },
            Identity {
                timeline: None,
                ..IDENTITY
            },
        ] {
            assert_ne!(epoch(&other), base, "{other:?}");
        }
    }
}
