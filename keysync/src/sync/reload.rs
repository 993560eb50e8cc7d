//! Keeping the in-memory key set in step with the database: full reloads, incremental
//! catch-ups, reads of where the database stands (the periodic confirmation), and the
//! periodic loop that runs them and backs off while the database is unreachable (the
//! last snapshot keeps being served meanwhile). Every change applied to the key set, by
//! either kind of load, is recorded in the change feed for watchers.
//!
//! Every load that succeeds *confirms* the key set ([`Confirmation`]): it shows the key
//! set current as of the moment the load started.
//!
//! Every load also checks that the database is still in the revision history the key
//! set counts in ([`crate::sync::history`]). When it is not (another epoch, or the same
//! epoch at a revision below the key set's: a restored dump, a failover to a lagging
//! replica, a counter rewritten by hand), the reloader logs it, starts a new history in
//! the database if the epoch alone cannot tell (a new random history id), reloads
//! everything, and restarts the change feed at the new position, which tells every
//! watcher to have its client reload.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::key_set::change_feed::ChangeFeed;
use crate::key_set::changelog::Recorded;
use crate::key_set::changes::Changes;
use crate::key_set::key_table::KeyTable;
use crate::key_set::position::Position;
use crate::key_set::SharedKeySet;
use crate::sync::catch_up::{CatchUp, CatchUpError, DEFAULT_MIN_SPACING};
use crate::sync::confirmation::Confirmation;
use crate::sync::database_backoff;
use crate::sync::freshness::Freshness;
use crate::sync::loader::{DatabaseState, LoadError, Loader};
use crate::sync::metrics::{LoadKind, SyncMetrics};

/// Size and revision of the key set after a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySetSummary {
    pub keys: usize,
    pub revision: u64,
    /// Records the load changed (upserts plus removals); 0 for the first load.
    pub changes: usize,
}

/// What a read of where the database stands found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The key set is at the database's revision: confirmed.
    Current,
    /// The database is ahead: a catch-up is needed (and will confirm).
    Behind,
    /// The database's history changed; everything was reloaded (and confirmed).
    HistoryChanged,
}

/// Whether the database at `found` is in another history than a key set at `held`.
fn history_changed(held: Position, found: Position) -> bool {
    found.epoch != held.epoch || found.revision < held.revision
}

/// Loads from a [`Loader`] into the shared key set, one load at a time, and records
/// what each load changed in the change feed.
pub struct Reloader<L> {
    loader: L,
    key_set: SharedKeySet,
    feed: Arc<ChangeFeed>,
    metrics: Arc<SyncMetrics>,
    confirmation: Confirmation,
    /// Loads must not overlap: a catch-up computed against revision R and applied
    /// after a full reload to R+n would roll keys back, and a read of the database's
    /// revision compared with a key set another load is moving would be meaningless.
    /// Holds whether a full snapshot has been loaded yet (the first one starts the
    /// changelog instead of adding to it).
    loaded: tokio::sync::Mutex<bool>,
}

impl<L: Loader> Reloader<L> {
    /// The confirmation this reloader keeps.
    pub fn confirmation(&self) -> &Confirmation {
        &self.confirmation
    }

    pub fn new(
        loader: L,
        key_set: SharedKeySet,
        feed: Arc<ChangeFeed>,
        metrics: Arc<SyncMetrics>,
        confirmation: Confirmation,
    ) -> Self {
        Reloader {
            loader,
            key_set,
            feed,
            metrics,
            confirmation,
            loaded: tokio::sync::Mutex::new(false),
        }
    }

    /// The key set's revision.
    pub fn revision(&self) -> u64 {
        self.key_set.read().revision()
    }

    /// The key set's revision and epoch.
    pub fn position(&self) -> Position {
        self.key_set.read().position()
    }

