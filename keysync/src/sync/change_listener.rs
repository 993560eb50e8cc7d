//! Push from PostgreSQL: LISTEN on `keysync_changes`, where every transaction that
//! takes a new revision notifies at commit (migration 0002), and ask for a catch-up on
//! each notification, so a change reaches the key set within milliseconds.
//!
//! Notifications sent while nobody listens are lost, so every (re)connection is
//! followed by a catch-up: catch-ups read by revision, so that one recovers whatever
//! was committed in between. From its success until the connection is lost, the key set
//! is kept current by notifications ([`Freshness`]), which lets lookups of unknown keys
//! be answered without a query ([`crate::sync::miss`]). A lost connection is logged and
//! retried with backoff (about 1 s doubling to 30 s, jittered). The periodic poll stays
//! as the fallback. Every keysync process listens for itself; nothing is exclusive.
//!
//! A listening connection only ever waits, so a peer that went silent (a blackholed
//! network, a frozen server) would look connected for good: every `ping_interval` the
//! listener sends a query on it and drops the connection when no answer comes within
//! `timeout`, like any other lost connection. Connecting is bounded the same way. Each
//! connection comes from a pool of its own, so one stuck in closing never blocks the
//! next.
//!
//! [`Connector`] is a trait so the reconnect logic can be tested without a database.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::database;
use crate::sync::catch_up::{CatchUp, CatchUpError};
use crate::sync::database_backoff;
use crate::sync::freshness::Freshness;
use crate::sync::metrics::SyncMetrics;

/// The channel migration 0002 notifies on; the payload is the new revision.
pub const CHANNEL: &str = "keysync_changes";

/// Why listening stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("{}", database::describe_sqlx(.0))]
    Database(#[from] sqlx::Error),
    #[error("connection lost")]
    ConnectionLost,
    #[error("no answer from PostgreSQL within {0:?}")]
    Timeout(Duration),
}

/// How the listener checks on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSettings {
    /// How often a quiet connection is pinged.
    pub ping_interval: Duration,
    /// How long connecting, or a ping, may take.
    pub timeout: Duration,
}

/// Opens listening connections.
pub trait Connector: Send + Sync + 'static {
    type Listener: Listener;

    /// Connects and starts listening on [`CHANNEL`].
    fn connect(&self) -> impl Future<Output = Result<Self::Listener, ListenError>> + Send;
}

/// One listening connection.
pub trait Listener: Send {
    /// The next notification's payload; an error once the connection is gone. Dropping
    /// the future loses nothing (a notification read meanwhile stays buffered).
    fn recv(&mut self) -> impl Future<Output = Result<String, ListenError>> + Send;

    /// A round trip on the connection: an error once it is gone.
    fn ping(&mut self) -> impl Future<Output = Result<(), ListenError>> + Send;
}

/// Listens on PostgreSQL through a pool of its own (one connection) for each connection,
/// so the listening connection never goes back to the pool the loads use, and a dead one
/// (whose goodbye may hang until TCP gives up) never holds up the next.
#[derive(Debug, Clone)]
pub struct PgConnector {
    pool: PgPool,
}

impl PgConnector {
    /// A connector to the database `pool` connects to.
    pub fn new(pool: &PgPool) -> Self {
        PgConnector { pool: pool.clone() }
    }
}

impl Connector for PgConnector {
    type Listener = PgListener;

    async fn connect(&self) -> Result<PgListener, ListenError> {
        let pool = database::dedicated_pool(&self.pool);
        let mut listener = PgListener::connect_with(&pool).await?;
        // Report a lost connection instead of quietly reconnecting: we must catch up
        // after every reconnection.
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }
}

impl Listener for PgListener {
    async fn recv(&mut self) -> Result<String, ListenError> {
        match self.try_recv().await? {
            Some(notification) => Ok(notification.payload().to_owned()),
            None => Err(ListenError::ConnectionLost),
        }
    }

    async fn ping(&mut self) -> Result<(), ListenError> {
        sqlx::query("SELECT 1").execute(&mut *self).await?;
        Ok(())
    }
}

