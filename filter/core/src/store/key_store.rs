//! The key store kept in shared data (see `key_bucket` for its layout): the request
//! path's lookup, and the writes made by the sync service and by the miss path, with the
//! rules that stop one writer from undoing a newer change made by another.

use crate::host::{SharedData, WriteError};
use crate::store::bucket_index::BucketIndex;
use crate::store::key_bucket::{self, BucketError, BucketName, Diff, KeyBucket};
use crate::store::key_record::KeyRecord;
use crate::store::lookup_ledger::{self, Lookup, LookupLedger};
use crate::store::org_table::SharedOrgTable;
use crate::store::store_meta::{StoreMeta, META_ENTRY};
use keysync_contract::key_hash::KeyHash;

/// Compare-and-swap attempts before a writer gives up on a contended bucket.
const MAX_CAS_ATTEMPTS: usize = 8;

/// Shared-data key of the store generation: bumped after every bucket write, so that a
/// worker's copies of records (`record_cache`) can tell they may be out of date.
const GENERATION_ENTRY: &str = "keysync.generation";

pub struct KeyStore<S> {
    data: S,
}

#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    Corrupt(BucketError),
    Contended,
    Host(u32),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Corrupt(e) => write!(f, "corrupt bucket: {e}"),
            StoreError::Contended => f.write_str("bucket kept changing under compare-and-swap"),
            StoreError::Host(status) => write!(f, "shared data write failed (status {status})"),
        }
    }
}

/// One change from keysync's watch stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Upsert(KeyRecord),
    Remove(KeyHash),
}

impl Change {
    pub fn hash(&self) -> KeyHash {
        match self {
            Change::Upsert(record) => record.hash,
            Change::Remove(hash) => *hash,
        }
    }
}

/// What became of an attempt to cache a record learned on the miss path.
#[derive(Debug, PartialEq, Eq)]
pub enum Cached {
    Stored,
    AlreadyThere,
    /// The store has seen newer changes than the lookup: caching could revive a revoked key.
    Stale,
    Failed(StoreError),
}

impl<S: SharedData> KeyStore<S> {
    pub fn new(data: S) -> Self {
        KeyStore { data }
    }

    /// The request path: one shared-data read, and one of the organization table
    /// (`org_table`) when the key is there.
    pub fn find(&self, hash: &KeyHash) -> Result<Option<KeyRecord>, BucketError> {
        let index = hash.bucket();
        let orgs = self.orgs();
        self.data.read(BucketName::new(index).as_str(), |bytes| {
            Ok(KeyBucket::parse(index, bytes)?.find(hash, &orgs))
        })
    }

    /// The organization table, with a memory of the references it reads for as long as
    /// the caller keeps it (a bucket write, a lookup).
    fn orgs(&self) -> SharedOrgTable<&S> {
        SharedOrgTable::new(&self.data)
    }

    /// Changes whenever a bucket changes (read by workers once a tick).
    pub fn generation(&self) -> u64 {
        self.data
            .get(GENERATION_ENTRY)
            .value
            .and_then(|v| v.get(..8).and_then(|b| b.try_into().ok()))
            .map_or(0, u64::from_le_bytes)
    }

    /// Called after every bucket write. Compare-and-swap: workers bump it too.
    fn bump_generation(&self) {
        for _ in 0..MAX_CAS_ATTEMPTS * 4 {
            let entry = self.data.get(GENERATION_ENTRY);
            let current = entry
                .value
                .as_deref()
                .and_then(|v| v.get(..8).and_then(|b| b.try_into().ok()))
                .map_or(0, u64::from_le_bytes);
            match self
                .data
                .set(GENERATION_ENTRY, &(current + 1).to_le_bytes(), entry.cas)
            {
                Err(WriteError::CasMismatch) => continue,
                _ => return,
            }
        }
    }

    pub fn meta(&self) -> StoreMeta {
        StoreMeta::decode(self.data.get(META_ENTRY).value.as_deref())
    }

    /// Only the sync service writes the metadata, so no compare-and-swap is needed.
    pub fn write_meta(&self, meta: &StoreMeta) -> Result<(), StoreError> {
        self.data
            .set(META_ENTRY, &meta.encode(), 0)
            .map_err(host_error)
    }

    /// Sync: makes bucket `index` hold exactly `records` (sorted by hash) and reports
    /// what changed. An absent bucket that should stay empty is not created.
    pub fn replace_bucket(&self, index: u16, records: &[KeyRecord]) -> Result<Diff, StoreError> {
        self.replace_bucket_keeping(index, records, |_| false)
    }

