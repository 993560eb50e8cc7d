//! The server side of `WatchKeys` (the filter's `watch_client.rs` is the client side): a
//! stream per client that replays the changes after the client's revision from the
//! changelog, then follows new ones live, with heartbeats when quiet.
//!
//! Where a stream starts ([`plan`]):
//! - the client names another epoch (another revision history, see
//!   [`crate::sync::history`]): one `resync_required` message at the key set's revision,
//!   then live batches after it;
//! - the client's revision A is covered by the changelog (base <= A <= the key set's
//!   revision): the held batches after A, then live ones;
//! - A is older than the changelog (A < base): `resync_required` as above;
//! - A is newer than the key set (the client saw a keysync a moment ahead of this one,
//!   or holds a revision that is wrong): a catch-up is asked for and waited for (at most
//!   [`AHEAD_WAIT`]); then the stream starts as planned anew, and a client still ahead
//!   is told to resync rather than left waiting for the database to pass it.
//!
//! The stream never sends a batch at or below the last revision it sent, except after a
//! `resync_required`. A watcher that falls behind the live broadcast replays from the
//! changelog, or is told to reload when the changelog no longer reaches back far enough
//! (or now counts in another epoch). When the key set moves to another revision history,
//! every stream is told to resync.
//!
//! Every message carries [`Provenance`]: the epoch its revision counts in and how long
//! ago the key set was last confirmed against PostgreSQL. While that is longer than
//! `KEYSYNC_MAX_UNCONFIRMED` keysync is not serving ([`Confirmation`]): open streams end
//! with `UNAVAILABLE` (so clients reconnect, perhaps to a healthy keysync) and new ones
//! are refused. At most `max_streams` streams are open at once; more are refused
//! `RESOURCE_EXHAUSTED`.

use std::sync::Arc;
use std::time::Duration;

use keysync_proto::v1::{KeyChanges, Provenance};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::info;

use crate::grpc::key_record::{to_record, MAX_MESSAGE_RECORD_BYTES, MAX_RECORD_BYTES};
use crate::grpc::metrics::{GrpcMetrics, RefusalReason};
use crate::key_set::change_feed::{ChangeFeed, FeedEvent};
use crate::key_set::changelog::Changelog;
use crate::key_set::changes::Changes;
use crate::sync::catch_up::CatchUp;
use crate::sync::confirmation::Confirmation;

/// Messages buffered per stream between the watcher and tonic; a client that does not
/// read lets the watcher fall behind the broadcast, which the changelog then covers.
const OUTBOX: usize = 16;

/// How long a stream for a client ahead of the key set waits for a catch-up before the
/// client is told to resync.
pub const AHEAD_WAIT: Duration = Duration::from_secs(2);

/// The stream type of `WatchKeys`.
pub type WatchStream = ReceiverStream<Result<KeyChanges, Status>>;

/// How streams behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    /// Most records (upserts plus removals) in one message.
    pub chunk: usize,
    /// Silence after which a heartbeat is sent.
    pub heartbeat: Duration,
    /// Most streams open at once.
    pub max_streams: usize,
}

/// Where a new stream starts, decided from the changelog at subscription time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Send these batches (all after the client's revision), then live ones.
    Replay(Vec<Arc<Changes>>),
    /// The changelog does not reach back to the client's revision, or counts in another
    /// epoch: the client must reload; its key set will then be at least at this (the
    /// key set's) revision.
    Resync(u64),
    /// The client is ahead of the key set: catch up, and plan again.
    Ahead,
}

/// Decides where a stream for a client complete up to `after` in `epoch` (0: unknown)
/// starts.
pub fn plan(log: &Changelog, after: u64, epoch: u64) -> Start {
    if epoch != 0 && epoch != log.epoch() {
        return Start::Resync(log.revision());
    }
    if after > log.revision() {
        return Start::Ahead;
    }
    match log.since(after) {
        Some(batches) => Start::Replay(batches),
        None => Start::Resync(log.revision()),
    }
}

/// Most records in one message whatever `KEYSYNC_WATCH_CHUNK` says: as many of the
/// largest records (keys with the largest policies) as fit the message budget, 6,103.
pub const MAX_CHUNK: usize = MAX_MESSAGE_RECORD_BYTES / MAX_RECORD_BYTES;

