//! One full refresh: walks keysync's key list page by page, in hash order, rewriting
//! each bucket as soon as it is complete. Memory holds one page, never the whole set;
//! buckets that no longer hold any key are emptied, which removes revoked keys. Stream
//! changes that arrive meanwhile are laid over the pages, and a record the miss path
//! cached from an answer newer than the pages stays (`lookup_ledger`).

use crate::host::SharedData;
use crate::keysync_api::provenance::Provenance;
use crate::store::bucket_index::{bucket_bounds, BucketIndex};
use crate::store::key_bucket::{Diff, BUCKET_COUNT};
use crate::store::key_record::{same_stored_key, KeyRecord, RecordError};
use crate::store::key_store::{Change, KeyStore, StoreError};
use keysync_contract::key_hash::KeyHash;
use keysync_proto::v1 as proto;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Summary {
    pub updated: u64,
    pub removed: u64,
    pub total: u64,
    pub pages: u32,
    pub revision: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RefreshError {
    BadRecord(RecordError),
    OutOfOrder,
    EmptyPageWithMore,
    /// The pages came from two revision histories (keysync's database was restored or
    /// failed over mid-refresh, or two keysyncs of different databases answered).
    EpochChanged {
        first: u64,
        now: u64,
    },
    Store(StoreError),
}

impl std::fmt::Display for RefreshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RefreshError::BadRecord(e) => write!(f, "keysync sent a bad record: {e}"),
            RefreshError::OutOfOrder => f.write_str("keysync sent keys out of hash order"),
            RefreshError::EmptyPageWithMore => {
                f.write_str("keysync sent an empty page that claims more")
            }
            RefreshError::EpochChanged { first, now } => write!(
                f,
                "keysync's revision history changed during the refresh (epoch {first:x} then {now:x})"
            ),
            RefreshError::Store(e) => write!(f, "{e}"),
        }
    }
}

/// One `ListKeys` page, its records decoded (once: the sync service also needs them, to
/// create rate-limit counters before the records land in the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<KeyRecord>,
    pub more: bool,
    pub revision: u64,
    pub provenance: Provenance,
}

