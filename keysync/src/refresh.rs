//! Keeping the in-memory store in step with the database: full reloads, incremental
//! catch-ups, and the periodic loop that runs them and backs off while the database is
//! unreachable (the last snapshot keeps being served meanwhile). Every change applied
//! to the store, by either kind of load, is recorded in the change feed for watchers.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::catch_up::{CatchUp, CatchUpError, DEFAULT_MIN_SPACING};
use crate::change_feed::ChangeFeed;
use crate::changelog::Recorded;
use crate::freshness::Freshness;
use crate::key_table::KeyTable;
use crate::loader::{LoadError, Loader};
use crate::metrics::{LoadKind, Metrics};
use crate::store::{Changes, SharedStore};

/// Size and revision of the store after a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSummary {
    pub keys: usize,
    pub revision: u64,
    /// Records the load changed (upserts plus removals); 0 for the first load.
    pub changes: usize,
}

/// Loads from a [`Loader`] into the shared store, one load at a time, and records what
/// each load changed in the change feed.
pub struct Refresher<L> {
    loader: L,
    store: SharedStore,
    feed: Arc<ChangeFeed>,
    metrics: Arc<Metrics>,
    /// Loads must not overlap: a catch-up computed against revision R and applied
    /// after a full reload to R+n would roll keys back. Holds whether a full snapshot
    /// has been loaded yet (the first one starts the changelog instead of adding to it).
    loaded: tokio::sync::Mutex<bool>,
}

impl<L: Loader> Refresher<L> {
    pub fn new(
        loader: L,
        store: SharedStore,
        feed: Arc<ChangeFeed>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Refresher {
            loader,
            store,
            feed,
            metrics,
            loaded: tokio::sync::Mutex::new(false),
        }
    }

    /// The store's revision.
    pub fn revision(&self) -> u64 {
        self.store.read().revision()
    }

    /// Replaces the store with a full snapshot. After the first one, the difference
    /// between the old and the new key set is recorded like a catch-up's changes.
    ///
    /// Neither kind keeps a second copy of the key set: the first load fills a new
    /// table as rows arrive, and later ones compare the rows with the store as they
    /// arrive ([`crate::key_table::Reconciliation`]) and apply only what differs. (A
    /// million keys take about 90 MB; building a second set to swap in would double
    /// that, and the allocator would keep the freed copy.)
    pub async fn full_reload(&self) -> Result<StoreSummary, LoadError> {
        let mut loaded_before = self.loaded.lock().await;
        let started = Instant::now();
        let loaded = if *loaded_before {
            self.load_differences().await.map(Some)
        } else {
            self.load_table().await.map(|(table, revision)| {
                let mut store = self.store.write();
                store.install(table, revision);
                self.feed.start(revision);
                None
            })
        };
        self.metrics
            .record_load(LoadKind::Full, loaded.is_ok(), started.elapsed());
        let changes = loaded?;
        let changed = changes.as_ref().map_or(0, Changes::len);
        let (keys, revision) = match changes {
            None => {
                let store = self.store.read();
                (store.len(), store.revision())
            }
            Some(changes) => self.apply(changes),
        };
        self.metrics.record_database_revision(revision);
        *loaded_before = true;
        self.metrics.record_store(keys, revision);
        self.metrics.record_changelog(self.feed.batches());
        Ok(StoreSummary {
            keys,
            revision,
            changes: changed,
        })
    }

    /// The first full load: a new table, filled as rows arrive.
    async fn load_table(&self) -> Result<(KeyTable, u64), LoadError> {
        let mut table = KeyTable::new();
        let revision = self
            .loader
            .full_snapshot_into(|entry| table.insert(entry))
            .await?;
        Ok((table, revision))
    }

    /// A later full load: what turns the store into the database's key set. The store
    /// cannot change meanwhile (loads are serialised), and is read-locked only while
    /// one row is compared, never across an await.
    async fn load_differences(&self) -> Result<Changes, LoadError> {
        let mut reconciliation = self.store.read().table().reconcile();
        let mut compared = Ok(());
        let revision = self
            .loader
            .full_snapshot_into(|entry| {
                if compared.is_ok() {
                    compared = reconciliation.offer(self.store.read().table(), entry);
                }
            })
            .await?;
        compared?;
        let changes = reconciliation.finish(self.store.read().table(), revision)?;
        Ok(changes.normalized())
    }