/// The messages that carry `batch`: at most `chunk` records each (and never more than
/// [`MAX_CHUNK`], so a message stays under the 16 MiB the filter reads), upserts first,
/// all with the batch's revision, every one but the last marked `partial`. Built one
/// at a time, so a large batch is not copied whole. (Their provenance is set as they
/// are sent.)
pub fn messages(batch: &Changes, chunk: usize) -> impl Iterator<Item = KeyChanges> + '_ {
    let chunk = chunk.clamp(1, MAX_CHUNK);
    let upserts = batch.upserts.len();
    let total = batch.len();
    let count = total.div_ceil(chunk).max(1);
    (0..count).map(move |index| {
        let start = index * chunk;
        let end = (start + chunk).min(total);
        let upsert_range = start.min(upserts)..end.min(upserts);
        let removal_range = start.max(upserts) - upserts..end.max(upserts) - upserts;
        KeyChanges {
            revision: batch.revision,
            upserts: batch.upserts[upsert_range].iter().map(to_record).collect(),
            removals: batch.removals[removal_range]
                .iter()
                .map(|hash| hash.as_bytes().to_vec())
                .collect(),
            resync_required: false,
            partial: index + 1 < count,
            provenance: None,
        }
    })
}

/// Opens watch streams; cheap to clone.
#[derive(Debug, Clone)]
pub struct Watches {
    feed: Arc<ChangeFeed>,
    catch_up: CatchUp,
    metrics: Arc<GrpcMetrics>,
    confirmation: Confirmation,
    settings: WatchSettings,
    /// One permit per open stream.
    streams: Arc<Semaphore>,
    /// Cancelled at shutdown: every stream ends, so the gRPC server can stop.
    stop: CancellationToken,
}

impl Watches {
    pub fn new(
        feed: Arc<ChangeFeed>,
        catch_up: CatchUp,
        metrics: Arc<GrpcMetrics>,
        confirmation: Confirmation,
        settings: WatchSettings,
        stop: CancellationToken,
    ) -> Self {
        Watches {
            feed,
            catch_up,
            metrics,
            confirmation,
            streams: Arc::new(Semaphore::new(settings.max_streams.max(1))),
            settings,
            stop,
        }
    }

    /// Opens a stream for a client complete up to `after` in `epoch` (0: unknown).
    /// Subscribes to live batches before reading the changelog, so nothing falls
    /// between the two. Refused while keysync is not serving, and beyond the bound on
    /// open streams.
    pub fn open(&self, after: u64, epoch: u64) -> Result<WatchStream, Status> {
        if !self.confirmation.is_serving() {
            return Err(Status::unavailable(self.confirmation.describe_unserving()));
        }
        let Ok(permit) = self.streams.clone().try_acquire_owned() else {
            self.metrics.record_refusal(RefusalReason::WatchStreams);
            return Err(Status::resource_exhausted(format!(
                "keysync holds {} WatchKeys streams already (KEYSYNC_MAX_WATCH_STREAMS)",
                self.settings.max_streams
            )));
        };
        let (live, (start, log_epoch)) = self
            .feed
            .subscribe(|log| (plan(log, after, epoch), log.epoch()));
        let (outbox, stream) = mpsc::channel(OUTBOX);
        let watcher = Watcher {
            feed: self.feed.clone(),
            catch_up: self.catch_up.clone(),
            confirmation: self.confirmation.clone(),
            settings: self.settings,
            stop: self.stop.clone(),
            outbox,
            after,
            requested_epoch: epoch,
            epoch: log_epoch,
            last_sent: after,
            last_message: Instant::now(),
        };
        let open = self.metrics.watch_stream();
        info!("watch opened: after_revision={after} epoch={epoch:016x}");
        tokio::spawn(async move {
            let _open = (open, permit);
            let (end, last_sent) = watcher.run(start, live).await;
            info!("watch closed: last_revision={last_sent} ({end})");
        });
        Ok(ReceiverStream::new(stream))
    }
}

/// Why a stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client went away (a send failed, or tonic dropped the stream).
    ClientGone,
    /// Shutdown, or the feed is gone.
    Stopped,
    /// keysync is not serving: its key set is unconfirmed for too long.
    Unconfirmed,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            End::ClientGone => "client gone",
            End::Stopped => "shutting down",
            End::Unconfirmed => "key set unconfirmed for too long",
        })
    }
}

