//! The store every worker and the main thread see, in the process's own memory: what
//! proxy-wasm's shared data is for the wasm filter (the core's `SharedData`), with the same
//! rules: entries by name, a version for compare-and-swap, no delete (the core keeps its
//! memory bounded by rewriting a fixed set of entries).
//!
//! Reads never wait for a writer and never write a shared cache line: each entry is an
//! immutable version behind an `ArcSwap` (read-copy-update: a writer builds the new version
//! and swaps the pointer; a reader that loaded the old one keeps it until it is done). The
//! name-to-entry maps are swapped the same way and sharded, so that a new name copies a small
//! map. Writers of one entry take its lock, which only orders them (compare-and-swap).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use keysync_filter_core::{Entry, SharedData, WriteError};

/// Shards of the name-to-entry map: a new name copies about 1/SHARDS of the names.
const SHARDS: usize = 256;

/// One version of an entry's value.
struct Version {
    /// Never 0 (0 means "absent" to the core); moves on every write.
    cas: u32,
    value: Box<[u8]>,
}

#[derive(Default)]
struct Slot {
    current: ArcSwapOption<Version>,
    /// Held by writers only, to compare and swap as one step.
    write: Mutex<()>,
}

type Names = HashMap<Box<str>, Arc<Slot>, Fnv>;

/// The process's store (see the module docs).
pub struct SharedStore {
    shards: Vec<Shard>,
}

struct Shard {
    names: ArcSwap<Names>,
    /// Held while a new name is added to this shard.
    grow: Mutex<()>,
}

impl Default for SharedStore {
    fn default() -> Self {
        SharedStore {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    names: ArcSwap::from_pointee(Names::default()),
                    grow: Mutex::new(()),
                })
                .collect(),
        }
    }
}

/// The one store of the process, shared by every configuration of the module (as a `vm_id`
/// is shared by every wasm plugin that names it).
pub fn process_store() -> &'static SharedStore {
    static STORE: OnceLock<SharedStore> = OnceLock::new();
    STORE.get_or_init(SharedStore::default)
}

impl SharedStore {
    fn shard(&self, key: &str) -> Option<&Shard> {
        let mut hasher = Fnv.build_hasher();
        hasher.write(key.as_bytes());
        let index = usize::try_from(hasher.finish() % SHARDS as u64).unwrap_or(0);
        self.shards.get(index)
    }

    /// The slot of `key`, made if it does not exist yet.
    fn slot_or_insert(&self, key: &str) -> Option<Arc<Slot>> {
        let shard = self.shard(key)?;
        if let Some(slot) = shard.names.load().get(key) {
            return Some(Arc::clone(slot));
        }
        let _grow = shard.grow.lock().unwrap_or_else(PoisonError::into_inner);
        let names = shard.names.load_full();
        if let Some(slot) = names.get(key) {
            return Some(Arc::clone(slot));
        }
        let mut grown = Names::clone(&names);
        let slot = Arc::new(Slot::default());
        grown.insert(key.into(), Arc::clone(&slot));
        shard.names.store(Arc::new(grown));
        Some(slot)
    }

    /// Entries by name: (names, bytes of their values).
    #[cfg(test)]
    fn footprint(&self) -> (usize, usize) {
        let mut names = 0;
        let mut bytes = 0;
        for shard in &self.shards {
            for slot in shard.names.load().values() {
                names += 1;
                bytes += slot.current.load().as_ref().map_or(0, |v| v.value.len());
            }
        }
        (names, bytes)
    }
}