    /// Applies everything written since the store's revision; returns the number of
    /// changes.
    pub async fn catch_up(&self) -> Result<usize, LoadError> {
        let _only_load = self.loaded.lock().await;
        let since = self.store.read().revision();
        let started = Instant::now();
        let loaded = self.loader.changes_since(since).await;
        self.metrics
            .record_load(LoadKind::Incremental, loaded.is_ok(), started.elapsed());
        let changes = loaded?.normalized();
        self.metrics.record_database_revision(changes.revision);
        let count = changes.len();
        let (keys, revision) = self.apply(changes);
        self.metrics.record_store(keys, revision);
        self.metrics.record_changelog(self.feed.batches());
        if count > 0 {
            info!("catch-up applied: changes={count} revision={revision}");
        }
        Ok(count)
    }

    /// Applies changes to the store and records them in the feed, under the store's
    /// write lock; returns the store's size and revision.
    fn apply(&self, changes: Changes) -> (usize, u64) {
        let mut store = self.store.write();
        store.apply(&changes);
        self.record(changes);
        (store.len(), store.revision())
    }

    /// Records applied changes in the feed; called with the store's write lock held, so
    /// a client that read the store at revision R finds R in the feed too.
    fn record(&self, changes: Changes) {
        if let Recorded::Reset(revision) = self.feed.record(changes) {
            warn!(
                "changelog reset at revision={revision}: the key set changed without a newer \
                 revision; watchers are told to reload"
            );
        }
    }
}

/// Starts the catch-up worker that every catch-up goes through, periodic,
/// notification- or lookup-driven, so at most one runs at a time. Failures are logged
/// here, once; every outcome is reported to `freshness` (misses are answered from
/// memory only while the last catch-up succeeded).
pub fn spawn_catch_up<L: Loader>(refresher: Arc<Refresher<L>>, freshness: Freshness) -> CatchUp {
    CatchUp::spawn(DEFAULT_MIN_SPACING, move || {
        let refresher = refresher.clone();
        let freshness = freshness.clone();
        async move {
            let caught_up = refresher.catch_up().await;
            freshness.record_catch_up(caught_up.is_ok());
            caught_up.map(drop).inspect_err(|error| {
                error!("database error: incremental catch-up failed: {error}");
            })
        }
    })
}

/// How often the periodic loop works.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub poll_interval: Duration,
    pub full_reload_interval: Duration,
}

