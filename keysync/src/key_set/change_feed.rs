//! The changelog shared between the reloader (which records every change applied to
//! the key set) and the watch streams (which replay it and follow it live).
//!
//! Recording appends to the log and broadcasts the batch under one lock, and a watcher
//! subscribes and reads the log under that same lock, so every batch a watcher could
//! miss between reading the log and listening is in one or the other (or both; watchers
//! skip what they have already sent by revision).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast;

use crate::key_set::changelog::{Changelog, Recorded};
use crate::key_set::changes::Changes;
use crate::key_set::position::Position;

/// Events buffered per watcher before it counts as lagging (it then replays from the
/// log, or reloads).
pub const BROADCAST_CAPACITY: usize = 1024;

/// What watchers hear live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A batch of changes at a new revision.
    Batch(Arc<Changes>),
    /// History was dropped at this position (a change the revisions cannot express, or
    /// another revision history altogether): every watcher must tell its client to
    /// reload.
    Reset(Position),
}

/// The shared changelog and its live broadcast.
#[derive(Debug)]
pub struct ChangeFeed {
    log: Mutex<Changelog>,
    events: broadcast::Sender<FeedEvent>,
}

impl ChangeFeed {
    /// A feed keeping at most `max_records` records for replay.
    pub fn new(max_records: usize) -> Self {
        ChangeFeed::with_capacity(max_records, BROADCAST_CAPACITY)
    }

    /// As [`ChangeFeed::new`], with `capacity` events buffered per watcher.
    pub fn with_capacity(max_records: usize, capacity: usize) -> Self {
        let (events, _) = broadcast::channel(capacity.max(1));
        ChangeFeed {
            log: Mutex::new(Changelog::new(max_records)),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Changelog> {
        // The log is only ever replaced whole or appended to; keep serving after a panic.
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the log at the first full snapshot's revision.
    pub fn start(&self, revision: u64) {
        self.lock().start(revision);
    }

    /// Starts the log over at `position` (the first full snapshot, or a reload into
    /// another revision history) and tells every watcher to have its client reload.
    pub fn restart(&self, position: Position) {
        let mut log = self.lock();
        log.restart(position);
        // An error only means that nobody is watching.
        let _ = self.events.send(FeedEvent::Reset(position));
    }

    /// Records a batch the key set applied, and tells watchers. Returns what happened.
    pub fn record(&self, batch: Changes) -> Recorded {
        let mut log = self.lock();
        let recorded = log.record(batch);
        let event = match &recorded {
            Recorded::Appended(batch) => Some(FeedEvent::Batch(batch.clone())),
            Recorded::Reset(_) => Some(FeedEvent::Reset(log.position())),
            Recorded::Advanced => None,
        };
        if let Some(event) = event {
            // An error only means that nobody is watching.
            let _ = self.events.send(event);
        }
        recorded
    }

    /// Subscribes to live events, then reads the log with `read`, both under the lock:
    /// every event after what `read` saw arrives on the receiver.
    pub fn subscribe<T>(
        &self,
        read: impl FnOnce(&Changelog) -> T,
    ) -> (broadcast::Receiver<FeedEvent>, T) {
        let log = self.lock();
        let receiver = self.events.subscribe();
        let seen = read(&log);
        (receiver, seen)
    }

    /// Reads the log (without subscribing).
    pub fn read<T>(&self, read: impl FnOnce(&Changelog) -> T) -> T {
        read(&self.lock())
    }

    /// The key set's revision as of the last recorded batch.
    pub fn revision(&self) -> u64 {
        self.lock().revision()
    }

    /// The key set's revision and its epoch as of the last recorded batch.
    pub fn position(&self) -> Position {
        self.lock().position()
    }

    /// Batches held for replay.
    pub fn batches(&self) -> usize {
        self.lock().len()
    }

    /// How many records the held batches carry together.
    pub fn records(&self) -> usize {
        self.lock().records()
    }
}

#[cfg(test)]
mod tests {
    use keysync_contract::key_hash::KeyHash;

    use super::*;

    fn batch(revision: u64) -> Changes {
        Changes {
            revision,
            upserts: vec![],
            removals: vec![KeyHash([revision as u8; 32])],
        }
    }

    #[test]
    fn events_after_the_read_arrive_on_the_receiver() {
        let feed = ChangeFeed::new(100);
        feed.start(1);
        feed.record(batch(2));
        let (mut receiver, seen) = feed.subscribe(|log| log.since(1));
        assert_eq!(seen.unwrap().len(), 1);
        assert!(receiver.try_recv().is_err(), "batch 2 was in the log only");
        feed.record(batch(3));
        feed.record(Changes {
            revision: 4,
            ..Changes::default()
        });
        feed.record(batch(4));
        match receiver.try_recv().unwrap() {
            FeedEvent::Batch(batch) => assert_eq!(batch.revision, 3),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            receiver.try_recv().unwrap(),
            FeedEvent::Reset(Position {
                epoch: 0,
                revision: 4
            })
        );
        assert_eq!(feed.revision(), 4);
        assert_eq!(feed.batches(), 0);
    }

    #[test]
    fn a_restart_into_another_history_is_announced() {
        let feed = ChangeFeed::new(100);
        feed.restart(Position {
            epoch: 7,
            revision: 10,
        });
        feed.record(batch(11));
        let (mut receiver, _) = feed.subscribe(|_| ());
        let elsewhere = Position {
            epoch: 9,
            revision: 3,
        };
        feed.restart(elsewhere);
        assert_eq!(receiver.try_recv().unwrap(), FeedEvent::Reset(elsewhere));
        assert_eq!(feed.position(), elsewhere);
        assert_eq!(feed.batches(), 0);
        assert_eq!(
            feed.read(|log| log.since(11)),
            Some(vec![]),
            "ahead of the new log"
        );
        assert_eq!(feed.read(|log| log.since(2)), None);
    }
}
