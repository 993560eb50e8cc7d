//! The store's metadata entry: which history and revision the store reflects, whether
//! it ever completed a full sync, and how fresh it is. Only the sync service writes it;
//! workers read it on misses and on their tick.
//!
//! Freshness is kept as an age, not a time: `confirmed_age_ms` is how long ago keysync
//! last confirmed the data against PostgreSQL, as of the sync service's last tick, and
//! `beat` moves on every such tick. A worker adds the time since it last saw `beat` move,
//! so a sync VM that died leaves the store ageing instead of frozen, and no wall-clock
//! timestamp is compared across processes (a clock stepped back cannot make old data
//! look fresh).

use crate::keysync_api::provenance::NEVER;

/// Shared-data key of the metadata entry.
pub const META_ENTRY: &str = "keysync.meta";

const FORMAT_VERSION: u8 = 2;
const FIELDS: usize = 6;
const ENCODED_LEN: usize = 1 + 8 * FIELDS;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StoreMeta {
    /// The revision history `revision` counts in (keysync's `Provenance.epoch`); 0
    /// before the first full sync.
    pub epoch: u64,
    /// Every change keysync knew at this revision may already be in the buckets. A
    /// worker caching a lookup answered at an older revision could undo such a change,
    /// so it must not (see `KeyStore::cache_lookup`).
    pub revision: u64,
    /// A full sync completed at least once.
    pub synced: bool,
    /// Keys in the store after the last completed full sync.
    pub keys: u64,
    /// How long before the sync service's last tick keysync last confirmed the data
    /// against PostgreSQL; [`NEVER`] if it never did.
    pub confirmed_age_ms: u64,
    /// Moves on every tick of the sync service.
    pub beat: u64,
}

impl Default for StoreMeta {
    fn default() -> Self {
        StoreMeta {
            epoch: 0,
            revision: 0,
            synced: false,
            keys: 0,
            confirmed_age_ms: NEVER,
            beat: 0,
        }
    }
}

impl StoreMeta {
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        let (version, fields) = out.split_at_mut(1);
        version.copy_from_slice(&[FORMAT_VERSION]);
        let values = [
            self.epoch,
            self.revision,
            u64::from(self.synced),
            self.keys,
            self.confirmed_age_ms,
            self.beat,
        ];
        for (slot, value) in fields.chunks_exact_mut(8).zip(values) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
        out
    }

    /// A missing or unreadable entry reads as "never synced, never confirmed".
    pub fn decode(bytes: Option<&[u8]>) -> StoreMeta {
        let Some([FORMAT_VERSION, rest @ ..]) = bytes else {
            return StoreMeta::default();
        };
        if rest.len() != ENCODED_LEN - 1 {
            return StoreMeta::default();
        }
        let field = |i: usize| -> u64 {
            rest.get(i * 8..(i + 1) * 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0)
        };
        StoreMeta {
            epoch: field(0),
            revision: field(1),
            synced: field(2) != 0,
            keys: field(3),
            confirmed_age_ms: field(4),
            beat: field(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let meta = StoreMeta {
            epoch: 0xfeed,
            revision: 42,
            synced: true,
            keys: 12,
            confirmed_age_ms: 1_500,
            beat: 7,
        };
        assert_eq!(StoreMeta::decode(Some(&meta.encode())), meta);
    }

    #[test]
    fn missing_or_garbage_means_never_synced_never_confirmed() {
        for bytes in [
            None,
            Some(&[7u8, 1, 2, 3][..]),
            Some(&[][..]),
            Some(&[2u8, 1][..]),
        ] {
            let meta = StoreMeta::decode(bytes);
            assert!(!meta.synced);
            assert_eq!(meta.confirmed_age_ms, NEVER);
        }
    }
}
