//! The store's organization table: each organization id once, so that a key record
//! names its organization by a 4-byte reference instead of a 16-byte id.
//!
//! The table lives in shared data beside the buckets, in [`ORG_SHARDS`] entries picked
//! by the id's bytes. An entry only ever grows (an id keeps its place for the VM's
//! life), so a reference read from any bucket stays valid, and writers on several
//! workers agree by compare-and-swap. Memory stays bounded: an entry holds at most
//! [`ORG_SHARD_CAP`] ids (16 MB for the whole table); past that, a record carries its
//! organization id itself (`key_record`'s inline flag), which costs that key 16 bytes
//! and nothing else.

use crate::host::{SharedData, WriteError};
use keysync_contract::id::Id;
use std::cell::RefCell;

/// Entries of the table; an id's entry is the XOR of its bytes (random in UUIDv4 and
/// in the random tail of UUIDv7, whose first bytes are a timestamp).
pub const ORG_SHARDS: usize = 256;
/// Ids an entry holds at most: 256 entries of 4,096 ids are 1,048,576 organizations.
pub const ORG_SHARD_CAP: usize = 4096;
/// Compare-and-swap attempts before a writer gives up and stores the id inline.
const MAX_CAS_ATTEMPTS: usize = 8;
/// First byte of every table entry.
const FORMAT_VERSION: u8 = 1;
const ID_LEN: usize = 16;

/// What a bucket needs to write and read organization references.
pub trait OrgTable {
    /// The reference of `org`, adding it to the table if needed; `None` when the table
    /// cannot take it (full, or too contended): the record then stores the id inline.
    fn reference(&self, org: &Id) -> Option<u32>;
    /// The id a reference stands for; `None` for a reference the table does not hold.
    fn id(&self, reference: u32) -> Option<Id>;
}

fn shard_of(org: &Id) -> u32 {
    u32::from(org.0.iter().fold(0u8, |acc, byte| acc ^ byte))
}

fn entry_name(shard: u32) -> EntryName {
    const PREFIX: &[u8] = b"keysync.o.";
    let mut bytes = [0u8; 12];
    let (prefix, digits) = bytes.split_at_mut(PREFIX.len());
    prefix.copy_from_slice(PREFIX);
    for (slot, shift) in digits.iter_mut().zip([4u32, 0]) {
        let nibble = ((shard >> shift) & 0xf) as u8;
        *slot = if nibble < 10 {
            b'0' + nibble
        } else {
            b'a' + nibble - 10
        };
    }
    EntryName(bytes)
}

/// A table entry's shared-data key, on the stack.
struct EntryName([u8; 12]);

impl EntryName {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("keysync.o.00")
    }
}

/// The ids an entry holds, in order; `None` for bytes that are not an entry.
fn ids_of(bytes: &[u8]) -> Option<&[u8]> {
    match bytes {
        [FORMAT_VERSION, ids @ ..] if ids.len() % ID_LEN == 0 => Some(ids),
        _ => None,
    }
}

/// The table kept in shared data, with the references this caller has already seen
/// (they never change meaning, so remembering them saves a read per record).
pub struct SharedOrgTable<S> {
    data: S,
    known: RefCell<Vec<(Id, u32)>>,
}

impl<S: SharedData> SharedOrgTable<S> {
    pub fn new(data: S) -> Self {
        SharedOrgTable {
            data,
            known: RefCell::new(Vec::new()),
        }
    }

    fn remembered(&self, org: &Id) -> Option<u32> {
        let known = self.known.borrow();
        known.iter().find(|(id, _)| id == org).map(|(_, r)| *r)
    }

    fn remember(&self, org: Id, reference: u32) {
        let mut known = self.known.borrow_mut();
        // A writer's page names few organizations; a bound keeps a pathological one cheap.
        if known.len() >= 64 {
            known.clear();
        }
        known.push((org, reference));
    }
}

