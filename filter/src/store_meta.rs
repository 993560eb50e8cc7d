//! The store's metadata entry: which revision the store reflects and when it last
//! completed a full sync. Only the sync service writes it; workers read it on misses.

/// Shared-data key of the metadata entry.
pub const META_ENTRY: &str = "keysync.meta";

const FORMAT_VERSION: u8 = 1;
const FIELDS: usize = 4;
const ENCODED_LEN: usize = 1 + 8 * FIELDS;

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct StoreMeta {
    /// Every change keysync knew at this revision may already be in the buckets. A
    /// worker caching a lookup answered at an older revision could undo such a change,
    /// so it must not (see `key_store::cache_lookup`).
    pub revision: u64,
    /// Unix seconds of the last completed full sync; 0 = never synced.
    pub synced_at: u64,
    /// Keys in the store after the last completed full sync.
    pub keys: u64,
    /// Unix seconds when the sync service last heard from keysync (a completed refresh,
    /// or any message on the watch stream, heartbeats included); 0 = never.
    pub heard_at: u64,
}

impl StoreMeta {
    pub fn synced(&self) -> bool {
        self.synced_at != 0
    }

    /// Seconds since the sync service last heard from keysync; `None` if it never has.
    pub fn silent_for(&self, now_unix_secs: u64) -> Option<u64> {
        (self.heard_at != 0).then(|| now_unix_secs.saturating_sub(self.heard_at))
    }

    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        let (version, fields) = out.split_at_mut(1);
        version.copy_from_slice(&[FORMAT_VERSION]);
        let values = [self.revision, self.synced_at, self.keys, self.heard_at];
        for (slot, value) in fields.chunks_exact_mut(8).zip(values) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    /// A missing or unreadable entry reads as "never synced, revision 0".
    pub fn decode(bytes: Option<&[u8]>) -> StoreMeta {
        let Some([FORMAT_VERSION, rest @ ..]) = bytes else {
            return StoreMeta::default();
        };
        let field = |i: usize| -> u64 {
            rest.get(i * 8..(i + 1) * 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0)
        };
        StoreMeta {
            revision: field(0),
            synced_at: field(1),
            keys: field(2),
            heard_at: field(3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let meta = StoreMeta {
            revision: 42,
            synced_at: 1_700_000_000,
            keys: 12,
            heard_at: 1_700_000_005,
        };
        assert_eq!(StoreMeta::decode(Some(&meta.encode())), meta);
        assert!(meta.synced());
        assert_eq!(meta.silent_for(1_700_000_010), Some(5));
        assert_eq!(StoreMeta::default().silent_for(1_700_000_010), None);
    }

    #[test]
    fn missing_or_garbage_means_never_synced() {
        assert_eq!(StoreMeta::decode(None), StoreMeta::default());
        assert!(!StoreMeta::decode(Some(&[7, 1, 2, 3])).synced());
        assert!(!StoreMeta::decode(Some(&[])).synced());
    }
}