/// What woke the watcher up.
enum Wake {
    End(End),
    Event(Result<FeedEvent, RecvError>),
    Heartbeat,
}

/// One stream's state.
struct Watcher {
    feed: Arc<ChangeFeed>,
    catch_up: CatchUp,
    confirmation: Confirmation,
    settings: WatchSettings,
    stop: CancellationToken,
    outbox: mpsc::Sender<Result<KeyChanges, Status>>,
    /// What the client asked for.
    after: u64,
    requested_epoch: u64,
    /// The epoch the revisions this stream sends count in.
    epoch: u64,
    /// The revision the client is complete up to, as far as this stream knows.
    last_sent: u64,
    /// When the last message went out; heartbeats follow silence.
    last_message: Instant,
}

/// Resolves once keysync stops serving.
async fn unserving(serving: &mut watch::Receiver<bool>) {
    // The sender lives as long as the confirmation this stream holds.
    let _ = serving.wait_for(|serving| !*serving).await;
}

impl Watcher {
    /// Serves the stream until it ends; returns why, and the last revision sent.
    async fn run(mut self, start: Start, live: broadcast::Receiver<FeedEvent>) -> (End, u64) {
        let end = match self.serve(start, live).await {
            Ok(()) => End::Stopped,
            Err(end) => end,
        };
        if end == End::Unconfirmed {
            // The client hears why, and reconnects (perhaps to another keysync).
            let _ = self.outbox.try_send(Err(Status::unavailable(
                self.confirmation.describe_unserving(),
            )));
        }
        (end, self.last_sent)
    }

    async fn serve(
        &mut self,
        start: Start,
        mut live: broadcast::Receiver<FeedEvent>,
    ) -> Result<(), End> {
        let mut serving = self.confirmation.serving();
        let start = match start {
            Start::Ahead => self.catch_up_with_client().await?,
            start => start,
        };
        match start {
            Start::Replay(batches) => self.send_batches(&batches).await?,
            Start::Resync(revision) => self.send_resync(revision).await?,
            Start::Ahead => {
                // Still ahead after a catch-up: what the client holds cannot be right.
                let revision = self.feed.revision();
                self.send_resync(revision).await?;
            }
        }
        loop {
            let heartbeat_at = self.last_message + self.settings.heartbeat;
            let wake = tokio::select! {
                biased;
                _ = self.stop.cancelled() => Wake::End(End::Stopped),
                _ = self.outbox.closed() => Wake::End(End::ClientGone),
                _ = unserving(&mut serving) => Wake::End(End::Unconfirmed),
                event = live.recv() => Wake::Event(event),
                _ = tokio::time::sleep_until(heartbeat_at) => Wake::Heartbeat,
            };
            match wake {
                Wake::End(end) => return Err(end),
                Wake::Event(event) => self.handle(event).await?,
                Wake::Heartbeat => self.heartbeat(&mut live).await?,
            }
        }
    }

    /// The client is ahead of the key set: waits (a little) for a catch-up, and plans
    /// the start again.
    async fn catch_up_with_client(&mut self) -> Result<Start, End> {
        tokio::select! {
            _ = self.stop.cancelled() => return Err(End::Stopped),
            // Its outcome does not matter: the changelog says where the key set is.
            _ = tokio::time::timeout(AHEAD_WAIT, self.catch_up.request()) => {}
        }
        let (start, epoch) = self
            .feed
            .read(|log| (plan(log, self.after, self.requested_epoch), log.epoch()));
        self.epoch = epoch;
        Ok(start)
    }

    async fn handle(&mut self, event: Result<FeedEvent, RecvError>) -> Result<(), End> {
        match event {
            Ok(FeedEvent::Batch(batch)) => self.send_batches(&[batch]).await,
            Ok(FeedEvent::Reset(position)) => {
                self.epoch = position.epoch;
                self.send_resync(position.revision).await
            }
            Err(RecvError::Lagged(_)) => self.catch_up_from_log().await,
            Err(RecvError::Closed) => Err(End::Stopped),
        }
    }

    /// After falling behind the broadcast: replay what the changelog still holds after
    /// the last revision sent, or have the client reload (also when the key set moved to
    /// another history meanwhile). Events still queued are then skipped by revision.
    async fn catch_up_from_log(&mut self) -> Result<(), End> {
        let after = self.last_sent;
        let (missed, position) = self.feed.read(|log| (log.since(after), log.position()));
        if position.epoch != self.epoch {
            self.epoch = position.epoch;
            return self.send_resync(position.revision).await;
        }
        match missed {
            Some(batches) => self.send_batches(&batches).await,
            None => self.send_resync(position.revision).await,
        }
    }

