//! The lookup ledger: which records the miss path vouched for in the store, with the
//! revision keysync answered at and when keysync had last confirmed its data, in one
//! bounded shared-data entry, until the store's own sync covers them.
//!
//! Buckets keep no history per record, and two rules need some:
//!
//! - A full refresh that rewrites a bucket from a page older than such a record keeps
//!   the record (the page predates the key), and drops it from a page as new or newer
//!   (the key was revoked or changed by then: keeping it would resurrect it). Stream
//!   changes laid over the pages still win over both.
//! - A store that is not trusted (no complete sync yet, or unconfirmed for longer than
//!   `max_staleness`) still admits such a record while keysync cannot answer, until
//!   `max_staleness` after keysync's own confirmation of it: so a key the miss path
//!   answered just before keysync stalled keeps working, exactly as long as a synced
//!   store would.
//!
//! Confirmation times are the host's wall clock in milliseconds, as every VM of one
//! Envoy reads it. A time in the future (the clock stepped back past it) vouches for
//! nothing. Entries live only until the sync service has the store complete past them
//! (`prune`), seconds in the usual case.

use crate::host::{SharedData, WriteError};
use crate::store::key_record::same_stored_key;
use keysync_contract::key_hash::{KeyHash, KEY_HASH_LEN};

/// Shared-data key of the ledger.
pub const LEDGER_ENTRY: &str = "keysync.lookups";

/// Entries kept; past this, the one of lowest revision makes room. 56 bytes each.
pub const CAPACITY: usize = 256;

const FORMAT_VERSION: u8 = 1;
const ENTRY_LEN: usize = KEY_HASH_LEN + 8 * 3;
const MAX_CAS_ATTEMPTS: usize = 8;

/// One record the miss path vouched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub hash: KeyHash,
    /// keysync's revision history and revision when it answered.
    pub epoch: u64,
    pub revision: u64,
    /// When (host wall clock, unix ms) keysync had last confirmed the data it answered
    /// from against PostgreSQL.
    pub confirmed_at_ms: u64,
}

impl Lookup {
    /// Whether it vouches for its record at `now_ms`, given `max_age_ms`.
    pub fn vouches_at(&self, now_ms: u64, max_age_ms: u64) -> bool {
        now_ms >= self.confirmed_at_ms && now_ms - self.confirmed_at_ms <= max_age_ms
    }
}

/// The ledger as read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LookupLedger {
    entries: Vec<Lookup>,
}

impl LookupLedger {
    pub fn read<S: SharedData>(data: &S) -> Self {
        data.read(LEDGER_ENTRY, decode)
    }

    /// The lookup of `hash`, whole or as a bucket stores it (`same_stored_key`).
    pub fn find(&self, hash: &KeyHash) -> Option<&Lookup> {
        self.entries
            .iter()
            .find(|entry| same_stored_key(&entry.hash, hash))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

fn decode(bytes: Option<&[u8]>) -> LookupLedger {
    let Some([FORMAT_VERSION, rest @ ..]) = bytes else {
        return LookupLedger::default();
    };
    let field = |chunk: &[u8], at: usize| {
        chunk
            .get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let entries = rest
        .chunks_exact(ENTRY_LEN)
        .filter_map(|chunk| {
            Some(Lookup {
                hash: KeyHash::from_slice(chunk.get(..KEY_HASH_LEN)?)?,
                epoch: field(chunk, KEY_HASH_LEN),
                revision: field(chunk, KEY_HASH_LEN + 8),
                confirmed_at_ms: field(chunk, KEY_HASH_LEN + 16),
            })
        })
        .collect();
    LookupLedger { entries }
}

fn encode(entries: &[Lookup]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * ENTRY_LEN);
    out.push(FORMAT_VERSION);
    for entry in entries {
        out.extend_from_slice(&entry.hash.0);
        out.extend_from_slice(&entry.epoch.to_le_bytes());
        out.extend_from_slice(&entry.revision.to_le_bytes());
        out.extend_from_slice(&entry.confirmed_at_ms.to_le_bytes());
    }
    out
}

/// Rewrites the ledger with `change` applied to its entries (compare-and-swap: every
/// worker and the sync service write it). Writes nothing when `change` says so
/// (returns `false`). An error only when the entry kept changing or the host refused.
fn update<S: SharedData>(
    data: &S,
    mut change: impl FnMut(&mut Vec<Lookup>) -> bool,
) -> Result<(), WriteError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let entry = data.get(LEDGER_ENTRY);
        let mut entries = decode(entry.value.as_deref()).entries;
        if !change(&mut entries) {
            return Ok(());
        }
        match data.set(LEDGER_ENTRY, &encode(&entries), entry.cas) {
            Err(WriteError::CasMismatch) => continue,
            done => return done,
        }
    }
    Err(WriteError::CasMismatch)
}

/// Records `lookup`, replacing an older entry of the same key; a full ledger drops its
/// entry of lowest revision (whose record is then only as safe as before the ledger:
/// dropped by an older page, or decided by keysync).
pub fn note<S: SharedData>(data: &S, lookup: Lookup) -> Result<(), WriteError> {
    update(data, |entries| {
        if let Some(known) = entries.iter_mut().find(|e| e.hash == lookup.hash) {
            let newer = (lookup.epoch, lookup.revision, lookup.confirmed_at_ms)
                > (known.epoch, known.revision, known.confirmed_at_ms);
            if newer {
                *known = lookup;
            }
            return newer;
        }
        if entries.len() >= CAPACITY {
            let oldest = entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.revision)
                .map(|(i, _)| i);
            if let Some(i) = oldest {
                entries.swap_remove(i);
            }
        }
        entries.push(lookup);
        true
    })
}