impl Page {
    pub fn decode(page: proto::ListKeysResponse) -> Result<Page, RefreshError> {
        let records = page
            .keys
            .iter()
            .map(KeyRecord::from_proto)
            .collect::<Result<Vec<_>, _>>()
            .map_err(RefreshError::BadRecord)?;
        Ok(Page {
            records,
            more: page.more,
            revision: page.revision,
            provenance: Provenance::from_proto(page.provenance.as_ref()),
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    More(proto::ListKeysRequest),
    Done(Summary),
}

pub struct Refresh {
    page_size: u32,
    /// Hash of the last record received: the next page starts after it.
    after: Option<KeyHash>,
    /// The bucket whose records are still arriving, and those records.
    open_bucket: Option<u16>,
    pending: Vec<KeyRecord>,
    /// Every bucket below this one has been written.
    next_unwritten: u32,
    /// Watch-stream changes that arrived during the refresh for buckets not yet
    /// written: pages may predate them, so they are laid over the pages' content.
    overlay: BTreeMap<KeyHash, Option<KeyRecord>>,
    first_revision: Option<u64>,
    /// The epoch of the first page; every page must share it.
    epoch: Option<u64>,
    /// Asked for: the store's revision baseline is replaced by this refresh's, even in
    /// the same epoch (after a revision went backwards or jumped).
    reset: bool,
    /// Decided at the first page: `reset`, or the epoch changed.
    replaces_baseline: bool,
    summary: Summary,
}

impl Refresh {
    /// A refresh that keeps the store's revision baseline (`reset` false: the periodic
    /// safety net) or replaces it with keysync's (`reset` true: a resync after a
    /// revision went backwards, jumped or keysync could not replay).
    pub fn new(page_size: u32, reset: bool) -> Self {
        Refresh {
            page_size,
            after: None,
            open_bucket: None,
            pending: Vec::new(),
            next_unwritten: 0,
            overlay: BTreeMap::new(),
            first_revision: None,
            epoch: None,
            reset,
            replaces_baseline: reset,
            summary: Summary::default(),
        }
    }

    /// Whether this refresh sets the store's epoch and revision outright rather than
    /// only raising the revision. Known once the first page is applied.
    pub fn replaces_baseline(&self) -> bool {
        self.replaces_baseline
    }

    pub fn is_first_page(&self) -> bool {
        self.first_revision.is_none()
    }

    /// Records a change the watch stream applied to the store while this refresh runs,
    /// so that rewriting a bucket from an older page cannot undo it.
    pub fn note(&mut self, change: &Change) {
        let hash = change.hash();
        let first_pending = match self.open_bucket {
            Some(bucket) => u32::from(bucket),
            None => self.next_unwritten,
        };
        if u32::from(hash.bucket()) < first_pending {
            return; // already written: the store has the change itself
        }
        self.overlay.insert(
            hash,
            match change {
                Change::Upsert(record) => Some(record.clone()),
                Change::Remove(_) => None,
            },
        );
    }

    /// The records of `bucket` with the overlay laid over them (consumed), and the
    /// hashes the overlay decided.
    fn merged(&mut self, bucket: u16, records: Vec<KeyRecord>) -> (Vec<KeyRecord>, Vec<KeyHash>) {
        let (low, high) = bucket_bounds(bucket);
        let changes: Vec<(KeyHash, Option<KeyRecord>)> = self
            .overlay
            .range(low..=high)
            .map(|(hash, change)| (*hash, change.clone()))
            .collect();
        if changes.is_empty() {
            return (records, Vec::new());
        }
        let mut by_hash: BTreeMap<KeyHash, KeyRecord> =
            records.into_iter().map(|r| (r.hash, r)).collect();
        let mut decided = Vec::with_capacity(changes.len());
        for (hash, change) in changes {
            self.overlay.remove(&hash);
            decided.push(hash);
            match change {
                Some(record) => by_hash.insert(hash, record),
                None => by_hash.remove(&hash),
            };
        }
        (by_hash.into_values().collect(), decided)
    }

    /// Writes `bucket` from the pages' `records` and the overlay. A record the bucket
    /// holds beyond them stays only when the miss path cached it from an answer newer
    /// than every page so far, of the same history, and no stream change decided it: a
    /// page that predates a key says nothing of it, one as new as the answer does (the
    /// key is gone). A resync keeps nothing (its revisions may restart lower).
    fn write_bucket<S: SharedData>(
        &mut self,
        store: &KeyStore<S>,
        bucket: u16,
        records: Vec<KeyRecord>,
    ) -> Result<Diff, RefreshError> {
        let (records, decided) = self.merged(bucket, records);
        let (reset, epoch, pages_revision) = (self.reset, self.epoch, self.summary.revision);
        let mut ledger = None;
        let mut newer_than_the_pages = |record: &KeyRecord| {
            // `record` may come from the bucket, with only the stored part of its hash.
            if reset || decided.iter().any(|h| same_stored_key(h, &record.hash)) {
                return false;
            }
            ledger
                .get_or_insert_with(|| store.lookups())
                .find(&record.hash)
                .is_some_and(|lookup| {
                    Some(lookup.epoch) == epoch && lookup.revision > pages_revision
                })
        };
        store
            .replace_bucket_keeping(bucket, &records, &mut newer_than_the_pages)
            .map_err(RefreshError::Store)
    }

    /// Whether this refresh is a resync that replaces the store's baseline whatever it
    /// was (see [`Refresh::new`]).
    pub fn is_reset(&self) -> bool {
        self.reset
    }

    /// The revision of the first page: every change up to it is in the store once the
    /// refresh completes.
    pub fn first_revision(&self) -> Option<u64> {
        self.first_revision
    }

    pub fn first_request(&self) -> proto::ListKeysRequest {
        self.request()
    }

    fn request(&self) -> proto::ListKeysRequest {
        proto::ListKeysRequest {
            after_hash: self.after.map(|h| h.0.to_vec()).unwrap_or_default(),
            page_size: self.page_size,
        }
    }

    /// Applies one page. The whole page is validated before anything is written.
    pub fn apply<S: SharedData>(
        &mut self,
        store: &KeyStore<S>,
        page: Page,
    ) -> Result<Progress, RefreshError> {
        let Page {
            records,
            more,
            revision,
            provenance,
        } = page;
        if let Some(first) = self.epoch {
            if provenance.epoch != first {
                return Err(RefreshError::EpochChanged {
                    first,
                    now: provenance.epoch,
                });
            }
        }
        let mut previous = self.after;
        for record in &records {
            if previous.is_some_and(|p| p >= record.hash) {
                return Err(RefreshError::OutOfOrder);
            }
            previous = Some(record.hash);
        }
        if records.is_empty() && more {
            return Err(RefreshError::EmptyPageWithMore);
        }

        // Announce the revision before changing buckets (see `KeyStore::cache_lookup`).
        let mut meta = store.meta();
        if self.is_first_page() {
            self.replaces_baseline = self.reset || meta.epoch != provenance.epoch;
            if self.replaces_baseline {
                meta.epoch = provenance.epoch;
                meta.revision = revision;
                store.write_meta(&meta).map_err(RefreshError::Store)?;
            }
        }
        if revision > meta.revision {
            meta.revision = revision;
            store.write_meta(&meta).map_err(RefreshError::Store)?;
        }
        self.epoch = Some(provenance.epoch);
        self.first_revision.get_or_insert(revision);
        self.summary.revision = self.summary.revision.max(revision);
        self.summary.pages += 1;
        self.summary.total += records.len() as u64;

        for record in records {
            let bucket = record.hash.bucket();
            if self.open_bucket != Some(bucket) {
                self.close_open_bucket(store)?;
                self.empty_buckets_below(store, u32::from(bucket))?;
                self.open_bucket = Some(bucket);
            }
            self.after = Some(record.hash);
            self.pending.push(record);
        }

        if more {
            return Ok(Progress::More(self.request()));
        }
        self.close_open_bucket(store)?;
        self.empty_buckets_below(store, BUCKET_COUNT)?;
        meta = store.meta();
        meta.revision = if self.replaces_baseline {
            self.summary.revision
        } else {
            meta.revision.max(self.summary.revision)
        };
        meta.synced = true;
        meta.keys = self.summary.total;
        store.write_meta(&meta).map_err(RefreshError::Store)?;
        Ok(Progress::Done(self.summary))
    }

    fn close_open_bucket<S: SharedData>(
        &mut self,
        store: &KeyStore<S>,
    ) -> Result<(), RefreshError> {
        if let Some(bucket) = self.open_bucket.take() {
            let records = std::mem::take(&mut self.pending);
            let diff = self.write_bucket(store, bucket, records)?;
            self.count(diff);
            self.next_unwritten = u32::from(bucket) + 1;
        }
        Ok(())
    }

    /// Buckets between the last written one and `end` hold no key any more.
    fn empty_buckets_below<S: SharedData>(
        &mut self,
        store: &KeyStore<S>,
        end: u32,
    ) -> Result<(), RefreshError> {
        while self.next_unwritten < end {
            let bucket = u16::try_from(self.next_unwritten).unwrap_or(u16::MAX);
            let diff = self.write_bucket(store, bucket, Vec::new())?;
            self.count(diff);
            self.next_unwritten += 1;
        }
        Ok(())
    }

    fn count(&mut self, diff: Diff) {
        self.summary.updated += diff.updated;
        self.summary.removed += diff.removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_shared_data::FakeSharedData;
    use crate::store::key_store::Change;

    fn proto_record(hash: KeyHash, org: u8) -> proto::KeyRecord {
        proto::KeyRecord {
            key_hash: hash.0.to_vec(),
            key_id: vec![1; 16],
            org_id: vec![org; 16],
            expires_at: 0,
            rate_limit: None,
            ..Default::default()
        }
    }

    /// Every page of these tests: epoch 5, confirmed 100 ms ago.
    fn provenance() -> Option<proto::Provenance> {
        Some(proto::Provenance {
            epoch: 5,
            confirmed_age_ms: 100,
        })
    }

    /// Decodes a page as the sync service does, then applies it.
    fn apply(
        refresh: &mut Refresh,
        store: &KeyStore<FakeSharedData>,
        page: proto::ListKeysResponse,
    ) -> Result<Progress, RefreshError> {
        refresh.apply(store, Page::decode(page)?)
    }

    fn hashes(n: u32) -> Vec<KeyHash> {
        let mut hashes: Vec<KeyHash> = (0..n).map(|i| KeyHash::of_key(&i.to_le_bytes())).collect();
        hashes.sort();
        hashes
    }

    /// Runs a whole refresh against `store`, serving `keys` in pages like keysync does.
    fn refresh(
        store: &KeyStore<FakeSharedData>,
        keys: &[proto::KeyRecord],
        page_size: usize,
    ) -> Summary {
        let mut refresh = Refresh::new(page_size as u32, false);
        let mut request = refresh.first_request();
        loop {
            let start = keys
                .iter()
                .position(|k| k.key_hash > request.after_hash)
                .unwrap_or(keys.len());
            let end = (start + page_size).min(keys.len());
            let page = proto::ListKeysResponse {
                keys: keys[start..end].to_vec(),
                more: end < keys.len(),
                revision: 7,
                provenance: provenance(),
            };
            match apply(&mut refresh, store, page).unwrap() {
                Progress::More(next) => request = next,
                Progress::Done(summary) => return summary,
            }
        }
    }

    #[test]
    fn loads_every_key_across_pages() {
        let store = KeyStore::new(FakeSharedData::default());
        let all = hashes(500);
        let keys: Vec<_> = all.iter().map(|h| proto_record(*h, 1)).collect();
        let summary = refresh(&store, &keys, 64);
        assert_eq!(summary.total, 500);
        assert_eq!(summary.updated, 500);
        assert_eq!(summary.removed, 0);
        assert_eq!(summary.pages, 8);
        for h in &all {
            assert!(store.find(h).unwrap().is_some());
        }
        let meta = store.meta();
        assert!(meta.synced);
        assert_eq!(meta.keys, 500);
        assert_eq!(meta.revision, 7);
    }

    #[test]
    fn a_second_refresh_removes_what_is_gone_and_counts_changes() {
        let store = KeyStore::new(FakeSharedData::default());
        let all = hashes(300);
        let keys: Vec<_> = all.iter().map(|h| proto_record(*h, 1)).collect();
        refresh(&store, &keys, 50);

        // Drop every third key, change the org of one.
        let mut next: Vec<_> = keys
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, k)| k.clone())
            .collect();
        next[0].org_id = vec![9; 16];
        let summary = refresh(&store, &next, 50);
        assert_eq!(summary.removed, 100);
        assert_eq!(summary.updated, 1);
        assert_eq!(summary.total, 200);
        for (i, h) in all.iter().enumerate() {
            assert_eq!(store.find(h).unwrap().is_some(), i % 3 != 0, "key {i}");
        }
    }

    #[test]
    fn an_empty_key_set_empties_the_store() {
        let store = KeyStore::new(FakeSharedData::default());
        let all = hashes(20);
        let keys: Vec<_> = all.iter().map(|h| proto_record(*h, 1)).collect();
        refresh(&store, &keys, 1000);
        let summary = refresh(&store, &[], 1000);
        assert_eq!(summary.removed, 20);
        assert_eq!(summary.total, 0);
        assert!(all.iter().all(|h| store.find(h).unwrap().is_none()));
    }

    #[test]
    fn bad_pages_are_refused_before_anything_is_written() {
        let store = KeyStore::new(FakeSharedData::default());
        let all = hashes(3);
        let unordered = proto::ListKeysResponse {
            keys: vec![proto_record(all[1], 1), proto_record(all[0], 1)],
            more: false,
            revision: 1,
            provenance: provenance(),
        };
        let mut refresh = Refresh::new(10, false);
        assert_eq!(
            apply(&mut refresh, &store, unordered),
            Err(RefreshError::OutOfOrder)
        );
        let mut bad = proto_record(all[2], 1);
        bad.org_id = vec![1, 2, 3];
        let bad_record = proto::ListKeysResponse {
            keys: vec![bad],
            more: false,
            revision: 1,
            provenance: provenance(),
        };
        assert!(matches!(
            apply(&mut Refresh::new(10, false), &store, bad_record),
            Err(RefreshError::BadRecord(_))
        ));
        let empty_more = proto::ListKeysResponse {
            keys: vec![],
            more: true,
            revision: 1,
            provenance: provenance(),
        };
        assert_eq!(
            apply(&mut Refresh::new(10, false), &store, empty_more),
            Err(RefreshError::EmptyPageWithMore)
        );
        assert_eq!(store.meta(), Default::default(), "nothing written");
    }

    #[test]
    fn a_page_repeating_the_cursor_is_out_of_order() {
        let store = KeyStore::new(FakeSharedData::default());
        let all = hashes(2);
        let mut refresh = Refresh::new(1, false);
        let first = proto::ListKeysResponse {
            keys: vec![proto_record(all[0], 1)],
            more: true,
            revision: 1,
            provenance: provenance(),
        };
        assert!(matches!(
            apply(&mut refresh, &store, first),
            Ok(Progress::More(_))
        ));
        let again = proto::ListKeysResponse {
            keys: vec![proto_record(all[0], 1)],
            more: false,
            revision: 1,
            provenance: provenance(),
        };
        assert_eq!(
            apply(&mut refresh, &store, again),
            Err(RefreshError::OutOfOrder)
        );
    }

    #[test]
    fn stream_changes_during_a_refresh_are_not_undone_by_older_pages() {
        let store = KeyStore::new(FakeSharedData::default());
        let all = hashes(40);
        let keys: Vec<_> = all.iter().map(|h| proto_record(*h, 1)).collect();
        refresh(&store, &keys, 100);

        // A second refresh pages out the set as it was; meanwhile the stream revokes the
        // last key and adds a new one, in buckets the refresh has not written yet.
        let mut refresh = Refresh::new(10, false);
        let first = proto::ListKeysResponse {
            keys: keys[..10].to_vec(),
            more: true,
            revision: 8,
            provenance: provenance(),
        };
        assert!(matches!(
            apply(&mut refresh, &store, first),
            Ok(Progress::More(_))
        ));
        let revoked = *all.last().unwrap();
        let added = KeyRecord::from_proto(&proto_record(KeyHash([0xff; 32]), 3)).unwrap();
        for change in [Change::Remove(revoked), Change::Upsert(added.clone())] {
            store.apply_changes(std::slice::from_ref(&change)).unwrap();
            refresh.note(&change);
        }
        let rest = proto::ListKeysResponse {
            keys: keys[10..].to_vec(),
            more: false,
            revision: 8,
            provenance: provenance(),
        };
        assert!(matches!(
            apply(&mut refresh, &store, rest),
            Ok(Progress::Done(_))
        ));
        assert_eq!(store.find(&revoked).unwrap(), None, "the revocation stands");
        assert_eq!(
            store.find(&added.hash).unwrap(),
            Some(added),
            "the addition stands"
        );
        assert_eq!(refresh.first_revision(), Some(8));
    }

    /// Puts `record` in the store the way the miss path does, answered at `revision`
    /// of history `epoch`.
    fn cached_by_a_lookup(
        store: &KeyStore<FakeSharedData>,
        record: &KeyRecord,
        epoch: u64,
        revision: u64,
    ) {
        store
            .note_lookup(crate::store::lookup_ledger::Lookup {
                hash: record.hash,
                epoch,
                revision,
                confirmed_at_ms: 1,
            })
            .unwrap();
        assert_eq!(
            store.cache_lookup(record, revision),
            crate::store::key_store::Cached::Stored
        );
    }

    fn new_key(n: u8) -> KeyRecord {
        KeyRecord::from_proto(&proto_record(KeyHash([n; 32]), 3)).unwrap()
    }

    /// A refresh of `keys` in pages of 10 at `revision`, with `during` done between its
    /// first page and the rest.
    fn refresh_around(
        store: &KeyStore<FakeSharedData>,
        keys: &[proto::KeyRecord],
        revision: u64,
        reset: bool,
        during: impl FnOnce(&mut Refresh),
    ) {
        let mut refresh = Refresh::new(10, reset);
        let first = proto::ListKeysResponse {
            keys: keys[..10].to_vec(),
            more: true,
            revision,
            provenance: provenance(),
        };
        assert!(matches!(
            apply(&mut refresh, store, first),
            Ok(Progress::More(_))
        ));
        during(&mut refresh);
        let rest = proto::ListKeysResponse {
            keys: keys[10..].to_vec(),
            more: false,
            revision,
            provenance: provenance(),
        };
        assert!(matches!(
            apply(&mut refresh, store, rest),
            Ok(Progress::Done(_))
        ));
    }

    #[test]
    fn a_key_the_miss_path_cached_from_an_answer_newer_than_the_pages_stays() {
        let store = KeyStore::new(FakeSharedData::default());
        let all = hashes(40);
        let keys: Vec<_> = all.iter().map(|h| proto_record(*h, 1)).collect();
        // Both lookups land while the refresh (pages at revision 8) is under way: one
        // answered at 9 (created after the pages were read), one at 8 (as new as them).
        let (newer, as_new, other_history, stream_revoked) =
            (new_key(0xf1), new_key(0xf2), new_key(0xf3), new_key(0xf4));
        refresh_around(&store, &keys, 8, false, |refresh| {
            cached_by_a_lookup(&store, &newer, 5, 9);
            cached_by_a_lookup(&store, &as_new, 5, 8);
            cached_by_a_lookup(&store, &other_history, 6, 9);
            cached_by_a_lookup(&store, &stream_revoked, 5, 9);
            // The stream revokes one of them (at 10) before the pages reach its bucket.
            let revoked = Change::Remove(stream_revoked.hash);
            store.apply_changes(std::slice::from_ref(&revoked)).unwrap();
            refresh.note(&revoked);
            cached_by_a_lookup(&store, &stream_revoked, 5, 9);
        });
        assert_eq!(
            store.find(&newer.hash).unwrap(),
            Some(newer),
            "the pages predate it"
        );
        assert_eq!(
            store.find(&as_new.hash).unwrap(),
            None,
            "a page as new as the answer lacks it: gone by then"
        );
        assert_eq!(store.find(&other_history.hash).unwrap(), None);
        assert_eq!(
            store.find(&stream_revoked.hash).unwrap(),
            None,
            "the stream's revocation stands"
        );
        for h in &all {
            assert!(store.find(h).unwrap().is_some());
        }
    }

    #[test]
    fn a_key_the_miss_path_cached_goes_with_a_later_revocation_like_any_other() {
        let store = KeyStore::new(FakeSharedData::default());
        let all = hashes(40);
        let keys: Vec<_> = all.iter().map(|h| proto_record(*h, 1)).collect();
        let key = new_key(0xf1);
        cached_by_a_lookup(&store, &key, 5, 9);
        // A refresh newer than the answer that lacks the key: revoked since.
        refresh_around(&store, &keys, 12, false, |_| {});
        assert_eq!(store.find(&key.hash).unwrap(), None);
        // A stream removal.
        cached_by_a_lookup(&store, &key, 5, 13);
        store.apply_changes(&[Change::Remove(key.hash)]).unwrap();
        assert_eq!(store.find(&key.hash).unwrap(), None);
        // A resync keeps nothing of before, whatever the revisions say.
        cached_by_a_lookup(&store, &key, 5, 99);
        refresh_around(&store, &keys, 20, true, |_| {});
        assert_eq!(store.find(&key.hash).unwrap(), None);
    }

    #[test]
    fn next_request_starts_after_the_last_hash() {
        let store = KeyStore::new(FakeSharedData::default());
        let all = hashes(2);
        let mut refresh = Refresh::new(1, false);
        assert!(refresh.first_request().after_hash.is_empty());
        let page = proto::ListKeysResponse {
            keys: vec![proto_record(all[0], 1)],
            more: true,
            revision: 3,
            provenance: provenance(),
        };
        let Progress::More(next) = apply(&mut refresh, &store, page).unwrap() else {
            panic!("expected more");
        };
        assert_eq!(next.after_hash, all[0].0.to_vec());
        assert_eq!(next.page_size, 1);
        assert_eq!(
            store.meta().revision,
            3,
            "revision announced before buckets"
        );
    }

    fn with_policy(mut record: proto::KeyRecord, scope: &str) -> proto::KeyRecord {
        record.scopes = vec![scope.to_string()];
        record.allowed_networks = vec![proto::Network {
            address: vec![10, 0, 0, 0],
            prefix_len: 8,
        }];
        record
    }

    fn scopes_of(store: &KeyStore<FakeSharedData>, hash: &KeyHash) -> Option<Vec<String>> {
        let record = store.find(hash).unwrap()?;
        Some(record.policy.map(|p| p.scopes.clone()).unwrap_or_default())
    }

    #[test]
    fn refreshes_carry_policies_repair_them_and_drop_them_with_their_keys() {
        let store = KeyStore::new(FakeSharedData::default());
        let all = hashes(200);
        let mut keys: Vec<_> = all.iter().map(|h| proto_record(*h, 1)).collect();
        keys[3] = with_policy(keys[3].clone(), "a");
        keys[150] = with_policy(keys[150].clone(), "b");
        refresh(&store, &keys, 32);
        assert_eq!(scopes_of(&store, &all[3]), Some(vec!["a".to_string()]));
        assert_eq!(scopes_of(&store, &all[150]), Some(vec!["b".to_string()]));
        assert_eq!(scopes_of(&store, &all[4]), Some(vec![]));

        // Drift: someone's write lost a policy (a bug, a crash); the next refresh repairs it.
        let mut drifted = store.find(&all[150]).unwrap().unwrap();
        drifted.policy = None;
        store.apply_changes(&[Change::Upsert(drifted)]).unwrap();
        assert_eq!(scopes_of(&store, &all[150]), Some(vec![]));
        keys[3] = with_policy(keys[3].clone(), "c");
        let summary = refresh(&store, &keys, 32);
        assert_eq!(
            summary.updated, 2,
            "the repaired policy and the changed one"
        );
        assert_eq!(scopes_of(&store, &all[150]), Some(vec!["b".to_string()]));
        assert_eq!(scopes_of(&store, &all[3]), Some(vec!["c".to_string()]));

        // Gone: the key goes with its policy.
        keys.remove(150);
        let summary = refresh(&store, &keys, 32);
        assert_eq!(summary.removed, 1);
        assert_eq!(scopes_of(&store, &all[150]), None);
    }

    #[test]
    fn a_watch_change_during_a_refresh_keeps_its_policy() {
        let store = KeyStore::new(FakeSharedData::default());
        let all = hashes(40);
        let keys: Vec<_> = all.iter().map(|h| proto_record(*h, 1)).collect();
        let mut refresh = Refresh::new(10, false);
        let first = proto::ListKeysResponse {
            keys: keys[..10].to_vec(),
            more: true,
            revision: 7,
            provenance: provenance(),
        };
        assert!(matches!(
            apply(&mut refresh, &store, first),
            Ok(Progress::More(_))
        ));
        let late = *all.last().unwrap();
        let upsert = KeyRecord::from_proto(&with_policy(proto_record(late, 1), "z")).unwrap();
        let change = Change::Upsert(upsert);
        store.apply_changes(std::slice::from_ref(&change)).unwrap();
        refresh.note(&change);
        let rest = proto::ListKeysResponse {
            keys: keys[10..].to_vec(),
            more: false,
            revision: 7,
            provenance: provenance(),
        };
        assert!(matches!(
            apply(&mut refresh, &store, rest),
            Ok(Progress::Done(_))
        ));
        assert_eq!(scopes_of(&store, &late), Some(vec!["z".to_string()]));
    }
}