    /// Sends a heartbeat at the key set's revision, after delivering everything queued up
    /// to it: a heartbeat must not claim a revision whose changes were not sent yet.
    async fn heartbeat(&mut self, live: &mut broadcast::Receiver<FeedEvent>) -> Result<(), End> {
        // Every batch up to `position` was broadcast before the position was readable.
        let position = self.feed.position();
        let quiet_since = self.last_message;
        loop {
            let event = match live.try_recv() {
                Ok(event) => Ok(event),
                Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
                Err(TryRecvError::Empty) => break,
            };
            self.handle(event).await?;
        }
        if self.last_message != quiet_since {
            // Changes went out instead; the next heartbeat follows the next silence.
            return Ok(());
        }
        if position.epoch != self.epoch {
            self.epoch = position.epoch;
            return self.send_resync(position.revision).await;
        }
        // Never below what the client already has (it may be ahead of this key set).
        self.last_sent = self.last_sent.max(position.revision);
        self.send(KeyChanges {
            revision: self.last_sent,
            ..KeyChanges::default()
        })
        .await
    }

    /// Sends the batches newer than the last revision sent, in order.
    async fn send_batches(&mut self, batches: &[Arc<Changes>]) -> Result<(), End> {
        for batch in batches {
            if batch.revision <= self.last_sent {
                continue;
            }
            for message in messages(batch, self.settings.chunk) {
                self.send(message).await?;
            }
            self.last_sent = batch.revision;
        }
        Ok(())
    }

    async fn send_resync(&mut self, revision: u64) -> Result<(), End> {
        self.send(KeyChanges {
            revision,
            resync_required: true,
            ..KeyChanges::default()
        })
        .await?;
        self.last_sent = revision;
        Ok(())
    }

    /// Sends `message` with its provenance: the stream's epoch and the confirmation's
    /// age as of now.
    async fn send(&mut self, mut message: KeyChanges) -> Result<(), End> {
        message.provenance = Some(Provenance {
            epoch: self.epoch,
            confirmed_age_ms: self.confirmation.age_ms(),
        });
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => return Err(End::Stopped),
            sent = self.outbox.send(Ok(message)) => sent.map_err(|_| End::ClientGone)?,
        }
        self.last_message = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use keysync_contract::key_hash::KeyHash;

    use super::*;
    use crate::key_set::key_entry::KeyEntry;
    use crate::key_set::position::Position;
    use crate::metrics::Metrics;
    use crate::sync::catch_up::DEFAULT_MIN_SPACING;
    use crate::sync::confirmation::{testing, Bounds};
    use tokio_stream::StreamExt;

    const HEARTBEAT: Duration = Duration::from_secs(5);

    /// A batch upserting keys `first..first + upserts` and removing `removals` others.
    fn batch(revision: u64, upserts: u8, removals: u8) -> Changes {
        Changes {
            revision,
            upserts: (0..upserts).map(|i| KeyEntry::numbered(i + 1)).collect(),
            removals: (0..removals).map(|i| KeyHash([200 + i; 32])).collect(),
        }
    }

    struct Fixture {
        feed: Arc<ChangeFeed>,
        watches: Watches,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
        catch_ups: Arc<AtomicUsize>,
        confirmation: Confirmation,
    }

    /// Confirmed now; not serving after a day of (paused) time without another.
    fn confirmation(metrics: &Metrics) -> Confirmation {
        testing::confirmed(
            Bounds {
                unready_after: Duration::from_secs(86_400),
                max_staleness: Duration::from_secs(86_400),
                ..testing::BOUNDS
            },
            metrics,
        )
    }