    /// Replaces the key set with a full snapshot. After the first one, the difference
    /// between the old and the new key set is recorded like a catch-up's changes.
    ///
    /// Neither kind keeps a second copy of the key set: the first load fills a new
    /// table as rows arrive, and later ones compare the rows with the key set as they
    /// arrive ([`crate::key_set::key_table::Reconciliation`]) and apply only what differs. (A
    /// million keys take about 90 MB; building a second set to swap in would double
    /// that, and the allocator would keep the freed copy.)
    pub async fn full_reload(&self) -> Result<KeySetSummary, LoadError> {
        let mut loaded_before = self.loaded.lock().await;
        let started = Instant::now();
        if !*loaded_before {
            let loaded = self.load_table().await;
            self.metrics
                .record_load(LoadKind::Full, loaded.is_ok(), started.elapsed());
            let (table, state) = loaded?;
            {
                let mut key_set = self.key_set.write();
                key_set.install(table, state.position);
                self.feed.restart(state.position);
            }
            *loaded_before = true;
            return Ok(self.loaded(started, state, 0));
        }
        let held = self.key_set.read().position();
        let loaded = self.load_differences().await;
        self.metrics
            .record_load(LoadKind::Full, loaded.is_ok(), started.elapsed());
        let (changes, state) = loaded?;
        if history_changed(held, state.position) {
            return self.follow_new_history(state).await;
        }
        let changed = changes.len();
        self.apply(changes);
        Ok(self.loaded(started, state, changed))
    }

    /// After a load from `state` that started at `started`: metrics, confirmation, and
    /// the summary.
    fn loaded(&self, started: Instant, state: DatabaseState, changes: usize) -> KeySetSummary {
        let (keys, revision) = {
            let key_set = self.key_set.read();
            (key_set.len(), key_set.revision())
        };
        self.metrics
            .record_database_revision(state.position.revision);
        self.metrics.record_store(keys, revision);
        self.metrics
            .record_changelog(self.feed.batches(), self.feed.records());
        self.confirmation.confirm(started);
        KeySetSummary {
            keys,
            revision,
            changes,
        }
    }

    /// The first full load: a new table, filled as rows arrive.
    async fn load_table(&self) -> Result<(KeyTable, DatabaseState), LoadError> {
        let mut table = KeyTable::new();
        let state = self
            .loader
            .full_snapshot_into(|entry| table.insert(entry))
            .await?;
        Ok((table, state))
    }

    /// A later full load: what turns the key set into the database's key set. The key set
    /// cannot change meanwhile (loads are serialised), and is read-locked only while
    /// one row is compared, never across an await.
    async fn load_differences(&self) -> Result<(Changes, DatabaseState), LoadError> {
        let mut reconciliation = self.key_set.read().table().reconcile();
        let mut compared = Ok(());
        let state = self
            .loader
            .full_snapshot_into(|entry| {
                if compared.is_ok() {
                    compared = reconciliation.offer(self.key_set.read().table(), entry);
                }
            })
            .await?;
        compared?;
        let changes =
            reconciliation.finish(self.key_set.read().table(), state.position.revision)?;
        Ok((changes.normalized(), state))
    }

    /// The database at `found` is in another revision history than the key set (see the
    /// module documentation): start a new history if the epoch alone cannot tell,
    /// reload everything, and restart the change feed there. Called with the load lock
    /// held.
    async fn follow_new_history(&self, found: DatabaseState) -> Result<KeySetSummary, LoadError> {
        let held = self.key_set.read().position();
        warn!(
            "revision history changed: database at {}, key set at {held} (a restored \
             dump, a failover or a rewritten revision counter); reloading everything, \
             every watcher must resync",
            found.position
        );
        self.metrics.record_history_reset();
        if found.position.epoch == held.epoch {
            // The counter went back in what looks like the same history: make it a new
            // one, so every keysync and every client can tell.
            match self.loader.renew_history(found.history_id).await {
                Ok(true) => info!("revision history renewed: new history id written"),
                Ok(false) => info!("revision history already renewed by another keysync"),
                Err(error) => warn!(
                    "database error: cannot write a new history id ({error}); watchers \
                     ahead of the database's revision are told to resync"
                ),
            }
        }
        let started = Instant::now();
        let loaded = self.load_differences().await;
        self.metrics
            .record_load(LoadKind::Full, loaded.is_ok(), started.elapsed());
        let (changes, state) = loaded?;
        let changed = changes.len();
        {
            let mut key_set = self.key_set.write();
            key_set.apply(&changes);
            key_set.reposition(state.position);
            self.feed.restart(state.position);
        }
        info!(
            "snapshot reloaded into a new revision history: keys={} {} changes={changed}",
            self.key_set.read().len(),
            state.position
        );
        Ok(self.loaded(started, state, changed))
    }

