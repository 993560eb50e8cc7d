//! The filter's side of the `WatchKeys` stream: which revision the store is complete up
//! to, and what each message keysync sends means for it (keysync's side is its watch
//! server).

use crate::keysync_api::provenance::Provenance;
use crate::store::key_record::{KeyRecord, RecordError};
use crate::store::key_store::Change;
use keysync_contract::key_hash::KeyHash;
use keysync_proto::v1 as proto;

pub struct Watch {
    /// The revision history `complete` counts in; 0 when the store has none yet.
    epoch: u64,
    /// Every change up to this revision is in the store.
    complete: u64,
    /// The revision of a change set whose remaining parts are still to come.
    partial: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Changes to apply, in order.
    Apply {
        revision: u64,
        changes: Vec<Change>,
        provenance: Provenance,
    },
    /// Nothing changed; keysync is alive and says how fresh its data is.
    Heartbeat { provenance: Provenance },
    /// keysync cannot replay what the store misses: reload everything.
    Resync,
}

#[derive(Debug, PartialEq, Eq)]
pub enum WatchError {
    Backwards {
        complete: u64,
        received: u64,
    },
    /// keysync's revision history is not the store's (a restore, a failover).
    EpochChanged {
        store: u64,
        received: u64,
    },
    PartialMismatch {
        expected: u64,
        received: u64,
    },
    BadRecord(RecordError),
    BadRemoval,
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::Backwards { complete, received } => write!(
                f,
                "revision went backwards: store complete up to {complete}, received {received}"
            ),
            WatchError::EpochChanged { store, received } => write!(
                f,
                "keysync's revision history changed: store epoch {store:x}, received {received:x}"
            ),
            WatchError::PartialMismatch { expected, received } => write!(
                f,
                "a split change set of revision {expected} was interrupted by revision {received}"
            ),
            WatchError::BadRecord(e) => write!(f, "bad key record: {e}"),
            WatchError::BadRemoval => f.write_str("a removal is not a 32-byte key hash"),
        }
    }
}

impl Watch {
    pub fn new(epoch: u64, after_revision: u64) -> Self {
        Watch {
            epoch,
            complete: after_revision,
            partial: None,
        }
    }

    pub fn complete(&self) -> u64 {
        self.complete
    }

    /// A split change set has begun and its last part has not arrived yet.
    pub fn in_partial(&self) -> bool {
        self.partial.is_some()
    }