/// Runs catch-ups every poll interval and full reloads every full-reload interval until
/// `stop` is cancelled. A failure delays the next attempt by a growing backoff instead
/// of the usual interval.
pub async fn run_periodic<L: Loader>(
    refresher: Arc<Refresher<L>>,
    catch_up: CatchUp,
    schedule: Schedule,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new();
    let mut next_catch_up = Instant::now() + schedule.poll_interval;
    let mut next_full = Instant::now() + schedule.full_reload_interval;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next_catch_up.min(next_full)) => {}
        }
        if Instant::now() >= next_full {
            let reloaded = tokio::select! {
                _ = stop.cancelled() => return,
                reloaded = refresher.full_reload() => reloaded,
            };
            match reloaded {
                Ok(summary) => {
                    info!(
                        "snapshot reloaded: keys={} revision={} changes={}",
                        summary.keys, summary.revision, summary.changes
                    );
                    backoff.reset();
                    next_full = Instant::now() + schedule.full_reload_interval;
                    next_catch_up = Instant::now() + schedule.poll_interval;
                }
                Err(error) => {
                    error!("database error: full reload failed: {error}");
                    // Retry the reload first; catching up meanwhile would fail the same way.
                    next_full = Instant::now() + backoff.next_delay();
                    next_catch_up = next_catch_up.max(next_full);
                }
            }
        } else {
            let caught_up = tokio::select! {
                _ = stop.cancelled() => return,
                caught_up = catch_up.request() => caught_up,
            };
            match caught_up {
                Ok(()) => {
                    backoff.reset();
                    next_catch_up = Instant::now() + schedule.poll_interval;
                }
                Err(CatchUpError::Stopped) => return,
                // Already logged by the catch-up worker.
                Err(CatchUpError::Failed(_)) => {
                    next_catch_up = Instant::now() + backoff.next_delay();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use uuid::Uuid;

    use super::*;
    use crate::store::{Changes, KeyEntry};

    /// A database stand-in: revision `n` holds keys with first byte 1..=n, except the
    /// deleted ones, which only full snapshots leave out.
    #[derive(Default)]
    struct FakeLoader {
        revision: AtomicUsize,
        deleted: std::sync::Mutex<Vec<u8>>,
        down: AtomicBool,
        /// Full loads fail after handing over their first key.
        fail_midway: AtomicBool,
        full_loads: AtomicUsize,
        catch_ups: AtomicUsize,
    }

    fn entry(first_byte: u8) -> KeyEntry {
        let mut key_hash = [0; 32];
        key_hash[0] = first_byte;
        KeyEntry {
            key_hash,
            key_id: Uuid::from_u128(first_byte.into()),
            org_id: Uuid::nil(),
            expires_at: 0,
            rate_limit: None,
        }
    }

    impl FakeLoader {
        fn check(&self) -> Result<u64, LoadError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(LoadError::InvalidRow("database down".to_owned()));
            }
            Ok(self.revision.load(Ordering::SeqCst) as u64)
        }
    }

    impl Loader for Arc<FakeLoader> {
        async fn full_snapshot_into<S: FnMut(KeyEntry) + Send>(
            &self,
            sink: S,
        ) -> Result<u64, LoadError> {
            self.full_loads.fetch_add(1, Ordering::SeqCst);
            let revision = self.check()?;
            let deleted = self.deleted.lock().unwrap().clone();
            // Newest first: rows come in no particular order.
            let keys = (1..=revision as u8)
                .rev()
                .filter(|byte| !deleted.contains(byte))
                .map(entry);
            if self.fail_midway.load(Ordering::SeqCst) {
                keys.take(1).for_each(sink);
                return Err(LoadError::InvalidRow("connection reset".to_owned()));
            }
            keys.for_each(sink);
            Ok(revision)
        }

        async fn changes_since(&self, since: u64) -> Result<Changes, LoadError> {
            self.catch_ups.fetch_add(1, Ordering::SeqCst);
            let revision = self.check()?;
            Ok(Changes {
                revision,
                upserts: (since as u8 + 1..=revision as u8).map(entry).collect(),
                removals: vec![],
            })
        }
    }

    fn refresher(loader: &Arc<FakeLoader>) -> (Arc<Refresher<Arc<FakeLoader>>>, SharedStore) {
        let (refresher, store, _) = refresher_and_feed(loader);
        (refresher, store)
    }

    fn refresher_and_feed(
        loader: &Arc<FakeLoader>,
    ) -> (
        Arc<Refresher<Arc<FakeLoader>>>,
        SharedStore,
        Arc<ChangeFeed>,
    ) {
        let store = SharedStore::new();
        let feed = Arc::new(ChangeFeed::new(1000));
        let refresher = Refresher::new(
            loader.clone(),
            store.clone(),
            feed.clone(),
            Arc::new(Metrics::new()),
        );
        (Arc::new(refresher), store, feed)
    }

    #[tokio::test]
    async fn full_reload_then_catch_up_follow_the_database() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(2, Ordering::SeqCst);
        let (refresher, store) = refresher(&loader);
        let summary = refresher.full_reload().await.unwrap();
        assert_eq!(
            summary,
            StoreSummary {
                keys: 2,
                revision: 2,
                changes: 0,
            }
        );

        loader.revision.store(5, Ordering::SeqCst);
        assert_eq!(refresher.catch_up().await.unwrap(), 3);
        assert_eq!(store.read().revision(), 5);
        assert_eq!(store.read().len(), 5);
        assert_eq!(refresher.catch_up().await.unwrap(), 0);
    }

    fn first_bytes(changes: &Changes) -> (u64, Vec<u8>, Vec<u8>) {
        (
            changes.revision,
            changes.upserts.iter().map(|e| e.key_hash[0]).collect(),
            changes.removals.iter().map(|h| h[0]).collect(),
        )
    }

    #[tokio::test]
    async fn every_load_after_the_first_is_recorded_in_the_feed() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(3, Ordering::SeqCst);
        let (refresher, store, feed) = refresher_and_feed(&loader);
        refresher.full_reload().await.unwrap();
        assert_eq!(
            feed.read(|log| (log.base(), log.revision(), log.len())),
            (3, 3, 0)
        );

        loader.revision.store(5, Ordering::SeqCst);
        refresher.catch_up().await.unwrap();
        // Nothing new: the revision stays, no batch.
        refresher.catch_up().await.unwrap();

        // The full reload's batch is the difference between the old and new sets.
        loader.revision.store(6, Ordering::SeqCst);
        loader.deleted.lock().unwrap().push(1);
        let summary = refresher.full_reload().await.unwrap();
        assert_eq!((summary.keys, summary.revision, summary.changes), (5, 6, 2));
        let batches = feed.read(|log| log.since(3)).unwrap();
        let batches: Vec<_> = batches.iter().map(|batch| first_bytes(batch)).collect();
        assert_eq!(
            batches,
            vec![(5, vec![4, 5], vec![]), (6, vec![6], vec![1])]
        );
        assert_eq!(store.read().revision(), 6);

        // A reload that changes nothing adds nothing.
        let summary = refresher.full_reload().await.unwrap();
        assert_eq!(summary.changes, 0);
        assert_eq!(feed.batches(), 2);
        assert_eq!(feed.revision(), 6);
    }

    #[tokio::test]
    async fn failed_load_keeps_the_store() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(3, Ordering::SeqCst);
        let (refresher, store) = refresher(&loader);
        refresher.full_reload().await.unwrap();
        loader.down.store(true, Ordering::SeqCst);
        assert!(refresher.catch_up().await.is_err());
        assert!(refresher.full_reload().await.is_err());
        assert_eq!(store.read().len(), 3);
        assert_eq!(store.read().revision(), 3);
    }

    #[tokio::test]
    async fn a_reload_that_fails_half_way_changes_nothing() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(3, Ordering::SeqCst);
        let (refresher, store, feed) = refresher_and_feed(&loader);
        refresher.full_reload().await.unwrap();
        loader.revision.store(6, Ordering::SeqCst);
        loader.deleted.lock().unwrap().push(2);
        loader.fail_midway.store(true, Ordering::SeqCst);
        assert!(refresher.full_reload().await.is_err());
        assert_eq!((store.read().len(), store.read().revision()), (3, 3));
        assert_eq!(feed.batches(), 0);

        // The next one applies the whole difference.
        loader.fail_midway.store(false, Ordering::SeqCst);
        let summary = refresher.full_reload().await.unwrap();
        assert_eq!((summary.keys, summary.revision, summary.changes), (5, 6, 4));
        let keys: Vec<u8> = store
            .read()
            .page(&[], 10, 0)
            .keys
            .iter()
            .map(|e| e.key_hash[0])
            .collect();
        assert_eq!(keys, vec![1, 3, 4, 5, 6]);
    }

    #[tokio::test]
    async fn a_reload_picks_up_a_changed_key() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(2, Ordering::SeqCst);
        let (refresher, store, feed) = refresher_and_feed(&loader);
        refresher.full_reload().await.unwrap();
        // The store drifted from the database (a change that no catch-up delivered).
        let mut drifted = entry(2);
        drifted.expires_at = 99;
        store.write().apply(&Changes {
            revision: 2,
            upserts: vec![drifted],
            removals: vec![],
        });
        loader.revision.store(3, Ordering::SeqCst);
        let summary = refresher.full_reload().await.unwrap();
        assert_eq!(summary.changes, 2, "key 2 repaired, key 3 new");
        assert_eq!(store.read().get(&entry(2).key_hash, 0), Some(entry(2)));
        let batches = feed.read(|log| log.since(2)).unwrap();
        assert_eq!(first_bytes(&batches[0]), (3, vec![2, 3], vec![]));
    }

    #[tokio::test]
    async fn catch_up_outcomes_reach_freshness() {
        let loader = Arc::new(FakeLoader::default());
        let (refresher, _) = refresher(&loader);
        refresher.full_reload().await.unwrap();
        let freshness = Freshness::new(Arc::new(Metrics::new()));
        let catch_up = spawn_catch_up(refresher, freshness.clone());
        freshness.set_listening(true);
        loader.down.store(true, Ordering::SeqCst);
        assert!(catch_up.request().await.is_err());
        assert!(!freshness.is_current());
        loader.down.store(false, Ordering::SeqCst);
        catch_up.request().await.unwrap();
        assert!(freshness.is_current());
    }

    /// Waits (in paused time) until `condition` holds, failing after `limit`.
    async fn eventually(limit: Duration, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + limit;
        while !condition() {
            assert!(
                Instant::now() < deadline,
                "condition not met within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_loop_catches_up_reloads_and_backs_off() {
        let loader = Arc::new(FakeLoader::default());
        let (refresher, store) = refresher(&loader);
        refresher.full_reload().await.unwrap();
        let stop = CancellationToken::new();
        let schedule = Schedule {
            poll_interval: Duration::from_secs(1),
            full_reload_interval: Duration::from_secs(60),
        };
        let task = tokio::spawn(run_periodic(
            refresher.clone(),
            spawn_catch_up(refresher.clone(), Freshness::new(Arc::new(Metrics::new()))),
            schedule,
            stop.clone(),
        ));

        loader.revision.store(4, Ordering::SeqCst);
        eventually(Duration::from_secs(2), || store.read().len() == 4).await;

        // While the database is down, attempts space out: 1 s, 2 s, 4 s, 8 s, 16 s...
        loader.down.store(true, Ordering::SeqCst);
        let before = loader.catch_ups.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        let attempts = loader.catch_ups.load(Ordering::SeqCst) - before;
        assert!((3..=6).contains(&attempts), "{attempts} attempts in 30 s");
        assert_eq!(store.read().len(), 4, "last snapshot still served");

        loader.down.store(false, Ordering::SeqCst);
        loader.revision.store(6, Ordering::SeqCst);
        eventually(Duration::from_secs(40), || store.read().len() == 6).await;

        // The full reload runs on its own schedule.
        let full_before = loader.full_loads.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(loader.full_loads.load(Ordering::SeqCst) > full_before);

        stop.cancel();
        task.await.unwrap();
    }
}