    /// Applies everything written since the key set's revision; returns the number of
    /// changes.
    pub async fn catch_up(&self) -> Result<usize, LoadError> {
        let _only_load = self.loaded.lock().await;
        let held = self.key_set.read().position();
        let started = Instant::now();
        let loaded = self.loader.changes_since(held.revision).await;
        self.metrics
            .record_load(LoadKind::Incremental, loaded.is_ok(), started.elapsed());
        let (state, changes) = loaded?;
        if history_changed(held, state.position) {
            return self
                .follow_new_history(state)
                .await
                .map(|summary| summary.changes);
        }
        let changes = changes.normalized();
        let count = changes.len();
        self.apply(changes);
        let summary = self.loaded(started, state, count);
        if count > 0 {
            info!(
                "catch-up applied: changes={count} revision={}",
                summary.revision
            );
        }
        Ok(count)
    }

    /// Reads where the database stands: confirms the key set when it is at the
    /// database's revision, says so when it is behind (a catch-up is the caller's to ask
    /// for), and follows a new history at once.
    pub async fn probe(&self) -> Result<Probe, LoadError> {
        let _only_load = self.loaded.lock().await;
        let held = self.key_set.read().position();
        let started = Instant::now();
        let state = self.loader.state().await?;
        self.metrics
            .record_database_revision(state.position.revision);
        if history_changed(held, state.position) {
            self.follow_new_history(state).await?;
            return Ok(Probe::HistoryChanged);
        }
        if state.position.revision > held.revision {
            return Ok(Probe::Behind);
        }
        self.confirmation.confirm(started);
        Ok(Probe::Current)
    }

    /// Applies changes to the key set and records them in the feed, under the key set's
    /// write lock.
    fn apply(&self, changes: Changes) {
        let mut key_set = self.key_set.write();
        key_set.apply(&changes);
        self.record(changes);
    }

