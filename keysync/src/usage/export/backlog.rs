//! The export's bounded backlog: events wait here, in order, until the producer has
//! published them. Adding never waits (the gRPC handler calls it): what does not fit is
//! refused and counted by the caller. A batch being sent still counts against the bound
//! until it is published, so a broker that is down for long holds at most `capacity`
//! events in memory, the failing batch included.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::usage::cloud_event::CloudEvent;

#[derive(Debug)]
pub struct Backlog {
    capacity: usize,
    state: Mutex<State>,
    /// Wakes the producer when events arrive (a permit is kept if it is not waiting).
    arrived: Notify,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<CloudEvent>,
    /// Events taken for a batch and not yet published.
    in_flight: usize,
}

impl State {
    fn held(&self) -> usize {
        self.queue.len() + self.in_flight
    }
}

/// What [`Backlog::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub accepted: usize,
    pub dropped: usize,
    /// Events held after the push (waiting and in flight).
    pub held: usize,
}

impl Backlog {
    pub fn new(capacity: usize) -> Backlog {
        Backlog {
            capacity,
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `events` while they fit; the rest are dropped. Never waits.
    pub fn push(&self, events: impl IntoIterator<Item = CloudEvent>) -> Pushed {
        let mut accepted = 0;
        let mut dropped = 0;
        let held = {
            let mut state = self.state();
            for event in events {
                if state.held() < self.capacity {
                    state.queue.push_back(event);
                    accepted += 1;
                } else {
                    dropped += 1;
                }
            }
            state.held()
        };
        if accepted > 0 {
            self.arrived.notify_one();
        }
        Pushed {
            accepted,
            dropped,
            held,
        }
    }

    /// Up to `max` of the oldest events, taken for a batch (they still count against
    /// the capacity until [`Backlog::published`]); empty when there are none.
    pub fn try_take(&self, max: usize) -> Vec<CloudEvent> {
        let mut state = self.state();
        let count = max.min(state.queue.len());
        let batch: Vec<CloudEvent> = state.queue.drain(..count).collect();
        state.in_flight += batch.len();
        batch
    }

    /// Waits for events and takes up to `max` of them.
    pub async fn take(&self, max: usize) -> Vec<CloudEvent> {
        loop {
            let batch = self.try_take(max);
            if !batch.is_empty() {
                return batch;
            }
            self.arrived.notified().await;
        }
    }

    /// A taken batch of `count` events was published: their room is free again.
    /// Returns the events held after it.
    pub fn published(&self, count: usize) -> usize {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(count);
        state.held()
    }

    /// Events held: waiting and in flight.
    pub fn held(&self) -> usize {
        self.state().held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> CloudEvent {
        CloudEvent {
            specversion: "1.0",
            id: n.to_string(),
            source: "test".into(),
            event_type: "test".into(),
            subject: "s".into(),
            time: "t".into(),
            datacontenttype: "application/json",
            data: serde_json::Value::Null,
            partition_key: "k".into(),
        }
    }

    fn ids(events: &[CloudEvent]) -> Vec<&str> {
        events.iter().map(|event| event.id.as_str()).collect()
    }

    #[test]
    fn what_does_not_fit_is_dropped_and_a_batch_in_flight_still_counts() {
        let backlog = Backlog::new(3);
        assert_eq!(
            backlog.push((0..5).map(event)),
            Pushed {
                accepted: 3,
                dropped: 2,
                held: 3
            }
        );
        let batch = backlog.try_take(2);
        assert_eq!(ids(&batch), ["0", "1"]);
        // Taken but not published: still no room.
        assert_eq!(backlog.push([event(5)]).dropped, 1);
        assert_eq!(backlog.held(), 3);
        assert_eq!(backlog.published(batch.len()), 1);
        assert_eq!(backlog.push((6..9).map(event)).accepted, 2);
        assert_eq!(ids(&backlog.try_take(10)), ["2", "6", "7"]);
        assert!(backlog.try_take(10).is_empty());
    }

    #[tokio::test]
    async fn take_waits_for_events() {
        let backlog = std::sync::Arc::new(Backlog::new(10));
        let waiting = tokio::spawn({
            let backlog = backlog.clone();
            async move { backlog.take(5).await }
        });
        tokio::task::yield_now().await;
        backlog.push([event(1)]);
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids(&batch), ["1"]);
    }
}
