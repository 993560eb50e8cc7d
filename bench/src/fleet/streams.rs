//! The fleet's `WatchKeys` streams, all read by one task: the gateways' streams merged
//! with `select_all` (only a stream with something to read is polled), each message
//! stamped with the wall clock as it is read, and the removals the benchmark waits for
//! (its revocations) noted per stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use futures_util::stream::{self, StreamExt};
use keysync_proto::v1::KeyChanges;
use tonic::Streaming;

/// What the reader saw; shared with the benchmark.
pub struct Watching {
    gateways: usize,
    expected: Mutex<Expected>,
    pub counts: Counts,
}

/// Counters of the reader, all streams together.
#[derive(Default)]
pub struct Counts {
    pub messages: AtomicU64,
    pub heartbeats: AtomicU64,
    /// Streams that ended (keysync closed them): none should.
    pub ended: AtomicU64,
    /// Streams that failed with a gRPC status before ending.
    pub failed: AtomicU64,
    /// Messages asking the gateway to reload everything.
    pub resyncs: AtomicU64,
}

/// The removals waited for.
#[derive(Default)]
struct Expected {
    /// A key hash to the index of its revocation.
    hashes: HashMap<Vec<u8>, usize>,
    /// For each revocation, when each stream received it.
    arrivals: Vec<Vec<Option<SystemTime>>>,
}

impl Watching {
    /// Starts waiting for the removal of `key_hash` on every stream (call it before the
    /// revocation is made); returns the revocation's index.
    pub fn expect(&self, key_hash: Vec<u8>) -> usize {
        let mut expected = self.lock();
        let index = expected.arrivals.len();
        expected.arrivals.push(vec![None; self.gateways]);
        expected.hashes.insert(key_hash, index);
        index
    }

    /// When each stream received revocation `index`.
    pub fn arrivals(&self, index: usize) -> Vec<Option<SystemTime>> {
        self.lock().arrivals.get(index).cloned().unwrap_or_default()
    }

    /// Whether every stream has received every expected removal.
    pub fn all_arrived(&self) -> bool {
        self.lock()
            .arrivals
            .iter()
            .all(|streams| streams.iter().all(Option::is_some))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Expected> {
        self.expected.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn received(&self, gateway: usize, message: &KeyChanges, at: SystemTime) {
        self.counts.messages.fetch_add(1, Ordering::Relaxed);
        if message.resync_required {
            self.counts.resyncs.fetch_add(1, Ordering::Relaxed);
        }
        if message.upserts.is_empty() && message.removals.is_empty() {
            self.counts.heartbeats.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut expected = self.lock();
        let Expected { hashes, arrivals } = &mut *expected;
        for removal in &message.removals {
            if let Some(slot) = hashes
                .get(removal)
                .and_then(|&index| arrivals.get_mut(index))
                .and_then(|streams| streams.get_mut(gateway))
            {
                slot.get_or_insert(at);
            }
        }
    }
}

/// What one merged item says about stream `gateway`.
enum Event {
    Message(Result<KeyChanges, tonic::Status>),
    Ended,
}

/// Reads `streams` (stream `i` is gateway `i`'s) until they all end; returns what it
/// sees as it goes.
pub fn spawn_reader(streams: Vec<Streaming<KeyChanges>>) -> Arc<Watching> {
    let watching = Arc::new(Watching {
        gateways: streams.len(),
        expected: Mutex::default(),
        counts: Counts::default(),
    });
    let seen = watching.clone();
    let merged = stream::select_all(streams.into_iter().enumerate().map(|(gateway, s)| {
        s.map(Event::Message)
            .chain(stream::once(async { Event::Ended }))
            .map(move |event| (gateway, event))
            .boxed()
    }));
    tokio::spawn(async move {
        let mut merged = merged;
        while let Some((gateway, event)) = merged.next().await {
            let at = SystemTime::now();
            match event {
                Event::Message(Ok(message)) => seen.received(gateway, &message, at),
                Event::Message(Err(_)) => {
                    seen.counts.failed.fetch_add(1, Ordering::Relaxed);
                }
                Event::Ended => {
                    seen.counts.ended.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    watching
}