    /// Records applied changes in the feed; called with the key set's write lock held, so
    /// a client that read the key set at revision R finds R in the feed too.
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
pub fn spawn_catch_up<L: Loader>(reloader: Arc<Reloader<L>>, freshness: Freshness) -> CatchUp {
    CatchUp::spawn(DEFAULT_MIN_SPACING, move || {
        let reloader = reloader.clone();
        let freshness = freshness.clone();
        async move {
            let caught_up = reloader.catch_up().await;
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
    reloader: Arc<Reloader<L>>,
    catch_up: CatchUp,
    schedule: Schedule,
    stop: CancellationToken,
) {
    let mut backoff = database_backoff();
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
                reloaded = reloader.full_reload() => reloaded,
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
                    next_full = Instant::now() + backoff.failed();
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
                    next_catch_up = Instant::now() + backoff.failed();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use std::sync::atomic::AtomicI64;

    use super::*;
    use crate::key_set::change_feed::FeedEvent;
    use crate::key_set::key_entry::KeyEntry;
    use crate::metrics::Metrics;
    use crate::sync::confirmation::testing;

    /// A database stand-in: revision `n` holds keys with first byte 1..=n, except the
    /// deleted ones, which only full snapshots leave out. Its epoch is 1000 plus its
    /// history id.
    #[derive(Default)]
    struct FakeLoader {
        revision: AtomicUsize,
        history_id: AtomicI64,
        deleted: std::sync::Mutex<Vec<u8>>,
        down: AtomicBool,
        /// Writing a new history id fails (a read-only database).
        read_only: AtomicBool,
        /// Full loads fail after handing over their first key.
        fail_midway: AtomicBool,
        full_loads: AtomicUsize,
        catch_ups: AtomicUsize,
        renewals: AtomicUsize,
    }

    impl FakeLoader {
        fn check(&self) -> Result<u64, LoadError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(LoadError::InvalidRow("database down".to_owned()));
            }
            Ok(self.revision.load(Ordering::SeqCst) as u64)
        }

        fn state_now(&self) -> Result<DatabaseState, LoadError> {
            let revision = self.check()?;
            let history_id = self.history_id.load(Ordering::SeqCst);
            Ok(DatabaseState {
                position: Position {
                    epoch: 1000 + history_id as u64,
                    revision,
                },
                history_id,
            })
        }
    }

    impl Loader for Arc<FakeLoader> {
        async fn full_snapshot_into<S: FnMut(KeyEntry) + Send>(
            &self,
            sink: S,
        ) -> Result<DatabaseState, LoadError> {
            self.full_loads.fetch_add(1, Ordering::SeqCst);
            let state = self.state_now()?;
            let revision = state.position.revision;
            let deleted = self.deleted.lock().unwrap().clone();
            // Newest first: rows come in no particular order.
            let keys = (1..=revision as u8)
                .rev()
                .filter(|byte| !deleted.contains(byte))
                .map(KeyEntry::numbered);
            if self.fail_midway.load(Ordering::SeqCst) {
                keys.take(1).for_each(sink);
                return Err(LoadError::InvalidRow("connection reset".to_owned()));
            }
            keys.for_each(sink);
            Ok(state)
        }

        async fn changes_since(&self, since: u64) -> Result<(DatabaseState, Changes), LoadError> {
            self.catch_ups.fetch_add(1, Ordering::SeqCst);
            let state = self.state_now()?;
            let revision = state.position.revision;
            Ok((
                state,
                Changes {
                    revision,
                    upserts: (since as u8 + 1..=revision as u8)
                        .map(KeyEntry::numbered)
                        .collect(),
                    removals: vec![],
                },
            ))
        }

        async fn state(&self) -> Result<DatabaseState, LoadError> {
            self.state_now()
        }

        async fn renew_history(&self, seen: i64) -> Result<bool, LoadError> {
            if self.read_only.load(Ordering::SeqCst) {
                return Err(LoadError::InvalidRow("read-only transaction".to_owned()));
            }
            let renewed = self
                .history_id
                .compare_exchange(seen, seen + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            if renewed {
                self.renewals.fetch_add(1, Ordering::SeqCst);
            }
            Ok(renewed)
        }
    }

    fn confirmation() -> Confirmation {
        testing::unconfirmed(testing::BOUNDS, &Arc::new(Metrics::new()))
    }

    fn reloader(loader: &Arc<FakeLoader>) -> (Arc<Reloader<Arc<FakeLoader>>>, SharedKeySet) {
        let (reloader, key_set, _) = reloader_and_feed(loader);
        (reloader, key_set)
    }

    fn reloader_and_feed(
        loader: &Arc<FakeLoader>,
    ) -> (
        Arc<Reloader<Arc<FakeLoader>>>,
        SharedKeySet,
        Arc<ChangeFeed>,
    ) {
        let key_set = SharedKeySet::new();
        let feed = Arc::new(ChangeFeed::new(1000));
        let reloader = Reloader::new(
            loader.clone(),
            key_set.clone(),
            feed.clone(),
            Metrics::new().sync,
            confirmation(),
        );
        (Arc::new(reloader), key_set, feed)
    }

    #[tokio::test]
    async fn full_reload_then_catch_up_follow_the_database() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(2, Ordering::SeqCst);
        let (reloader, key_set) = reloader(&loader);
        let summary = reloader.full_reload().await.unwrap();
        assert_eq!(
            summary,
            KeySetSummary {
                keys: 2,
                revision: 2,
                changes: 0,
            }
        );

        loader.revision.store(5, Ordering::SeqCst);
        assert_eq!(reloader.catch_up().await.unwrap(), 3);
        assert_eq!(key_set.read().revision(), 5);
        assert_eq!(key_set.read().len(), 5);
        assert_eq!(reloader.catch_up().await.unwrap(), 0);
    }

    fn first_bytes(changes: &Changes) -> (u64, Vec<u8>, Vec<u8>) {
        (
            changes.revision,
            changes.upserts.iter().map(|e| e.key_hash.0[0]).collect(),
            changes.removals.iter().map(|h| h.0[0]).collect(),
        )
    }

    #[tokio::test]
    async fn every_load_after_the_first_is_recorded_in_the_feed() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(3, Ordering::SeqCst);
        let (reloader, key_set, feed) = reloader_and_feed(&loader);
        reloader.full_reload().await.unwrap();
        assert_eq!(
            feed.read(|log| (log.base(), log.revision(), log.len())),
            (3, 3, 0)
        );

        loader.revision.store(5, Ordering::SeqCst);
        reloader.catch_up().await.unwrap();
        // Nothing new: the revision stays, no batch.
        reloader.catch_up().await.unwrap();

        // The full reload's batch is the difference between the old and new sets.
        loader.revision.store(6, Ordering::SeqCst);
        loader.deleted.lock().unwrap().push(1);
        let summary = reloader.full_reload().await.unwrap();
        assert_eq!((summary.keys, summary.revision, summary.changes), (5, 6, 2));
        let batches = feed.read(|log| log.since(3)).unwrap();
        let batches: Vec<_> = batches.iter().map(|batch| first_bytes(batch)).collect();
        assert_eq!(
            batches,
            vec![(5, vec![4, 5], vec![]), (6, vec![6], vec![1])]
        );
        assert_eq!(key_set.read().revision(), 6);

        // A reload that changes nothing adds nothing.
        let summary = reloader.full_reload().await.unwrap();
        assert_eq!(summary.changes, 0);
        assert_eq!(feed.batches(), 2);
        assert_eq!(feed.revision(), 6);
    }

    #[tokio::test]
    async fn failed_load_keeps_the_store() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(3, Ordering::SeqCst);
        let (reloader, key_set) = reloader(&loader);
        reloader.full_reload().await.unwrap();
        loader.down.store(true, Ordering::SeqCst);
        assert!(reloader.catch_up().await.is_err());
        assert!(reloader.full_reload().await.is_err());
        assert_eq!(key_set.read().len(), 3);
        assert_eq!(key_set.read().revision(), 3);
    }