/// Listens until `stop`: each notification of a revision newer than `store_revision()`
/// triggers a catch-up (coalesced by the catch-up worker); each connection is followed
/// by one. `freshness` hears that the listener is caught up once that catch-up
/// succeeded, and that it is not as soon as the connection is lost.
pub async fn run<C: Connector>(
    connector: C,
    catch_up: CatchUp,
    store_revision: impl Fn() -> u64 + Send,
    freshness: Freshness,
    metrics: Arc<SyncMetrics>,
    settings: ListenSettings,
    stop: CancellationToken,
) {
    let mut backoff = database_backoff();
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            connected = tokio::time::timeout(settings.timeout, connector.connect()) => {
                connected.unwrap_or(Err(ListenError::Timeout(settings.timeout)))
            }
        };
        let lost = match connected {
            Ok(mut listener) => {
                info!("change listener connected");
                // Whatever was committed while nobody listened.
                let caught_up = tokio::select! {
                    _ = stop.cancelled() => return,
                    caught_up = catch_up.request() => caught_up,
                };
                match caught_up {
                    Ok(()) => {
                        backoff.reset();
                        // Every commit from now on is notified on this connection.
                        freshness.set_listening(true);
                        let lost = tokio::select! {
                            _ = stop.cancelled() => {
                                freshness.set_listening(false);
                                return;
                            }
                            lost = follow(
                                &mut listener,
                                &catch_up,
                                &store_revision,
                                &metrics,
                                settings,
                            ) => lost,
                        };
                        freshness.set_listening(false);
                        error!("database error: change listener: {lost}");
                    }
                    Err(CatchUpError::Stopped) => return,
                    // Logged by the catch-up worker; reconnect and try again, so what
                    // was missed is not left to the poll.
                    Err(CatchUpError::Failed(_)) => {}
                }
                true
            }
            Err(cause) => {
                error!("database error: change listener: {cause}");
                false
            }
        };
        let delay = backoff.failed();
        if lost {
            info!("change listener reconnecting in {delay:?}");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Receives notifications until the connection fails or a ping goes unanswered; returns
/// why.
async fn follow<L: Listener>(
    listener: &mut L,
    catch_up: &CatchUp,
    store_revision: &impl Fn() -> u64,
    metrics: &SyncMetrics,
    settings: ListenSettings,
) -> ListenError {
    let mut next_ping = tokio::time::Instant::now() + settings.ping_interval;
    loop {
        let received = tokio::select! {
            received = listener.recv() => Some(received),
            _ = tokio::time::sleep_until(next_ping) => None,
        };
        let Some(received) = received else {
            match tokio::time::timeout(settings.timeout, listener.ping()).await {
                Ok(Ok(())) => {}
                Ok(Err(lost)) => return lost,
                Err(_) => return ListenError::Timeout(settings.timeout),
            }
            next_ping = tokio::time::Instant::now() + settings.ping_interval;
            continue;
        };
        match received {
            Ok(payload) => {
                metrics.record_notification();
                // Already in the key set (a lookup's catch-up got there first): skip.
                // An unreadable payload is not ours to judge: catch up anyway.
                let known = payload
                    .trim()
                    .parse::<u64>()
                    .is_ok_and(|revision| revision <= store_revision());
                if !known {
                    catch_up.trigger();
                }
            }
            Err(lost) => return lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::*;
    use crate::metrics::Metrics;
    use crate::sync::catch_up::DEFAULT_MIN_SPACING;

    type Feed = mpsc::UnboundedSender<String>;

    /// Connections handed out in order; without one queued, connecting fails. Dropping
    /// a connection's sender loses that connection; while `silent`, connections stop
    /// answering pings (and connecting never finishes), like a blackholed server.
    #[derive(Clone, Default)]
    struct FakeConnector {
        queued: Arc<Mutex<VecDeque<mpsc::UnboundedReceiver<String>>>>,
        attempts: Arc<Mutex<Vec<Instant>>>,
        silent: Arc<std::sync::atomic::AtomicBool>,
    }

    impl FakeConnector {
        fn queue(&self) -> Feed {
            let (sender, receiver) = mpsc::unbounded_channel();
            self.queued.lock().unwrap().push_back(receiver);
            sender
        }

        fn attempts(&self) -> Vec<Instant> {
            self.attempts.lock().unwrap().clone()
        }
    }

    struct FakeListener(
        mpsc::UnboundedReceiver<String>,
        Arc<std::sync::atomic::AtomicBool>,
    );

    impl Connector for FakeConnector {
        type Listener = FakeListener;

        async fn connect(&self) -> Result<FakeListener, ListenError> {
            self.attempts.lock().unwrap().push(Instant::now());
            if self.silent.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let next = self.queued.lock().unwrap().pop_front();
            next.map(|feed| FakeListener(feed, self.silent.clone()))
                .ok_or(ListenError::Database(sqlx::Error::PoolTimedOut))
        }
    }

    impl Listener for FakeListener {
        async fn recv(&mut self) -> Result<String, ListenError> {
            self.0.recv().await.ok_or(ListenError::ConnectionLost)
        }

        async fn ping(&mut self) -> Result<(), ListenError> {
            if self.1.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Ok(())
        }
    }

    const SETTINGS: ListenSettings = ListenSettings {
        ping_interval: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
    };

    struct Fixture {
        connector: FakeConnector,
        catch_ups: Arc<AtomicUsize>,
        revision: Arc<AtomicU64>,
        freshness: Freshness,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    }

    fn start() -> Fixture {
        let connector = FakeConnector::default();
        let catch_ups = Arc::new(AtomicUsize::new(0));
        let catch_up = CatchUp::spawn(DEFAULT_MIN_SPACING, {
            let catch_ups = catch_ups.clone();
            move || {
                catch_ups.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            }
        });
        let revision = Arc::new(AtomicU64::new(5));
        let metrics = Arc::new(Metrics::new());
        let freshness = Freshness::new(metrics.sync.clone());
        let stop = CancellationToken::new();
        tokio::spawn(run(
            connector.clone(),
            catch_up,
            {
                let revision = revision.clone();
                move || revision.load(Ordering::SeqCst)
            },
            freshness.clone(),
            metrics.sync.clone(),
            SETTINGS,
            stop.clone(),
        ));
        Fixture {
            connector,
            catch_ups,
            revision,
            freshness,
            metrics,
            stop,
        }
    }

    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !condition() {
            assert!(Instant::now() < deadline, "not within 120 s: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn notifications_of_new_revisions_trigger_catch_ups() {
        let fixture = start();
        let connection = fixture.connector.queue();
        let catch_ups = || fixture.catch_ups.load(Ordering::SeqCst);
        eventually("catch-up after connecting", || catch_ups() == 1).await;

        connection.send("6".to_owned()).unwrap();
        eventually("catch-up after a notification", || catch_ups() == 2).await;

        // Revisions the key set already has need no catch-up.
        fixture.revision.store(9, Ordering::SeqCst);
        connection.send("8".to_owned()).unwrap();
        connection.send("9".to_owned()).unwrap();
        connection.send("garbage".to_owned()).unwrap();
        eventually("catch-up for the unreadable one", || catch_ups() == 3).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(catch_ups(), 3);
        assert!(fixture
            .metrics
            .encode()
            .contains("keysync_notifications_total 4"));
        assert_eq!(fixture.connector.attempts().len(), 1);
        fixture.stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn lost_connections_are_retried_with_backoff_then_caught_up() {
        let fixture = start();
        let catch_ups = || fixture.catch_ups.load(Ordering::SeqCst);
        // Nothing queued: the first attempts fail, spaced about 1 s, 2 s, 4 s.
        eventually("four attempts", || fixture.connector.attempts().len() == 4).await;
        assert!(!fixture.freshness.is_current());
        let connection = fixture.connector.queue();
        eventually("connected and caught up", || catch_ups() == 1).await;
        eventually("current", || fixture.freshness.is_current()).await;
        let attempts = fixture.connector.attempts();
        assert_eq!(attempts.len(), 5);
        for (pair, nominal) in attempts.windows(2).zip([1, 2, 4, 8]) {
            assert_jittered(pair[1] - pair[0], nominal);
        }

        // Losing the connection: reconnect after about 1 s (reset by the good
        // connection), and catch up again for what was committed meanwhile.
        let lost_at = Instant::now();
        drop(connection);
        eventually("lost", || !fixture.freshness.is_current()).await;
        assert!(fixture
            .metrics
            .encode()
            .contains("keysync_change_listener_up 0\n"));
        let _again = fixture.connector.queue();
        eventually("reconnected and caught up", || catch_ups() == 2).await;
        eventually("current again", || fixture.freshness.is_current()).await;
        let attempts = fixture.connector.attempts();
        assert_eq!(attempts.len(), 6);
        assert_jittered(attempts[5] - lost_at, 1);
        fixture.stop.cancel();
    }

    /// A retry delay with the backoff's jitter: between half and all of `nominal`
    /// seconds.
    fn assert_jittered(delay: Duration, nominal: u64) {
        let nominal = Duration::from_secs(nominal);
        assert!(
            delay >= nominal / 2 && delay <= nominal,
            "{delay:?} is not within the jitter band of {nominal:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_stops_answering_is_dropped_and_replaced() {
        let fixture = start();
        let _connection = fixture.connector.queue();
        eventually("current", || fixture.freshness.is_current()).await;
        // Blackholed: the connection looks open, but pings go unanswered.
        fixture.connector.silent.store(true, Ordering::SeqCst);
        let silent_at = Instant::now();
        eventually("lost", || !fixture.freshness.is_current()).await;
        assert!(
            silent_at.elapsed() <= SETTINGS.ping_interval + SETTINGS.timeout,
            "noticed after {:?}",
            silent_at.elapsed()
        );
        // Connecting hangs too, and is given up on after the timeout, again and again.
        eventually("three more attempts", || {
            fixture.connector.attempts().len() >= 4
        })
        .await;
        let _again = fixture.connector.queue();
        fixture.connector.silent.store(false, Ordering::SeqCst);
        eventually("current again", || fixture.freshness.is_current()).await;
        fixture.stop.cancel();
    }
}