    /// Checks a whole message before anything in it is applied.
    pub fn on_message(&mut self, message: proto::KeyChanges) -> Result<Step, WatchError> {
        if message.resync_required {
            return Ok(Step::Resync);
        }
        let provenance = Provenance::from_proto(message.provenance.as_ref());
        if self.epoch != 0 && provenance.epoch != self.epoch {
            return Err(WatchError::EpochChanged {
                store: self.epoch,
                received: provenance.epoch,
            });
        }
        if message.revision < self.complete {
            return Err(WatchError::Backwards {
                complete: self.complete,
                received: message.revision,
            });
        }
        if let Some(expected) = self.partial {
            if message.revision != expected {
                return Err(WatchError::PartialMismatch {
                    expected,
                    received: message.revision,
                });
            }
        }
        let mut changes = Vec::with_capacity(message.upserts.len() + message.removals.len());
        for record in &message.upserts {
            let record = KeyRecord::from_proto(record).map_err(WatchError::BadRecord)?;
            changes.push(Change::Upsert(record));
        }
        for hash in &message.removals {
            let hash = KeyHash::from_slice(hash).ok_or(WatchError::BadRemoval)?;
            changes.push(Change::Remove(hash));
        }
        if message.partial {
            self.partial = Some(message.revision);
        } else {
            self.partial = None;
            self.complete = message.revision;
        }
        if changes.is_empty() {
            return Ok(Step::Heartbeat { provenance });
        }
        Ok(Step::Apply {
            revision: message.revision,
            changes,
            provenance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPOCH: u64 = 0xabc;

    fn record(key: &str) -> proto::KeyRecord {
        proto::KeyRecord {
            key_hash: KeyHash::of_key(key.as_bytes()).0.to_vec(),
            key_id: vec![1; 16],
            org_id: vec![2; 16],
            expires_at: 0,
            rate_limit: None,
            ..Default::default()
        }
    }

    fn changes(revision: u64, upserts: &[&str], removals: &[&str]) -> proto::KeyChanges {
        proto::KeyChanges {
            revision,
            upserts: upserts.iter().map(|k| record(k)).collect(),
            removals: removals
                .iter()
                .map(|k| KeyHash::of_key(k.as_bytes()).0.to_vec())
                .collect(),
            resync_required: false,
            partial: false,
            provenance: Some(proto::Provenance {
                epoch: EPOCH,
                confirmed_age_ms: 100,
            }),
        }
    }

    #[test]
    fn applies_changes_and_advances() {
        let mut watch = Watch::new(EPOCH, 10);
        let step = watch.on_message(changes(11, &["a"], &["b"])).unwrap();
        let Step::Apply {
            revision, changes, ..
        } = step
        else {
            panic!("expected changes, got {step:?}");
        };
        assert_eq!(revision, 11);
        assert_eq!(changes.len(), 2);
        assert!(matches!(changes[0], Change::Upsert(_)));
        assert_eq!(changes[1], Change::Remove(KeyHash::of_key(b"b")));
        assert_eq!(watch.complete(), 11);
    }

    #[test]
    fn heartbeats_keep_the_revision() {
        let mut watch = Watch::new(EPOCH, 10);
        let heartbeat = Ok(Step::Heartbeat {
            provenance: Provenance {
                epoch: EPOCH,
                confirmed_age_ms: 100,
            },
        });
        assert_eq!(watch.on_message(changes(10, &[], &[])), heartbeat);
        assert_eq!(watch.on_message(changes(12, &[], &[])), heartbeat);
        assert_eq!(watch.complete(), 12);
    }

    #[test]
    fn refuses_a_revision_going_backwards() {
        let mut watch = Watch::new(EPOCH, 10);
        assert_eq!(
            watch.on_message(changes(9, &["a"], &[])),
            Err(WatchError::Backwards {
                complete: 10,
                received: 9
            })
        );
        assert_eq!(watch.complete(), 10);
    }

    #[test]
    fn split_change_sets_complete_on_their_last_part() {
        let mut watch = Watch::new(EPOCH, 10);
        let mut first = changes(11, &["a"], &[]);
        first.partial = true;
        assert!(matches!(watch.on_message(first), Ok(Step::Apply { .. })));
        assert_eq!(watch.complete(), 10, "not complete until the last part");
        assert_eq!(
            watch.on_message(changes(12, &["b"], &[])),
            Err(WatchError::PartialMismatch {
                expected: 11,
                received: 12
            })
        );
        assert!(matches!(
            watch.on_message(changes(11, &["c"], &[])),
            Ok(Step::Apply { .. })
        ));
        assert_eq!(watch.complete(), 11);
    }

    #[test]
    fn resync_and_bad_messages() {
        let mut watch = Watch::new(EPOCH, 10);
        let mut resync = changes(50, &[], &[]);
        resync.resync_required = true;
        assert_eq!(watch.on_message(resync), Ok(Step::Resync));

        let mut bad = changes(11, &["a"], &[]);
        bad.upserts[0].org_id = vec![1];
        assert!(matches!(
            watch.on_message(bad),
            Err(WatchError::BadRecord(_))
        ));
        let mut bad_removal = changes(11, &[], &[]);
        bad_removal.removals.push(vec![1, 2, 3]);
        assert_eq!(watch.on_message(bad_removal), Err(WatchError::BadRemoval));
        assert_eq!(watch.complete(), 10, "nothing of a bad message is taken");
    }

    #[test]
    fn a_message_of_another_history_is_refused() {
        let mut watch = Watch::new(EPOCH, 10);
        let mut other = changes(11, &["a"], &[]);
        other.provenance = Some(proto::Provenance {
            epoch: EPOCH + 1,
            confirmed_age_ms: 0,
        });
        assert_eq!(
            watch.on_message(other),
            Err(WatchError::EpochChanged {
                store: EPOCH,
                received: EPOCH + 1
            })
        );
        assert_eq!(watch.complete(), 10);
        let mut unknown = Watch::new(0, 10);
        assert!(
            unknown.on_message(changes(11, &["a"], &[])).is_ok(),
            "a store without an epoch takes the stream's"
        );
    }

    #[test]
    fn upserts_carry_their_policy() {
        let mut watch = Watch::new(EPOCH, 10);
        let mut message = changes(11, &["a"], &[]);
        message.upserts[0].scopes = vec!["orders:read".into()];
        let Ok(Step::Apply { changes, .. }) = watch.on_message(message) else {
            panic!("expected changes");
        };
        let Change::Upsert(record) = &changes[0] else {
            panic!("expected an upsert");
        };
        assert_eq!(
            record.policy.as_ref().map(|p| p.scopes.clone()),
            Some(vec!["orders:read".to_string()])
        );
    }
}