    /// Sync: like [`KeyStore::replace_bucket`], except that a record the bucket holds
    /// and `records` lacks stays where `keep` says so (asked of the bucket as it is when
    /// written, so a record another writer adds meanwhile is asked about too).
    pub fn replace_bucket_keeping(
        &self,
        index: u16,
        records: &[KeyRecord],
        mut keep: impl FnMut(&KeyRecord) -> bool,
    ) -> Result<Diff, StoreError> {
        let name = BucketName::new(index);
        let orgs = self.orgs();
        let wanted = key_bucket::encode(records, &orgs);
        let wanted_bucket = KeyBucket::parse(index, Some(&wanted)).map_err(StoreError::Corrupt)?;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = self.data.get(name.as_str());
            if entry.value.is_none() && records.is_empty() {
                return Ok(Diff::default());
            }
            let old = KeyBucket::parse(index, entry.value.as_deref());
            let mut new_bytes = wanted.clone();
            let mut change = match &old {
                Ok(old) => key_bucket::diff(old, &wanted_bucket, &orgs),
                // A bucket we cannot read is replaced whole.
                Err(_) => Diff {
                    updated: wanted_bucket.len() as u64,
                    removed: 0,
                },
            };
            if let (Ok(old), true) = (&old, change.removed > 0) {
                let kept: Vec<KeyRecord> = old
                    .records(&orgs)
                    .into_iter()
                    .filter(|r| wanted_bucket.find(&r.hash, &orgs).is_none() && keep(r))
                    .collect();
                if !kept.is_empty() {
                    let mut all: Vec<KeyRecord> = records.iter().cloned().chain(kept).collect();
                    all.sort_by_key(|r| r.hash);
                    new_bytes = key_bucket::encode(&all, &orgs);
                    let new =
                        KeyBucket::parse(index, Some(&new_bytes)).map_err(StoreError::Corrupt)?;
                    change = key_bucket::diff(old, &new, &orgs);
                }
            }
            if change == Diff::default() && entry.value.as_deref() == Some(&new_bytes[..]) {
                return Ok(change);
            }
            match self.data.set(name.as_str(), &new_bytes, entry.cas) {
                Ok(()) => {
                    self.bump_generation();
                    return Ok(change);
                }
                Err(WriteError::CasMismatch) => continue,
                Err(WriteError::Host(status)) => return Err(StoreError::Host(status)),
            }
        }
        Err(StoreError::Contended)
    }

    /// Sync: applies changes in order, one compare-and-swap write per bucket touched.
    pub fn apply_changes(&self, changes: &[Change]) -> Result<Diff, StoreError> {
        let mut by_bucket: std::collections::BTreeMap<u16, Vec<&Change>> = Default::default();
        for change in changes {
            by_bucket
                .entry(change.hash().bucket())
                .or_default()
                .push(change);
        }
        let mut total = Diff::default();
        for (index, changes) in by_bucket {
            total += self.apply_to_bucket(index, &changes)?;
        }
        Ok(total)
    }

    fn apply_to_bucket(&self, index: u16, changes: &[&Change]) -> Result<Diff, StoreError> {
        let name = BucketName::new(index);
        let orgs = self.orgs();
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = self.data.get(name.as_str());
            // An unreadable bucket is rebuilt from the changes alone; the next full
            // refresh restores the rest.
            let mut bytes = match KeyBucket::parse(index, entry.value.as_deref()) {
                Ok(_) => entry.value.clone().unwrap_or_default(),
                Err(_) => key_bucket::encode(&[], &orgs),
            };
            let mut diff = Diff::default();
            for change in changes {
                let current = KeyBucket::parse(index, Some(&bytes)).map_err(StoreError::Corrupt)?;
                match change {
                    Change::Upsert(record) => {
                        if current.find(&record.hash, &orgs).as_ref() != Some(record) {
                            bytes = current.with(record, &orgs);
                            diff.updated += 1;
                        }
                    }
                    Change::Remove(hash) => {
                        if let Some(without) = current.without(hash, &orgs) {
                            bytes = without;
                            diff.removed += 1;
                        }
                    }
                }
            }
            if diff == Diff::default() {
                return Ok(diff);
            }
            match self.data.set(name.as_str(), &bytes, entry.cas) {
                Ok(()) => {
                    self.bump_generation();
                    return Ok(diff);
                }
                Err(WriteError::CasMismatch) => continue,
                Err(WriteError::Host(status)) => return Err(StoreError::Host(status)),
            }
        }
        Err(StoreError::Contended)
    }

    /// The records the miss path vouched for (`lookup_ledger`).
    pub fn lookups(&self) -> LookupLedger {
        LookupLedger::read(&self.data)
    }

    /// Miss path: notes a record keysync answered for, before caching it.
    pub fn note_lookup(&self, lookup: Lookup) -> Result<(), StoreError> {
        lookup_ledger::note(&self.data, lookup).map_err(host_error)
    }

    /// Miss path: keysync no longer knows the key (`lookup_ledger::forget`).
    pub fn forget_lookup(&self, hash: &KeyHash) -> Result<(), StoreError> {
        lookup_ledger::forget(&self.data, hash).map_err(host_error)
    }

    /// Sync: forgets the lookups the store now holds by its own sync (see
    /// `lookup_ledger::prune`).
    pub fn prune_lookups(&self, epoch: u64, complete: Option<u64>) -> Result<(), StoreError> {
        lookup_ledger::prune(&self.data, epoch, complete).map_err(host_error)
    }

    /// Miss path: caches a record that keysync reported at `revision`, so that every
    /// worker finds it next time.
    ///
    /// The sync service raises the metadata revision BEFORE it changes buckets. So a
    /// worker that checks the revision before writing, and again after, either sees the
    /// newer revision and backs off (undoing its write), or wrote early enough that the
    /// sync service's own change lands after it.
    pub fn cache_lookup(&self, record: &KeyRecord, revision: u64) -> Cached {
        let index = record.hash.bucket();
        let name = BucketName::new(index);
        let orgs = self.orgs();
        let mut stored = false;
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = self.data.get(name.as_str());
            let current = match KeyBucket::parse(index, entry.value.as_deref()) {
                Ok(current) => current,
                Err(e) => return Cached::Failed(StoreError::Corrupt(e)),
            };
            if current.find(&record.hash, &orgs).as_ref() == Some(record) {
                return Cached::AlreadyThere;
            }
            if self.meta().revision > revision {
                return Cached::Stale;
            }
            match self
                .data
                .set(name.as_str(), &current.with(record, &orgs), entry.cas)
            {
                Ok(()) => {
                    stored = true;
                    break;
                }
                Err(WriteError::CasMismatch) => continue,
                Err(WriteError::Host(status)) => return Cached::Failed(StoreError::Host(status)),
            }
        }
        if !stored {
            return Cached::Failed(StoreError::Contended);
        }
        if self.meta().revision > revision {
            self.withdraw(record);
            return Cached::Stale;
        }
        Cached::Stored
    }

    /// Takes back a record this worker cached, unless someone has since replaced it.
    fn withdraw(&self, record: &KeyRecord) {
        let index = record.hash.bucket();
        let name = BucketName::new(index);
        let orgs = self.orgs();
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = self.data.get(name.as_str());
            let Ok(current) = KeyBucket::parse(index, entry.value.as_deref()) else {
                return;
            };
            if current.find(&record.hash, &orgs).as_ref() != Some(record) {
                return;
            }
            let Some(without) = current.without(&record.hash, &orgs) else {
                return;
            };
            match self.data.set(name.as_str(), &without, entry.cas) {
                Err(WriteError::CasMismatch) => continue,
                Ok(()) => {
                    self.bump_generation();
                    return;
                }
                Err(WriteError::Host(_)) => return,
            }
        }
    }
}