/// Forgets `hash`: keysync has since said it does not know the key (revoked), so the
/// record the miss path cached must not vouch for it any more.
pub fn forget<S: SharedData>(data: &S, hash: &KeyHash) -> Result<(), WriteError> {
    update(data, |entries| {
        let before = entries.len();
        entries.retain(|e| e.hash != *hash);
        entries.len() != before
    })
}

/// Drops what the store now holds by its own sync: entries of another revision
/// history than `epoch`, and those at or below `complete`, the revision the store is
/// complete up to. `complete` `None` drops every entry (a resync replaced the store's
/// baseline, so no revision of before compares with the new ones).
pub fn prune<S: SharedData>(data: &S, epoch: u64, complete: Option<u64>) -> Result<(), WriteError> {
    update(data, |entries| {
        let before = entries.len();
        entries.retain(|e| complete.is_some_and(|c| e.epoch == epoch && e.revision > c));
        entries.len() != before
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_shared_data::FakeSharedData;

    fn lookup(n: u8, revision: u64) -> Lookup {
        Lookup {
            hash: KeyHash([n; 32]),
            epoch: 5,
            revision,
            confirmed_at_ms: 1_000 + revision,
        }
    }

    #[test]
    fn notes_round_trip_and_a_key_is_noted_once() {
        let data = FakeSharedData::default();
        assert!(LookupLedger::read(&data).is_empty());
        note(&data, lookup(1, 10)).unwrap();
        note(&data, lookup(2, 11)).unwrap();
        note(&data, lookup(1, 12)).unwrap();
        let writes = data.writes.get();
        note(&data, lookup(1, 9)).unwrap();
        assert_eq!(data.writes.get(), writes, "an older answer changes nothing");
        let ledger = LookupLedger::read(&data);
        assert_eq!(ledger.len(), 2);
        assert_eq!(ledger.find(&KeyHash([1; 32])), Some(&lookup(1, 12)));
        assert_eq!(ledger.find(&KeyHash([3; 32])), None);
    }

    #[test]
    fn a_full_ledger_drops_its_lowest_revision() {
        let data = FakeSharedData::default();
        for n in 0..CAPACITY {
            note(&data, lookup(n as u8, 100 + n as u64)).unwrap();
        }
        let mut newest = [1u8; 32];
        newest[31] = 0;
        note(
            &data,
            Lookup {
                hash: KeyHash(newest),
                ..lookup(0, 1_000)
            },
        )
        .unwrap();
        let ledger = LookupLedger::read(&data);
        assert_eq!(ledger.len(), CAPACITY);
        assert_eq!(
            ledger.find(&KeyHash([0; 32])),
            None,
            "revision 100 made room"
        );
        assert!(ledger.find(&KeyHash([1; 32])).is_some());
        assert!(data.value(LEDGER_ENTRY).unwrap().len() <= 1 + CAPACITY * ENTRY_LEN);
    }

    #[test]
    fn pruning_keeps_only_what_the_store_is_not_complete_up_to() {
        let data = FakeSharedData::default();
        note(&data, lookup(1, 10)).unwrap();
        note(&data, lookup(2, 20)).unwrap();
        note(
            &data,
            Lookup {
                epoch: 6,
                ..lookup(3, 30)
            },
        )
        .unwrap();
        prune(&data, 5, Some(15)).unwrap();
        let ledger = LookupLedger::read(&data);
        assert_eq!(ledger.find(&KeyHash([2; 32])), Some(&lookup(2, 20)));
        assert_eq!(ledger.len(), 1, "covered, and of another history, went");
        let writes = data.writes.get();
        prune(&data, 5, Some(15)).unwrap();
        assert_eq!(
            data.writes.get(),
            writes,
            "nothing to drop, nothing written"
        );
        prune(&data, 5, None).unwrap();
        assert!(LookupLedger::read(&data).is_empty());
    }

    #[test]
    fn a_forgotten_key_is_gone_and_forgetting_an_unknown_one_writes_nothing() {
        let data = FakeSharedData::default();
        note(&data, lookup(1, 10)).unwrap();
        note(&data, lookup(2, 10)).unwrap();
        forget(&data, &KeyHash([1; 32])).unwrap();
        let ledger = LookupLedger::read(&data);
        assert_eq!(ledger.find(&KeyHash([1; 32])), None);
        assert!(ledger.find(&KeyHash([2; 32])).is_some());
        let writes = data.writes.get();
        forget(&data, &KeyHash([9; 32])).unwrap();
        assert_eq!(data.writes.get(), writes);
    }

    #[test]
    fn a_lookup_vouches_until_max_age_after_its_confirmation_never_before_it() {
        let noted = lookup(1, 10);
        let at = noted.confirmed_at_ms;
        assert!(noted.vouches_at(at, 60_000));
        assert!(noted.vouches_at(at + 60_000, 60_000));
        assert!(!noted.vouches_at(at + 60_001, 60_000));
        assert!(!noted.vouches_at(at - 1, 60_000), "a clock stepped back");
    }

    #[test]
    fn garbage_reads_as_an_empty_ledger() {
        for bytes in [&b""[..], b"\x07abc", b"\x01short"] {
            let data = FakeSharedData::default();
            data.put(LEDGER_ENTRY, bytes);
            assert!(LookupLedger::read(&data).is_empty());
        }
    }
}
