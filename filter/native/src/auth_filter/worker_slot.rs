//! What one worker keeps for one configuration of the auth filter: the core's `AuthWorker`
//! (its caches, leases, parked requests, batched stats and usage tally), made on the worker
//! the first time the configuration serves a request there, and when it ticks.
//!
//! The wasm filter ticks every worker on a timer (`WORKER_TICK`, 250 ms). A dynamic module
//! has no worker timer, so the tick rides on the worker's own work, at no cost to a request
//! beyond a clock read:
//! - at the start of a request, when a tick is due and no request is parked (a parked request
//!   is decided from a scheduled event, never from inside another request's headers);
//! - on a parked request's wake-up (`crate::wakeups`), when a tick is due;
//! - when the worker's last request ends and something happened since the last tick, if a
//!   tick is due; if not, the worker settles instead (`AuthWorker::settle`): an idle worker
//!   has no later request to ride on, and its batched stats, usage tally and unused
//!   rate-limit leases must not wait for one, but the reads of a full tick can. Under load a
//!   worker goes idle at every turn of Envoy's event loop (streams are destroyed in a batch
//!   after it), so a full tick there cost every few requests a tick's reads of the store.

use std::cell::RefCell;
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
    ticks: RefCell<TickSchedule>,
}

/// When a worker ticks (see the module docs), apart from the worker itself.
#[derive(Debug)]
struct TickSchedule {
    last_tick: Instant,
    /// Requests of this configuration alive on this worker.
    live: u32,
    /// A request came since the last tick or settling.
    owed: bool,
}

/// What a worker does when its last request ends.
#[derive(Debug, PartialEq, Eq)]
enum AtIdle {
    Nothing,
    Settle,
    Tick,
}

impl TickSchedule {
    fn new(now: Instant) -> Self {
        TickSchedule {
            last_tick: now,
            live: 0,
            owed: false,
        }
    }

    /// A request starts: whether to tick first.
    fn request_started(&mut self, now: Instant, parked: bool) -> bool {
        self.live = self.live.saturating_add(1);
        let tick = !parked && now.saturating_duration_since(self.last_tick) >= WORKER_TICK;
        if tick {
            self.ticked(now);
        }
        // After the tick: what this request counts is owed to a later one.
        self.owed = true;
        tick
    }

    /// A parked request's wake-up: whether to tick.
    fn woken(&mut self, now: Instant) -> bool {
        let tick = now.saturating_duration_since(self.last_tick) >= WAKE_TICK;
        if tick {
            self.ticked(now);
        }
        tick
    }

    /// A request ended: whether the worker, going idle with counts pending, ticks (one is
    /// due) or settles them.
    fn request_ended(&mut self, now: Instant) -> AtIdle {
        self.live = self.live.saturating_sub(1);
        if self.live > 0 || !self.owed {
            return AtIdle::Nothing;
        }
        if now.saturating_duration_since(self.last_tick) >= WORKER_TICK {
            self.ticked(now);
            AtIdle::Tick
        } else {
            self.owed = false;
            AtIdle::Settle
        }
    }

    fn ticked(&mut self, now: Instant) {
        self.last_tick = now;
        self.owed = false;
    }
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
                ticks: RefCell::new(TickSchedule::new(Instant::now())),
            });
            slots.push((Arc::downgrade(life), Rc::clone(&slot)));
            slot
        })
    }

    /// A request began.
    pub fn request_started(&self) {
        let parked = self.worker.has_parked();
        self.tick_if(|ticks| ticks.request_started(Instant::now(), parked));
    }

    /// A parked request's wake-up.
    pub fn woken(&self) {
        self.tick_if(|ticks| ticks.woken(Instant::now()));
    }

    /// A request ended (its filter is being dropped).
    pub fn request_ended(&self) {
        let at_idle = self
            .ticks
            .try_borrow_mut()
            .map_or(AtIdle::Nothing, |mut ticks| {
                ticks.request_ended(Instant::now())
            });
        match at_idle {
            AtIdle::Nothing => {}
            AtIdle::Settle => self.worker.settle(),
            AtIdle::Tick => self.worker.on_tick(),
        }
    }

    fn tick_if(&self, due: impl FnOnce(&mut TickSchedule) -> bool) {
        // Released before the tick: it may end requests (parked ones answered), which
        // come back here.
        let tick = self
            .ticks
            .try_borrow_mut()
            .is_ok_and(|mut ticks| due(&mut ticks));
        if tick {
            self.worker.on_tick();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_request_is_settled_for_when_its_worker_goes_idle() {
        let start = Instant::now();
        let mut ticks = TickSchedule::new(start);
        let later = start + WORKER_TICK;
        // The request that finds a tick due gets it first; what it counts is still owed,
        // and settled (not ticked again) when the worker goes idle.
        assert!(ticks.request_started(later, false));
        assert_eq!(ticks.request_ended(later), AtIdle::Settle);
        // Nothing happened since: nothing to do.
        assert_eq!(ticks.request_ended(later), AtIdle::Nothing);
        // A request long after: going idle, a tick is due again.
        let much_later = later + WORKER_TICK;
        ticks.live = 1;
        ticks.owed = true;
        assert_eq!(ticks.request_ended(much_later), AtIdle::Tick);
    }

    #[test]
    fn a_worker_going_idle_at_every_turn_of_the_loop_ticks_once_a_tick() {
        // Under load Envoy destroys a turn's streams together: the worker goes idle every
        // few requests. It settles each time, and ticks in full once a tick only.
        let start = Instant::now();
        let mut ticks = TickSchedule::new(start);
        let mut full = 0;
        for turn in 0..1_000u32 {
            let now = start + WORKER_TICK * turn / 100;
            full += u32::from(ticks.request_started(now, false));
            full += u32::from(ticks.request_ended(now) == AtIdle::Tick);
        }
        assert_eq!(full, 9, "one every 100 turns, a tick apart");
    }

    #[test]
    fn a_busy_worker_ticks_on_its_requests_once_a_tick_is_due() {
        let start = Instant::now();
        let mut ticks = TickSchedule::new(start);
        assert!(!ticks.request_started(start, false));
        assert!(!ticks.request_started(start + WORKER_TICK / 2, false));
        assert_eq!(
            ticks.request_ended(start + WORKER_TICK / 2),
            AtIdle::Nothing,
            "one still alive"
        );
        assert!(ticks.request_started(start + WORKER_TICK, false));
        assert!(!ticks.request_started(start + WORKER_TICK, false));
    }

    #[test]
    fn with_parked_requests_only_their_wake_ups_tick() {
        let start = Instant::now();
        let mut ticks = TickSchedule::new(start);
        assert!(!ticks.request_started(start + WORKER_TICK, true));
        assert!(!ticks.woken(start + WAKE_TICK / 2));
        assert!(ticks.woken(start + WORKER_TICK));
        assert!(
            !ticks.woken(start + WORKER_TICK),
            "one tick for many wake-ups"
        );
    }
}
