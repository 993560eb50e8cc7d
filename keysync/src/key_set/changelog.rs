//! The recent history of the key set: the change batches applied to it, newest last,
//! bounded by the records they hold, so a watcher that reconnects after revision A can
//! be sent what it missed instead of reloading everything.
//!
//! The log covers the revisions after `base`: it holds every batch with a revision in
//! `(base, revision]`, where `revision` is the key set's. Dropping the oldest batch
//! moves `base` up to that batch's revision.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::key_set::changes::Changes;
use crate::key_set::position::Position;

/// What [`Changelog::record`] did with a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A batch with changes was appended and is to be sent to watchers.
    Appended(Arc<Changes>),
    /// Nothing changed; only the revision moved on.
    Advanced,
    /// The key set changed in a way the revisions cannot express (it went back to an
    /// older revision, or changed without a new one): the history was dropped, the log
    /// now starts at this revision, and every watcher must reload.
    Reset(u64),
}

/// Recent change batches, oldest first.
#[derive(Debug)]
pub struct Changelog {
    batches: VecDeque<Arc<Changes>>,
    /// The log covers revisions after this one.
    base: u64,
    /// The key set's revision: the newest batch's, or later when catch-ups found nothing.
    revision: u64,
    /// The epoch every revision held counts in.
    epoch: u64,
    /// Upserts plus removals over all batches held.
    records: usize,
    /// Bound on `records`; the oldest batches go first when it is exceeded.
    max_records: usize,
}

impl Changelog {
    /// An empty log covering nothing yet; [`Changelog::start`] sets where it begins.
    pub fn new(max_records: usize) -> Self {
        Changelog {
            batches: VecDeque::new(),
            base: 0,
            revision: 0,
            epoch: 0,
            records: 0,
            max_records,
        }
    }

    /// Starts over at a full snapshot of `revision`: nothing to replay before it.
    pub fn start(&mut self, revision: u64) {
        self.batches.clear();
        self.records = 0;
        self.base = revision;
        self.revision = revision;
    }

    /// Starts over at a full snapshot of another history (or the first one): nothing to
    /// replay before it, and the revisions that come count in `position.epoch`.
    pub fn restart(&mut self, position: Position) {
        self.epoch = position.epoch;
        self.start(position.revision);
    }

    /// The epoch the revisions held count in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The key set's revision and its epoch.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            revision: self.revision,
        }
    }

    /// The log covers revisions after this one.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The key set's revision as of the last recorded batch.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of batches held.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Records held, over all batches.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Records what the key set just applied to reach `batch.revision`.
    pub fn record(&mut self, batch: Changes) -> Recorded {
        let moves_back = batch.revision < self.revision;
        let changes_in_place = batch.revision == self.revision && !batch.is_empty();
        if moves_back || changes_in_place {
            self.start(batch.revision);
            return Recorded::Reset(batch.revision);
        }
        self.revision = batch.revision;
        if batch.is_empty() {
            return Recorded::Advanced;
        }
        let batch = Arc::new(batch);
        self.records += batch.len();
        self.batches.push_back(batch.clone());
        self.truncate();
        Recorded::Appended(batch)
    }

    fn truncate(&mut self) {
        while self.records > self.max_records {
            let Some(oldest) = self.batches.pop_front() else {
                break;
            };
            self.records -= oldest.len();
            self.base = oldest.revision;
        }
    }

    /// The batches a client complete up to `after` is missing, oldest first, or `None`
    /// when the log no longer reaches back to `after` (`after < base`). A client ahead
    /// of the key set (`after > revision`) is missing nothing held here.
    pub fn since(&self, after: u64) -> Option<Vec<Arc<Changes>>> {
        if after < self.base {
            return None;
        }
        let first = self
            .batches
            .partition_point(|batch| batch.revision <= after);
        Some(self.batches.range(first..).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use keysync_contract::key_hash::KeyHash;

    use super::*;
    use crate::key_set::key_entry::KeyEntry;

    /// A batch at `revision` with `upserts` upserts and one removal.
    fn batch(revision: u64, upserts: u8) -> Changes {
        Changes {
            revision,
            upserts: (0..upserts).map(KeyEntry::numbered).collect(),
            removals: vec![KeyHash([0xff; 32])],
        }
    }

    fn revisions(batches: &[Arc<Changes>]) -> Vec<u64> {
        batches.iter().map(|batch| batch.revision).collect()
    }

    #[test]
    fn covers_revisions_after_the_base_up_to_the_store() {
        let mut log = Changelog::new(100);
        log.start(10);
        assert_eq!(log.since(10), Some(vec![]));
        assert_eq!(log.since(9), None, "before the snapshot");
        assert_eq!(log.since(0), None);

        assert!(matches!(log.record(batch(12, 1)), Recorded::Appended(_)));
        assert!(matches!(log.record(batch(15, 1)), Recorded::Appended(_)));
        assert_eq!(
            log.record(Changes {
                revision: 16,
                ..Changes::default()
            }),
            Recorded::Advanced
        );
        assert_eq!((log.base(), log.revision(), log.len()), (10, 16, 2));
        assert_eq!(revisions(&log.since(10).unwrap()), vec![12, 15]);
        assert_eq!(revisions(&log.since(11).unwrap()), vec![12, 15]);
        assert_eq!(revisions(&log.since(12).unwrap()), vec![15]);
        assert_eq!(revisions(&log.since(16).unwrap()), Vec::<u64>::new());
        assert_eq!(
            revisions(&log.since(99).unwrap()),
            Vec::<u64>::new(),
            "ahead"
        );
    }

    #[test]
    fn oldest_batches_go_first_and_the_base_follows() {
        let mut log = Changelog::new(5);
        log.start(1);
        log.record(batch(2, 1)); // 2 records
        log.record(batch(3, 1)); // 4
        assert_eq!((log.base(), log.records()), (1, 4));
        log.record(batch(4, 2)); // 7 > 5: batch 2 goes
        assert_eq!((log.base(), log.records(), log.len()), (2, 5, 2));
        assert_eq!(log.since(1), None);
        assert_eq!(revisions(&log.since(2).unwrap()), vec![3, 4]);

        // A batch larger than the bound is not kept at all (watchers already
        // connected still receive it live).
        assert!(matches!(log.record(batch(5, 9)), Recorded::Appended(_)));
        assert_eq!((log.base(), log.revision(), log.len()), (5, 5, 0));
        assert_eq!(log.records(), 0);
        assert_eq!(log.since(4), None);
        assert_eq!(log.since(5), Some(vec![]));
    }

    #[test]
    fn going_back_or_changing_in_place_resets() {
        let mut log = Changelog::new(100);
        log.start(7);
        log.record(batch(8, 1));
        assert_eq!(log.record(batch(8, 1)), Recorded::Reset(8));
        assert_eq!((log.base(), log.revision(), log.len()), (8, 8, 0));
        assert_eq!(
            log.record(Changes {
                revision: 8,
                ..Changes::default()
            }),
            Recorded::Advanced
        );
        assert_eq!(log.record(batch(3, 1)), Recorded::Reset(3));
        assert_eq!((log.base(), log.revision()), (3, 3));
    }
}