    /// A feed started at revision 10, holding `max_records`, broadcasting `capacity`.
    fn fixture(max_records: usize, capacity: usize, chunk: usize) -> Fixture {
        let feed = Arc::new(ChangeFeed::with_capacity(max_records, capacity));
        feed.start(10);
        let catch_ups = Arc::new(AtomicUsize::new(0));
        let catch_up = CatchUp::spawn(DEFAULT_MIN_SPACING, {
            let catch_ups = catch_ups.clone();
            move || {
                catch_ups.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            }
        });
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let confirmation = confirmation(&metrics);
        let watches = Watches::new(
            feed.clone(),
            catch_up,
            metrics.grpc.clone(),
            confirmation.clone(),
            WatchSettings {
                chunk,
                heartbeat: HEARTBEAT,
                max_streams: 4,
            },
            stop.clone(),
        );
        Fixture {
            feed,
            watches,
            metrics,
            stop,
            catch_ups,
            confirmation,
        }
    }

    /// The next message, which must come within a minute of (paused) time.
    async fn next(stream: &mut WatchStream) -> KeyChanges {
        tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("a message within a minute")
            .expect("the stream is open")
            .expect("not an error")
    }

    /// (revision, upsert first bytes, removal first bytes, resync, partial)
    fn summary(message: &KeyChanges) -> (u64, Vec<u8>, Vec<u8>, bool, bool) {
        (
            message.revision,
            message.upserts.iter().map(|r| r.key_hash[0]).collect(),
            message.removals.iter().map(|h| h[0]).collect(),
            message.resync_required,
            message.partial,
        )
    }

    fn changes_at(revision: u64) -> Changes {
        Changes {
            revision,
            upserts: vec![KeyEntry::numbered(revision as u8)],
            removals: vec![],
        }
    }

    #[test]
    fn plan_replays_covered_revisions_and_refuses_the_rest() {
        let mut log = Changelog::new(3);
        log.start(10);
        log.record(changes_at(12));
        log.record(changes_at(14));
        log.record(changes_at(16));
        log.record(Changes {
            revision: 17,
            ..Changes::default()
        });
        fn replayed(log: &Changelog, after: u64) -> Vec<u64> {
            match plan(log, after, 0) {
                Start::Replay(batches) => batches.iter().map(|b| b.revision).collect(),
                other => panic!("after {after}: {other:?}"),
            }
        }
        assert_eq!(replayed(&log, 10), vec![12, 14, 16]);
        assert_eq!(replayed(&log, 13), vec![14, 16]);
        assert_eq!(replayed(&log, 16), Vec::<u64>::new());
        assert_eq!(replayed(&log, 17), Vec::<u64>::new());
        assert_eq!(plan(&log, 9, 0), Start::Resync(17));
        assert_eq!(plan(&log, 0, 0), Start::Resync(17));
        assert_eq!(plan(&log, 18, 0), Start::Ahead);
        // Another epoch: whatever the revision, reload.
        assert_eq!(plan(&log, 16, 99), Start::Resync(17));
        assert_eq!(plan(&log, 18, 99), Start::Resync(17));

        // Truncation moves the base: revision 10 and 11 are no longer covered.
        log.record(changes_at(18));
        assert_eq!(log.base(), 12);
        assert_eq!(plan(&log, 11, 0), Start::Resync(18));
        assert_eq!(replayed(&log, 12), vec![14, 16, 18]);
    }