impl<S: SharedData> OrgTable for SharedOrgTable<S> {
    fn reference(&self, org: &Id) -> Option<u32> {
        if let Some(reference) = self.remembered(org) {
            return Some(reference);
        }
        let shard = shard_of(org);
        let name = entry_name(shard);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = self.data.get(name.as_str());
            let current = match entry.value.as_deref() {
                None => &[][..],
                Some(bytes) => ids_of(bytes)?,
            };
            let found = current
                .chunks_exact(ID_LEN)
                .position(|id| id == org.0.as_slice());
            let position = match found {
                Some(position) => position,
                None => {
                    let position = current.len() / ID_LEN;
                    if position >= ORG_SHARD_CAP {
                        return None;
                    }
                    let mut grown = Vec::with_capacity(1 + current.len() + ID_LEN);
                    grown.push(FORMAT_VERSION);
                    grown.extend_from_slice(current);
                    grown.extend_from_slice(&org.0);
                    match self.data.set(name.as_str(), &grown, entry.cas) {
                        Ok(()) => position,
                        Err(WriteError::CasMismatch) => continue,
                        Err(WriteError::Host(_)) => return None,
                    }
                }
            };
            let reference = (shard << 16) | u32::try_from(position).ok()?;
            self.remember(*org, reference);
            return Some(reference);
        }
        None
    }

    fn id(&self, reference: u32) -> Option<Id> {
        let (shard, position) = (reference >> 16, (reference & 0xffff) as usize);
        if shard as usize >= ORG_SHARDS {
            return None;
        }
        self.data.read(entry_name(shard).as_str(), |bytes| {
            let ids = ids_of(bytes?)?;
            Id::from_slice(ids.get(position * ID_LEN..(position + 1) * ID_LEN)?)
        })
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::host::fake_shared_data::FakeSharedData;

    /// A table in a test's memory, with a capacity to overflow.
    pub struct MemoryOrgTable {
        pub ids: RefCell<Vec<Id>>,
        pub cap: usize,
    }

    impl Default for MemoryOrgTable {
        fn default() -> Self {
            MemoryOrgTable {
                ids: RefCell::new(Vec::new()),
                cap: usize::MAX,
            }
        }
    }

    impl OrgTable for MemoryOrgTable {
        fn reference(&self, org: &Id) -> Option<u32> {
            let mut ids = self.ids.borrow_mut();
            let position = match ids.iter().position(|id| id == org) {
                Some(position) => position,
                None if ids.len() >= self.cap => return None,
                None => {
                    ids.push(*org);
                    ids.len() - 1
                }
            };
            u32::try_from(position).ok()
        }

        fn id(&self, reference: u32) -> Option<Id> {
            self.ids.borrow().get(reference as usize).copied()
        }
    }

    #[test]
    fn an_organization_keeps_one_reference_that_reads_back() {
        let data = FakeSharedData::default();
        let table = SharedOrgTable::new(&data);
        let (a, b) = (Id([1; 16]), Id([2; 16]));
        let ra = table.reference(&a).unwrap();
        let rb = table.reference(&b).unwrap();
        assert_ne!(ra, rb);
        assert_eq!(table.reference(&a), Some(ra));
        // Another writer (a fresh table on the same data) finds the same references.
        let other = SharedOrgTable::new(&data);
        assert_eq!(other.reference(&b), Some(rb));
        assert_eq!(other.id(ra), Some(a));
        assert_eq!(other.id(rb), Some(b));
        assert_eq!(other.id(rb + 1), None, "a reference past the entry");
        assert_eq!(other.id(u32::MAX), None);
    }

    #[test]
    fn ids_of_one_entry_take_consecutive_places() {
        let data = FakeSharedData::default();
        let table = SharedOrgTable::new(&data);
        // Same XOR of bytes, so the same entry.
        let mut first = [0u8; 16];
        first[0] = 7;
        let mut second = [0u8; 16];
        second[1] = 7;
        let (r1, r2) = (
            table.reference(&Id(first)).unwrap(),
            table.reference(&Id(second)).unwrap(),
        );
        assert_eq!((r1 >> 16, r1 & 0xffff), (7, 0));
        assert_eq!((r2 >> 16, r2 & 0xffff), (7, 1));
        assert_eq!(
            data.value("keysync.o.07").map(|v| v.len()),
            Some(1 + 2 * 16)
        );
    }

    #[test]
    fn a_full_entry_refuses_new_ids_and_keeps_the_old_ones() {
        let data = FakeSharedData::default();
        let table = SharedOrgTable::new(&data);
        // Ids whose bytes XOR to 0: all in entry 0.
        let id = |n: u16| {
            let mut bytes = [0u8; 16];
            bytes[0..2].copy_from_slice(&n.to_le_bytes());
            bytes[2..4].copy_from_slice(&n.to_le_bytes());
            Id(bytes)
        };
        for n in 0..ORG_SHARD_CAP as u16 {
            assert_eq!(table.reference(&id(n)), Some(u32::from(n)));
        }
        assert_eq!(table.reference(&id(ORG_SHARD_CAP as u16)), None, "full");
        assert_eq!(table.reference(&id(5)), Some(5), "still known");
        assert_eq!(
            data.value("keysync.o.00").map(|v| v.len()),
            Some(1 + ORG_SHARD_CAP * 16),
            "bounded"
        );
    }

    #[test]
    fn an_entry_it_cannot_read_gives_no_reference() {
        let data = FakeSharedData::default();
        data.put("keysync.o.00", &[9, 1, 2]);
        let table = SharedOrgTable::new(&data);
        assert_eq!(table.reference(&Id([0; 16])), None);
        assert_eq!(table.id(0), None);
    }
}
