//! What one worker keeps for one configuration of the auth filter: the core's `AuthWorker`
//! (its caches, leases, parked requests, batched stats and usage tally), made on the worker
//! the first time the configuration serves a request there, and when it ticks.
//!
//! The wasm filter ticks every worker on a timer (`WORKER_TICK`, 250 ms). A dynamic module
//! has no worker timer, so the tick rides on the worker's own work, at no cost to a request
//! beyond a clock read:
//! - at the start of a request, when a tick is due and no request is parked (a parked request
//!   is decided from a scheduled event, never from inside another request's headers);
//! - on a parked request's wake-up (`wakeups`), when a tick is due;
//! - when the worker's last request ends and something happened since the last tick: an idle
//!   worker has no later request to ride on, and its batched stats, usage tally and unused
//!   rate-limit leases must not wait for one.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use keysync_filter_core::{AuthConfig, AuthWorker, WORKER_TICK};

use crate::native_host::NativeHost;

/// A wake-up ticks if the last tick is this old: the main thread's timer and the workers'
/// own ticks are not in step.
const WAKE_TICK: Duration = Duration::from_millis(200);

pub struct WorkerSlot {
    pub worker: Rc<AuthWorker<NativeHost>>,
    last_tick: Cell<Instant>,
    /// Requests of this configuration alive on this worker.
    live: Cell<u32>,
    /// A request came since the last tick.
    owed: Cell<bool>,
}

/// The configuration a slot belongs to: dropped with it (its worker slots then go).
pub type ConfigLife = Arc<()>;

thread_local! {
    static SLOTS: RefCell<Vec<(Weak<()>, Rc<WorkerSlot>)>> = const { RefCell::new(Vec::new()) };
}

impl WorkerSlot {
    /// This worker's slot for the configuration `life` (made with `config` if new).
    pub fn of(life: &ConfigLife, config: &AuthConfig) -> Rc<WorkerSlot> {
        SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            if let Some((_, slot)) = slots
                .iter()
                .find(|(owner, _)| owner.upgrade().is_some_and(|o| Arc::ptr_eq(&o, life)))
            {
                return Rc::clone(slot);
            }
            // Configurations Envoy has replaced: their workers go.
            slots.retain(|(owner, _)| owner.strong_count() > 0);
            let slot = Rc::new(WorkerSlot {
                worker: Rc::new(AuthWorker::new(NativeHost, config.clone())),
                last_tick: Cell::new(Instant::now()),
                live: Cell::new(0),
                owed: Cell::new(false),
            });
            slots.push((Arc::downgrade(life), Rc::clone(&slot)));
            slot
        })
    }

    /// A request began.
    pub fn request_started(&self) {
        self.live.set(self.live.get().saturating_add(1));
        self.owed.set(true);
        if !self.worker.has_parked() && self.last_tick.get().elapsed() >= WORKER_TICK {
            self.tick();
        }
    }

    /// A parked request's wake-up.
    pub fn woken(&self) {
        if self.last_tick.get().elapsed() >= WAKE_TICK {
            self.tick();
        }
    }

    /// A request ended (its filter is being dropped).
    pub fn request_ended(&self) {
        self.live.set(self.live.get().saturating_sub(1));
        if self.live.get() == 0 && self.owed.get() {
            self.tick();
        }
    }

    fn tick(&self) {
        self.last_tick.set(Instant::now());
        self.owed.set(false);
        self.worker.on_tick();
    }
}