fn host_error(e: WriteError) -> StoreError {
    match e {
        WriteError::CasMismatch => StoreError::Contended,
        WriteError::Host(status) => StoreError::Host(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_shared_data::FakeSharedData;
    use crate::host::Entry;
    use crate::store::key_record::same_stored_key;
    use crate::store::org_table::tests::MemoryOrgTable;
    use keysync_contract::id::Id;

    fn record(key: &str) -> KeyRecord {
        KeyRecord {
            hash: KeyHash::of_key(key.as_bytes()),
            key_id: Id([1; 16]),
            org_id: Id([2; 16]),
            expires_at: 0,
            rate_limit: None,
            policy: None,
        }
    }

    fn set_revision(data: &FakeSharedData, revision: u64) {
        let meta = StoreMeta {
            revision,
            ..StoreMeta::default()
        };
        data.put(META_ENTRY, &meta.encode());
    }

    #[test]
    fn finds_what_sync_wrote() {
        let store = KeyStore::new(FakeSharedData::default());
        let r = record("sk_live_one");
        let diff = store
            .replace_bucket(r.hash.bucket(), std::slice::from_ref(&r))
            .unwrap();
        assert_eq!(diff.updated, 1);
        assert_eq!(store.find(&r.hash), Ok(Some(r.clone())));
        assert_eq!(store.find(&record("sk_live_two").hash), Ok(None));
    }

    #[test]
    fn replacing_with_the_same_content_writes_nothing() {
        let data = FakeSharedData::default();
        let store = KeyStore::new(data);
        let r = record("sk_live_one");
        store
            .replace_bucket(r.hash.bucket(), std::slice::from_ref(&r))
            .unwrap();
        let writes = store.data.writes.get();
        assert_eq!(
            store
                .replace_bucket(r.hash.bucket(), std::slice::from_ref(&r))
                .unwrap(),
            Diff::default()
        );
        assert_eq!(store.replace_bucket(7, &[]).unwrap(), Diff::default());
        assert_eq!(store.data.writes.get(), writes, "no write for no change");
        assert!(store.data.value(BucketName::new(7).as_str()).is_none());
    }

    #[test]
    fn emptying_a_bucket_counts_removals() {
        let store = KeyStore::new(FakeSharedData::default());
        let r = record("sk_live_one");
        store
            .replace_bucket(r.hash.bucket(), std::slice::from_ref(&r))
            .unwrap();
        let diff = store.replace_bucket(r.hash.bucket(), &[]).unwrap();
        assert_eq!(diff.removed, 1);
        assert_eq!(store.find(&r.hash), Ok(None));
    }

    #[test]
    fn replace_retries_when_another_writer_races() {
        let data = FakeSharedData::default();
        let r = record("sk_live_one");
        let name = BucketName::new(r.hash.bucket()).as_str().to_string();
        data.put(&name, &key_bucket::encode(&[], &MemoryOrgTable::default()));
        let raced = std::cell::Cell::new(false);
        let race_name = name.clone();
        *data.after_get.borrow_mut() = Some(Box::new(move |d: &FakeSharedData, key: &str| {
            if key == race_name && !raced.replace(true) {
                d.put(key, &key_bucket::encode(&[], &MemoryOrgTable::default()));
            }
        }));
        let store = KeyStore::new(data);
        store
            .replace_bucket(r.hash.bucket(), std::slice::from_ref(&r))
            .unwrap();
        assert_eq!(store.find(&r.hash), Ok(Some(r.clone())));
    }

    #[test]
    fn a_replacement_keeps_what_keep_asks_for_and_drops_the_rest() {
        let store = KeyStore::new(FakeSharedData::default());
        let (a, b, c) = (
            record("sk_live_a"),
            neighbour(&record("sk_live_a"), 1),
            neighbour(&record("sk_live_a"), 2),
        );
        let index = a.hash.bucket();
        let mut all = vec![a.clone(), b.clone(), c.clone()];
        all.sort_by_key(|r| r.hash);
        store.replace_bucket(index, &all).unwrap();
        let mut asked = Vec::new();
        let diff = store
            .replace_bucket_keeping(index, std::slice::from_ref(&a), |r| {
                asked.push(r.hash);
                // A record read from the bucket: the stored part of its hash.
                same_stored_key(&r.hash, &b.hash)
            })
            .unwrap();
        assert_eq!(
            diff,
            Diff {
                updated: 0,
                removed: 1
            }
        );
        assert_eq!(asked.len(), 2, "asked about the two it lacks, not about a");
        assert_eq!(store.find(&b.hash), Ok(Some(b.clone())), "kept");
        assert_eq!(store.find(&c.hash), Ok(None), "dropped");
        assert_eq!(store.find(&a.hash), Ok(Some(a.clone())));
    }

    #[test]
    fn caches_a_lookup_when_the_store_is_not_newer() {
        let data = FakeSharedData::default();
        set_revision(&data, 10);
        let store = KeyStore::new(data);
        let r = record("sk_live_new");
        assert_eq!(store.cache_lookup(&r, 10), Cached::Stored);
        assert_eq!(store.find(&r.hash), Ok(Some(r.clone())));
        assert_eq!(store.cache_lookup(&r, 11), Cached::AlreadyThere);
    }

    #[test]
    fn refuses_a_lookup_older_than_the_store() {
        let data = FakeSharedData::default();
        set_revision(&data, 12);
        let store = KeyStore::new(data);
        let r = record("sk_live_revoked");
        assert_eq!(store.cache_lookup(&r, 11), Cached::Stale);
        assert_eq!(store.find(&r.hash), Ok(None));
    }

    #[test]
    fn withdraws_when_sync_moves_on_during_the_write() {
        let data = FakeSharedData::default();
        set_revision(&data, 5);
        let r = record("sk_live_revoked_meanwhile");
        // The worker's first metadata read still says 5; right after it the sync service
        // announces revision 6 (its own bucket change, a no-op: the key was never cached).
        let announced = std::cell::Cell::new(false);
        *data.after_get.borrow_mut() = Some(Box::new(move |d: &FakeSharedData, key: &str| {
            if key == META_ENTRY && !announced.replace(true) {
                let meta = StoreMeta {
                    revision: 6,
                    ..StoreMeta::default()
                };
                d.entries
                    .borrow_mut()
                    .insert(META_ENTRY.to_string(), (meta.encode().to_vec(), 999));
            }
        }));
        let store = KeyStore::new(data);
        let writes_before = store.data.writes.get();
        assert_eq!(store.cache_lookup(&r, 5), Cached::Stale);
        assert!(
            store.data.writes.get() >= writes_before + 2,
            "wrote, then took it back"
        );
        assert_eq!(
            store.find(&r.hash),
            Ok(None),
            "the stale record was taken back"
        );
    }

    #[test]
    fn applies_upserts_and_removals_across_buckets() {
        let store = KeyStore::new(FakeSharedData::default());
        let (a, b, c) = (
            record("sk_live_a"),
            record("sk_live_b"),
            record("sk_live_c"),
        );
        store
            .replace_bucket(a.hash.bucket(), std::slice::from_ref(&a))
            .unwrap();
        let mut changed_a = a.clone();
        changed_a.expires_at = 99;
        let diff = store
            .apply_changes(&[
                Change::Upsert(changed_a.clone()),
                Change::Upsert(b.clone()),
                Change::Remove(c.hash),
            ])
            .unwrap();
        assert_eq!(
            diff,
            Diff {
                updated: 2,
                removed: 0
            },
            "removing an absent key is no change"
        );
        assert_eq!(store.find(&a.hash), Ok(Some(changed_a.clone())));
        assert_eq!(store.find(&b.hash), Ok(Some(b.clone())));
        let diff = store.apply_changes(&[Change::Remove(b.hash)]).unwrap();
        assert_eq!(diff.removed, 1);
        assert_eq!(store.find(&b.hash), Ok(None));
        let writes = store.data.writes.get();
        store
            .apply_changes(&[Change::Upsert(changed_a.clone())])
            .unwrap();
        assert_eq!(store.data.writes.get(), writes, "re-applying is a no-op");
    }

    #[test]
    fn every_bucket_change_moves_the_generation() {
        let store = KeyStore::new(FakeSharedData::default());
        let r = record("sk_live_gen");
        let g0 = store.generation();
        store
            .replace_bucket(r.hash.bucket(), std::slice::from_ref(&r))
            .unwrap();
        let g1 = store.generation();
        assert!(g1 > g0);
        store
            .replace_bucket(r.hash.bucket(), std::slice::from_ref(&r))
            .unwrap();
        assert_eq!(store.generation(), g1, "no change, no bump");
        store.apply_changes(&[Change::Remove(r.hash)]).unwrap();
        assert!(store.generation() > g1);
    }

    /// Shared data that lends its bytes in place and refuses to copy them: what a host
    /// keeping the store in its own memory can offer the request path.
    struct LendingOnly(FakeSharedData);

    impl SharedData for LendingOnly {
        fn get(&self, key: &str) -> Entry {
            panic!("the request path copied {key}");
        }

        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
            self.0.set(key, value, cas)
        }

        fn read<T>(&self, key: &str, look: impl FnOnce(Option<&[u8]>) -> T) -> T {
            look(
                self.0
                    .entries
                    .borrow()
                    .get(key)
                    .map(|(value, _)| value.as_slice()),
            )
        }
    }

    #[test]
    fn the_request_path_reads_a_bucket_in_place_where_the_host_lends_it() {
        let r = record("sk_live_lent");
        let written = KeyStore::new(FakeSharedData::default());
        written
            .replace_bucket(r.hash.bucket(), std::slice::from_ref(&r))
            .unwrap();
        let lending = KeyStore::new(LendingOnly(written.data));
        assert_eq!(lending.find(&r.hash), Ok(Some(r.clone())));
        assert_eq!(lending.find(&record("sk_live_absent").hash), Ok(None));
    }

    #[test]
    fn corrupt_bucket_is_reported_not_trusted() {
        let data = FakeSharedData::default();
        let r = record("sk_live_x");
        data.put(BucketName::new(r.hash.bucket()).as_str(), &[1, 2, 3]);
        let store = KeyStore::new(data);
        assert!(store.find(&r.hash).is_err());
        assert!(matches!(store.cache_lookup(&r, 1), Cached::Failed(_)));
        // Sync repairs it.
        assert_eq!(
            store
                .replace_bucket(r.hash.bucket(), std::slice::from_ref(&r))
                .unwrap()
                .updated,
            1
        );
        assert_eq!(store.find(&r.hash), Ok(Some(r.clone())));
    }

    fn restricted(key: &str) -> KeyRecord {
        KeyRecord {
            policy: Some(std::rc::Rc::new(crate::store::key_policy::KeyPolicy {
                scopes: vec!["orders:read".into()],
                networks: Some(vec!["10.0.0.0/8".parse().unwrap()]),
            })),
            ..record(key)
        }
    }

    /// A key of the same bucket as `of`, without policy.
    fn neighbour(of: &KeyRecord, n: u8) -> KeyRecord {
        let mut r = record("sk_live_neighbour");
        r.hash = of.hash;
        // Within the bytes a bucket stores (`key_record::STORED_HASH_LEN`).
        r.hash.0[15] ^= n;
        r
    }

    #[test]
    fn a_policy_survives_every_write_to_its_bucket() {
        let store = KeyStore::new(FakeSharedData::default());
        let p = restricted("sk_live_policy");
        let (n1, n2) = (neighbour(&p, 1), neighbour(&p, 2));
        let index = p.hash.bucket();
        let mut sorted = vec![p.clone(), n1.clone()];
        sorted.sort_by_key(|r| r.hash);
        store.replace_bucket(index, &sorted).unwrap();
        assert_eq!(store.find(&p.hash), Ok(Some(p.clone())));
        assert_eq!(store.find(&n1.hash), Ok(Some(n1.clone())), "no policy");

        // Watch changes around it.
        store.apply_changes(&[Change::Upsert(n2.clone())]).unwrap();
        store.apply_changes(&[Change::Remove(n1.hash)]).unwrap();
        assert_eq!(store.find(&p.hash), Ok(Some(p.clone())));
        // The miss path beside it.
        set_revision(&store.data, 1);
        assert_eq!(store.cache_lookup(&n1, 1), Cached::Stored);
        assert_eq!(store.find(&p.hash), Ok(Some(p.clone())));
        assert_eq!(store.find(&n1.hash), Ok(Some(n1.clone())));

        // A changed policy is a change, and replaces the old one.
        let mut tighter = p.clone();
        tighter.policy = Some(std::rc::Rc::new(crate::store::key_policy::KeyPolicy {
            scopes: vec![],
            networks: Some(vec!["10.1.0.0/16".parse().unwrap()]),
        }));
        let mut sorted = vec![tighter.clone(), n1.clone(), n2.clone()];
        sorted.sort_by_key(|r| r.hash);
        let diff = store.replace_bucket(index, &sorted).unwrap();
        assert_eq!(diff.updated, 1, "the policy change");
        assert_eq!(store.find(&p.hash), Ok(Some(tighter.clone())));

        // Losing its policy, or going: the bucket is back to the policy-free layout.
        let mut loose = tighter.clone();
        loose.policy = None;
        store
            .apply_changes(&[Change::Upsert(loose.clone())])
            .unwrap();
        assert_eq!(store.find(&p.hash), Ok(Some(loose)));
        let name = BucketName::new(index);
        assert_eq!(
            store.data.value(name.as_str()).unwrap().first(),
            Some(&key_bucket::FORMAT_VERSION)
        );
        store.apply_changes(&[Change::Upsert(p.clone())]).unwrap();
        store.apply_changes(&[Change::Remove(p.hash)]).unwrap();
        assert_eq!(store.find(&p.hash), Ok(None));
        assert_eq!(
            store.data.value(name.as_str()).unwrap().first(),
            Some(&key_bucket::FORMAT_VERSION)
        );
    }
}