    #[test]
    fn large_batches_are_split_with_partial_marks() {
        let changes = batch(9, 7, 5);
        let parts: Vec<_> = messages(&changes, 5).map(|m| summary(&m)).collect();
        assert_eq!(
            parts,
            vec![
                (9, vec![1, 2, 3, 4, 5], vec![], false, true),
                (9, vec![6, 7], vec![200, 201, 202], false, true),
                (9, vec![], vec![203, 204], false, false),
            ]
        );
        let whole: Vec<_> = messages(&changes, 12).map(|m| summary(&m)).collect();
        assert_eq!(whole.len(), 1);
        assert!(!whole[0].4);
        assert_eq!(messages(&batch(3, 2, 0), 1).count(), 2);
        let record = messages(&batch(3, 1, 0), 10).next().unwrap().upserts[0].clone();
        assert_eq!(record, to_record(&KeyEntry::numbered(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn covered_client_gets_what_it_missed_then_live_changes() {
        let fixture = fixture(100, 16, 100);
        fixture.feed.record(batch(11, 1, 0));
        fixture.feed.record(batch(12, 0, 1));
        let mut stream = fixture.watches.open(11, 0).unwrap();
        assert_eq!(
            summary(&next(&mut stream).await),
            (12, vec![], vec![200], false, false)
        );
        fixture.feed.record(batch(13, 2, 0));
        assert_eq!(summary(&next(&mut stream).await).0, 13);
        assert!(fixture.metrics.encode().contains("keysync_watch_streams 1"));
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_recorded_while_opening_are_sent_once() {
        let fixture = fixture(100, 16, 100);
        fixture.feed.record(batch(11, 1, 0));
        let mut stream = fixture.watches.open(10, 0).unwrap();
        // In the log at subscription (11) and broadcast after it (12): no duplicates.
        fixture.feed.record(batch(12, 1, 0));
        assert_eq!(summary(&next(&mut stream).await).0, 11);
        assert_eq!(summary(&next(&mut stream).await).0, 12);
        fixture.feed.record(batch(13, 1, 0));
        assert_eq!(summary(&next(&mut stream).await).0, 13);
    }

    #[tokio::test(start_paused = true)]
    async fn too_old_client_must_resync_then_follows_live() {
        let fixture = fixture(100, 16, 100);
        fixture.feed.record(batch(11, 1, 0));
        for after in [0, 9] {
            let store_revision = fixture.feed.revision();
            let mut stream = fixture.watches.open(after, 0).unwrap();
            let first = summary(&next(&mut stream).await);
            assert_eq!(first, (store_revision, vec![], vec![], true, false));
            fixture.feed.record(batch(store_revision + 1, 1, 0));
            let live = next(&mut stream).await;
            assert_eq!(
                (live.revision, live.resync_required),
                (store_revision + 1, false)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn client_ahead_asks_for_a_catch_up_and_never_moves_back() {
        let fixture = fixture(100, 16, 100);
        let mut stream = fixture.watches.open(20, 0).unwrap();
        fixture.feed.record(batch(15, 1, 0));
        fixture.feed.record(batch(21, 2, 0));
        assert_eq!(summary(&next(&mut stream).await).0, 21);
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 1);

        // Still ahead after a catch-up: what the client holds cannot be right, so it
        // is told to resync at once rather than left waiting for the database.
        let asked = Instant::now();
        let mut ahead = fixture.watches.open(30, 0).unwrap();
        let resync = next(&mut ahead).await;
        assert_eq!(summary(&resync), (21, vec![], vec![], true, false));
        assert!(Instant::now() - asked < AHEAD_WAIT);
        assert_eq!(fixture.catch_ups.load(Ordering::SeqCst), 2);
        // ... and follows live changes after it.
        fixture.feed.record(batch(22, 1, 0));
        assert_eq!(summary(&next(&mut ahead).await).0, 22);
    }

    #[tokio::test(start_paused = true)]
    async fn every_message_carries_the_epoch_and_the_confirmation_age() {
        let fixture = fixture(100, 16, 100);
        let position = Position {
            epoch: 77,
            revision: 10,
        };
        fixture.feed.restart(position);
        let mut stream = fixture.watches.open(10, 77).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        fixture.feed.record(batch(11, 1, 0));
        let change = next(&mut stream).await;
        let provenance = change.provenance.unwrap();
        assert_eq!(provenance.epoch, 77);
        assert_eq!(provenance.confirmed_age_ms, 1000);
        // Heartbeats too, with the age growing while nothing confirms.
        let beat = next(&mut stream).await;
        assert_eq!(
            beat.provenance.unwrap(),
            Provenance {
                epoch: 77,
                confirmed_age_ms: 6000,
            }
        );
        fixture.confirmation.confirm(Instant::now());
        let beat = next(&mut stream).await;
        assert_eq!(
            beat.provenance.unwrap().confirmed_age_ms,
            5000,
            "one heartbeat later"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_of_another_epoch_must_resync() {
        let fixture = fixture(100, 16, 100);
        fixture.feed.restart(Position {
            epoch: 77,
            revision: 10,
        });
        fixture.feed.record(batch(11, 1, 0));
        // Covered by the changelog, but counted in another history.
        let mut stream = fixture.watches.open(10, 55).unwrap();
        let first = next(&mut stream).await;
        assert_eq!(summary(&first), (11, vec![], vec![], true, false));
        assert_eq!(first.provenance.unwrap().epoch, 77);
        // An unknown epoch (0) is taken on trust.
        let mut unknown = fixture.watches.open(10, 0).unwrap();
        assert_eq!(summary(&next(&mut unknown).await).0, 11);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_history_tells_every_stream_to_resync_with_the_new_epoch() {
        let fixture = fixture(100, 16, 100);
        fixture.feed.restart(Position {
            epoch: 77,
            revision: 10,
        });
        fixture.feed.record(batch(11, 1, 0));
        let mut stream = fixture.watches.open(11, 77).unwrap();
        // A restored dump: the revision went back to 5, in a new history.
        fixture.feed.restart(Position {
            epoch: 99,
            revision: 5,
        });
        let resync = next(&mut stream).await;
        assert_eq!(summary(&resync), (5, vec![], vec![], true, false));
        assert_eq!(resync.provenance.unwrap().epoch, 99);
        // Changes of the new history follow, though their revisions are below 11.
        fixture.feed.record(batch(6, 1, 0));
        let change = next(&mut stream).await;
        assert_eq!((change.revision, change.provenance.unwrap().epoch), (6, 99));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_watcher_that_missed_a_new_history_must_resync() {
        let fixture = fixture(100, 2, 100);
        fixture.feed.restart(Position {
            epoch: 77,
            revision: 10,
        });
        let mut stream = fixture.watches.open(10, 77).unwrap();
        // Before the watcher runs: more events than it buffers, the reset among them.
        fixture.feed.record(batch(11, 1, 0));
        fixture.feed.restart(Position {
            epoch: 99,
            revision: 20,
        });
        for revision in 21..=24 {
            fixture.feed.record(batch(revision, 1, 0));
        }
        let first = next(&mut stream).await;
        assert_eq!((first.revision, first.resync_required), (24, true));
        assert_eq!(first.provenance.unwrap().epoch, 99);
    }

    #[tokio::test(start_paused = true)]
    async fn streams_close_when_the_key_set_goes_unconfirmed_and_reopen_after() {
        let feed = Arc::new(ChangeFeed::new(100));
        feed.start(10);
        let metrics = Arc::new(Metrics::new());
        let confirmation = testing::unconfirmed(testing::BOUNDS, &metrics);
        let catch_up = CatchUp::spawn(DEFAULT_MIN_SPACING, || async { Ok::<(), String>(()) });
        let watches = Watches::new(
            feed,
            catch_up,
            metrics.grpc.clone(),
            confirmation.clone(),
            WatchSettings {
                chunk: 10,
                heartbeat: HEARTBEAT,
                max_streams: 4,
            },
            CancellationToken::new(),
        );
        assert_eq!(
            watches.open(10, 0).unwrap_err().code(),
            tonic::Code::Unavailable
        );
        confirmation.confirm(Instant::now());
        let mut stream = watches.open(10, 0).unwrap();
        let mut ages = Vec::new();
        let error = loop {
            // The monitor's job in `serve`.
            confirmation.evaluate();
            match tokio::time::timeout(Duration::from_millis(500), stream.next()).await {
                Err(_) => continue,
                Ok(Some(Ok(beat))) => ages.push(beat.provenance.unwrap().confirmed_age_ms),
                Ok(Some(Err(status))) => break status,
                Ok(None) => panic!("ended without a status"),
            }
        };
        assert_eq!(ages, vec![5000, 10_000, 15_000, 20_000, 25_000, 30_000]);
        assert_eq!(error.code(), tonic::Code::Unavailable);
        assert!(
            error.message().contains("not confirmed against PostgreSQL"),
            "{}",
            error.message()
        );
        assert!(stream.next().await.is_none());
        let refused = watches.open(10, 0).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
        confirmation.confirm(Instant::now());
        assert!(watches.open(10, 0).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn streams_beyond_the_bound_are_refused() {
        let fixture = fixture(100, 16, 100);
        let open: Vec<_> = (0..4)
            .map(|_| fixture.watches.open(10, 0).unwrap())
            .collect();
        let refused = fixture.watches.open(10, 0).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(fixture
            .metrics
            .encode()
            .contains("keysync_grpc_refused_total{reason=\"watch_streams\"} 1"));
        drop(open);
        let deadline = Instant::now() + Duration::from_secs(1);
        while fixture.watches.open(10, 0).is_err() {
            assert!(
                Instant::now() < deadline,
                "the permits of closed streams came back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_streams_get_heartbeats_at_the_store_revision() {
        let fixture = fixture(100, 16, 100);
        let mut stream = fixture.watches.open(10, 0).unwrap();
        let opened = Instant::now();
        let beat = next(&mut stream).await;
        assert_eq!(summary(&beat), (10, vec![], vec![], false, false));
        assert_eq!(Instant::now() - opened, HEARTBEAT);

        // A catch-up that found nothing moves the revision on; heartbeats say so.
        fixture.feed.record(Changes {
            revision: 12,
            ..Changes::default()
        });
        assert_eq!(next(&mut stream).await.revision, 12);

        // A change resets the silence.
        tokio::time::sleep(Duration::from_secs(3)).await;
        fixture.feed.record(batch(13, 1, 0));
        assert_eq!(next(&mut stream).await.upserts.len(), 1);
        let sent = Instant::now();
        let beat = next(&mut stream).await;
        assert_eq!((beat.revision, beat.upserts.len()), (13, 0));
        assert_eq!(Instant::now() - sent, HEARTBEAT);
    }

    #[tokio::test(start_paused = true)]
    async fn large_batch_arrives_in_chunks_with_one_revision() {
        let fixture = fixture(100, 16, 4);
        let mut stream = fixture.watches.open(10, 0).unwrap();
        fixture.feed.record(batch(11, 6, 3));
        let parts = [
            next(&mut stream).await,
            next(&mut stream).await,
            next(&mut stream).await,
        ];
        let marks: Vec<_> = parts.iter().map(|m| (m.revision, m.partial)).collect();
        assert_eq!(marks, vec![(11, true), (11, true), (11, false)]);
        let records: usize = parts
            .iter()
            .map(|m| m.upserts.len() + m.removals.len())
            .sum();
        assert_eq!(records, 9);
    }

    #[tokio::test(start_paused = true)]
    async fn lagging_watcher_replays_from_the_log() {
        // Two events buffered: the watcher (not run yet) misses the first four.
        let fixture = fixture(100, 2, 100);
        let mut stream = fixture.watches.open(10, 0).unwrap();
        for revision in 11..=16 {
            fixture.feed.record(batch(revision, 1, 0));
        }
        let mut revisions = Vec::new();
        for _ in 11..=16 {
            let message = next(&mut stream).await;
            assert!(!message.resync_required);
            revisions.push(message.revision);
        }
        assert_eq!(revisions, (11..=16).collect::<Vec<_>>());
        fixture.feed.record(batch(17, 1, 0));
        assert_eq!(
            next(&mut stream).await.revision,
            17,
            "no duplicates before it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lagging_watcher_beyond_the_log_must_resync() {
        // The log holds two records: by the time the watcher runs, 11..14 are gone.
        let fixture = fixture(2, 2, 100);
        let mut stream = fixture.watches.open(10, 0).unwrap();
        for revision in 11..=16 {
            fixture.feed.record(batch(revision, 1, 0));
        }
        let first = next(&mut stream).await;
        assert_eq!((first.revision, first.resync_required), (16, true));
        fixture.feed.record(batch(17, 1, 0));
        let live = next(&mut stream).await;
        assert_eq!((live.revision, live.resync_required), (17, false));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_tells_watchers_to_reload() {
        let fixture = fixture(100, 16, 100);
        fixture.feed.record(batch(11, 1, 0));
        let mut stream = fixture.watches.open(11, 0).unwrap();
        fixture.feed.record(batch(11, 2, 0));
        let reset = next(&mut stream).await;
        assert_eq!((reset.revision, reset.resync_required), (11, true));
    }

    #[tokio::test(start_paused = true)]
    async fn streams_end_when_the_client_goes_or_at_shutdown() {
        let fixture = fixture(100, 16, 100);
        let gone = fixture.watches.open(10, 0).unwrap();
        let mut staying = fixture.watches.open(10, 0).unwrap();
        assert!(fixture.metrics.encode().contains("keysync_watch_streams 2"));
        drop(gone);
        let deadline = Instant::now() + Duration::from_secs(1);
        while !fixture.metrics.encode().contains("keysync_watch_streams 1") {
            assert!(
                Instant::now() < deadline,
                "the stream of a gone client stays open"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        fixture.stop.cancel();
        let end = tokio::time::timeout(Duration::from_secs(1), staying.next()).await;
        assert!(matches!(end, Ok(None)), "{end:?}");
        assert!(fixture.metrics.encode().contains("keysync_watch_streams 0"));
    }
}