    #[tokio::test]
    async fn a_reload_that_fails_half_way_changes_nothing() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(3, Ordering::SeqCst);
        let (reloader, key_set, feed) = reloader_and_feed(&loader);
        reloader.full_reload().await.unwrap();
        loader.revision.store(6, Ordering::SeqCst);
        loader.deleted.lock().unwrap().push(2);
        loader.fail_midway.store(true, Ordering::SeqCst);
        assert!(reloader.full_reload().await.is_err());
        assert_eq!((key_set.read().len(), key_set.read().revision()), (3, 3));
        assert_eq!(feed.batches(), 0);

        // The next one applies the whole difference.
        loader.fail_midway.store(false, Ordering::SeqCst);
        let summary = reloader.full_reload().await.unwrap();
        assert_eq!((summary.keys, summary.revision, summary.changes), (5, 6, 4));
        let keys: Vec<u8> = key_set
            .read()
            .page(&[], 10, 0)
            .keys
            .iter()
            .map(|e| e.key_hash.0[0])
            .collect();
        assert_eq!(keys, vec![1, 3, 4, 5, 6]);
    }

    #[tokio::test]
    async fn a_reload_picks_up_a_changed_key() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(2, Ordering::SeqCst);
        let (reloader, key_set, feed) = reloader_and_feed(&loader);
        reloader.full_reload().await.unwrap();
        // The key set drifted from the database (a change that no catch-up delivered).
        let mut drifted = KeyEntry::numbered(2);
        drifted.expires_at = 99;
        key_set.write().apply(&Changes {
            revision: 2,
            upserts: vec![drifted],
            removals: vec![],
        });
        loader.revision.store(3, Ordering::SeqCst);
        let summary = reloader.full_reload().await.unwrap();
        assert_eq!(summary.changes, 2, "key 2 repaired, key 3 new");
        assert_eq!(
            key_set
                .read()
                .get(KeyEntry::numbered(2).key_hash.as_bytes(), 0),
            Some(KeyEntry::numbered(2))
        );
        let batches = feed.read(|log| log.since(2)).unwrap();
        assert_eq!(first_bytes(&batches[0]), (3, vec![2, 3], vec![]));
    }

    #[tokio::test]
    async fn catch_up_outcomes_reach_freshness() {
        let loader = Arc::new(FakeLoader::default());
        let (reloader, _) = reloader(&loader);
        reloader.full_reload().await.unwrap();
        let freshness = Freshness::new(Metrics::new().sync);
        let catch_up = spawn_catch_up(reloader, freshness.clone());
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
        let (reloader, key_set) = reloader(&loader);
        reloader.full_reload().await.unwrap();
        let stop = CancellationToken::new();
        let schedule = Schedule {
            poll_interval: Duration::from_secs(1),
            full_reload_interval: Duration::from_secs(60),
        };
        let task = tokio::spawn(run_periodic(
            reloader.clone(),
            spawn_catch_up(reloader.clone(), Freshness::new(Metrics::new().sync)),
            schedule,
            stop.clone(),
        ));

        loader.revision.store(4, Ordering::SeqCst);
        eventually(Duration::from_secs(2), || key_set.read().len() == 4).await;

        // While the database is down, attempts space out: about 1 s, 2 s, 4 s, 8 s,
        // 16 s... (each between half and all of that, jittered).
        loader.down.store(true, Ordering::SeqCst);
        let before = loader.catch_ups.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        let attempts = loader.catch_ups.load(Ordering::SeqCst) - before;
        assert!((3..=6).contains(&attempts), "{attempts} attempts in 30 s");
        assert_eq!(key_set.read().len(), 4, "last snapshot still served");

        loader.down.store(false, Ordering::SeqCst);
        loader.revision.store(6, Ordering::SeqCst);
        eventually(Duration::from_secs(40), || key_set.read().len() == 6).await;

        // The full reload runs on its own schedule.
        let full_before = loader.full_loads.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(loader.full_loads.load(Ordering::SeqCst) > full_before);

        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn successful_loads_confirm_as_of_their_start_and_failures_do_not() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(2, Ordering::SeqCst);
        let (reloader, _) = reloader(&loader);
        let confirmation = reloader.confirmation.clone();
        assert_eq!(confirmation.age(), None);
        reloader.full_reload().await.unwrap();
        assert_eq!(confirmation.age(), Some(Duration::ZERO));

        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(reloader.probe().await.unwrap(), Probe::Current);
        assert_eq!(confirmation.age(), Some(Duration::ZERO));

        tokio::time::advance(Duration::from_secs(3)).await;
        loader.revision.store(3, Ordering::SeqCst);
        assert_eq!(reloader.probe().await.unwrap(), Probe::Behind);
        assert_eq!(
            confirmation.age(),
            Some(Duration::from_secs(3)),
            "behind is not current"
        );
        reloader.catch_up().await.unwrap();
        assert_eq!(confirmation.age(), Some(Duration::ZERO));

        tokio::time::advance(Duration::from_secs(3)).await;
        loader.down.store(true, Ordering::SeqCst);
        assert!(reloader.probe().await.is_err());
        assert!(reloader.catch_up().await.is_err());
        assert!(reloader.full_reload().await.is_err());
        assert_eq!(confirmation.age(), Some(Duration::from_secs(3)));
    }

    #[tokio::test]
    async fn a_revision_going_back_starts_a_new_history_and_every_watcher_resyncs() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(5, Ordering::SeqCst);
        let (reloader, key_set, feed) = reloader_and_feed(&loader);
        reloader.full_reload().await.unwrap();
        let before = key_set.read().position();
        assert_eq!(
            before,
            Position {
                epoch: 1000,
                revision: 5
            }
        );
        let (mut events, ()) = feed.subscribe(|_| ());

        // An older dump restored: the counter is back at 3, the history id unchanged.
        loader.revision.store(3, Ordering::SeqCst);
        assert_eq!(reloader.probe().await.unwrap(), Probe::HistoryChanged);
        assert_eq!(loader.renewals.load(Ordering::SeqCst), 1);
        let after = Position {
            epoch: 1001,
            revision: 3,
        };
        assert_eq!(key_set.read().position(), after);
        assert_eq!(key_set.read().len(), 3, "keys 4 and 5 are gone");
        assert_eq!(events.try_recv().unwrap(), FeedEvent::Reset(after));
        assert_eq!(feed.position(), after);
        assert_eq!(feed.batches(), 0, "the old history's changes are dropped");
        assert_eq!(reloader.metrics.history_resets(), 1);

        // The new history goes on as usual.
        loader.revision.store(4, Ordering::SeqCst);
        assert_eq!(reloader.catch_up().await.unwrap(), 1);
        assert_eq!(
            key_set.read().position(),
            Position {
                epoch: 1001,
                revision: 4
            }
        );
        assert!(matches!(events.try_recv().unwrap(), FeedEvent::Batch(_)));
    }

    #[tokio::test]
    async fn a_catch_up_that_finds_another_epoch_reloads_everything_without_renewing() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(5, Ordering::SeqCst);
        let (reloader, key_set, feed) = reloader_and_feed(&loader);
        reloader.full_reload().await.unwrap();
        // A failover to a promoted replica (a new timeline), further ahead even.
        loader.history_id.store(40, Ordering::SeqCst);
        loader.revision.store(7, Ordering::SeqCst);
        loader.deleted.lock().unwrap().push(1);
        reloader.catch_up().await.unwrap();
        assert_eq!(
            loader.renewals.load(Ordering::SeqCst),
            0,
            "the epoch tells already"
        );
        assert_eq!(loader.full_loads.load(Ordering::SeqCst), 2);
        let position = Position {
            epoch: 1040,
            revision: 7,
        };
        assert_eq!(key_set.read().position(), position);
        assert_eq!(
            key_set.read().len(),
            6,
            "a full reload, not a catch-up: key 1 is gone"
        );
        assert_eq!(feed.position(), position);
    }

    #[tokio::test]
    async fn a_read_only_database_still_gets_the_key_set_reloaded() {
        let loader = Arc::new(FakeLoader::default());
        loader.revision.store(5, Ordering::SeqCst);
        loader.read_only.store(true, Ordering::SeqCst);
        let (reloader, key_set, feed) = reloader_and_feed(&loader);
        reloader.full_reload().await.unwrap();
        let (mut events, ()) = feed.subscribe(|_| ());
        loader.revision.store(2, Ordering::SeqCst);
        let summary = reloader.full_reload().await.unwrap();
        assert_eq!(summary.revision, 2);
        let position = Position {
            epoch: 1000,
            revision: 2,
        };
        assert_eq!(key_set.read().position(), position);
        assert_eq!(events.try_recv().unwrap(), FeedEvent::Reset(position));
    }
}