impl SharedData for SharedStore {
    /// Copies the value from where it lies, without taking a reference to its slot or
    /// version: those are counts every worker would write (workers' ticks read a few
    /// entries each).
    fn get(&self, key: &str) -> Entry {
        let absent = Entry {
            value: None,
            cas: 0,
        };
        let Some(shard) = self.shard(key) else {
            return absent;
        };
        let names = shard.names.load();
        let Some(slot) = names.get(key) else {
            return absent;
        };
        let version = slot.current.load();
        match version.as_ref() {
            Some(version) => Entry {
                value: Some(version.value.to_vec()),
                cas: version.cas,
            },
            None => absent,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
        // Only a name that cannot be hashed into a shard fails here, which cannot happen.
        let slot = self.slot_or_insert(key).ok_or(WriteError::Host(1))?;
        let _write = slot.write.lock().unwrap_or_else(PoisonError::into_inner);
        let current = slot
            .current
            .load()
            .as_ref()
            .map_or(0, |version| version.cas);
        if cas != 0 && cas != current {
            return Err(WriteError::CasMismatch);
        }
        let next = match current.wrapping_add(1) {
            0 => 1,
            next => next,
        };
        slot.current.store(Some(Arc::new(Version {
            cas: next,
            value: value.into(),
        })));
        Ok(())
    }

    /// Lends the value where it lies: the request path's bucket read copies nothing.
    fn read<T>(&self, key: &str, look: impl FnOnce(Option<&[u8]>) -> T) -> T {
        let Some(shard) = self.shard(key) else {
            return look(None);
        };
        let names = shard.names.load();
        let Some(slot) = names.get(key) else {
            return look(None);
        };
        let version = slot.current.load();
        look(version.as_ref().map(|version| &version.value[..]))
    }
}

/// FNV-1a: entry names are short and chosen by the core, not by clients, so a fast
/// unkeyed hash is enough.
#[derive(Clone, Copy, Default)]
struct Fnv;

struct FnvHasher(u64);

impl BuildHasher for Fnv {
    type Hasher = FnvHasher;

    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_entry_reads_as_nothing_with_cas_0() {
        let store = SharedStore::default();
        let entry = store.get("keysync.meta");
        assert_eq!((entry.value, entry.cas), (None, 0));
        assert_eq!(store.read("keysync.meta", |v| v.map(<[u8]>::len)), None);
    }

    #[test]
    fn compare_and_swap_follows_the_version() {
        let store = SharedStore::default();
        store.set("k", b"one", 0).unwrap();
        let first = store.get("k");
        assert_eq!(first.value.as_deref(), Some(&b"one"[..]));
        assert_ne!(first.cas, 0);
        store.set("k", b"two", first.cas).unwrap();
        assert_eq!(
            store.set("k", b"three", first.cas),
            Err(WriteError::CasMismatch),
            "written since it was read"
        );
        let second = store.get("k");
        assert_eq!(second.value.as_deref(), Some(&b"two"[..]));
        // cas 0 writes whatever is there.
        store.set("k", b"four", 0).unwrap();
        assert_eq!(
            store.read("k", |v| v.map(<[u8]>::to_vec)),
            Some(b"four".to_vec())
        );
    }

    #[test]
    fn a_reader_keeps_the_version_it_loaded_while_a_writer_replaces_it() {
        let store = SharedStore::default();
        store.set("bucket", b"old", 0).unwrap();
        let seen = store.read("bucket", |old| {
            store.set("bucket", b"new", 0).unwrap();
            old.map(<[u8]>::to_vec)
        });
        assert_eq!(seen, Some(b"old".to_vec()));
        assert_eq!(store.get("bucket").value, Some(b"new".to_vec()));
    }

    #[test]
    fn workers_counting_with_compare_and_swap_lose_no_count() {
        let store = Arc::new(SharedStore::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        loop {
                            let entry = store.get("counter");
                            let n = entry
                                .value
                                .and_then(|v| v.try_into().ok())
                                .map_or(0, u64::from_le_bytes);
                            if store
                                .set("counter", &(n + 1).to_le_bytes(), entry.cas)
                                .is_ok()
                            {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let total = store
            .get("counter")
            .value
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes);
        assert_eq!(total, Some(4000));
    }

    #[test]
    fn many_names_spread_over_the_shards() {
        let store = SharedStore::default();
        for i in 0..20_000u32 {
            store
                .set(&format!("keysync.b.{i:04x}"), &i.to_le_bytes(), 0)
                .unwrap();
        }
        assert_eq!(store.footprint(), (20_000, 80_000));
        assert_eq!(
            store.get("keysync.b.0abc").value,
            Some(0xabcu32.to_le_bytes().to_vec())
        );
    }
}
