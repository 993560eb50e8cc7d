//! Parked requests need their worker's tick (rate-limit leases coming back, a quota lease on
//! its way), but a worker has no timer in the ABI and may get no other request. So a parked
//! request registers its stream's scheduler here, and the sync extension's main-thread timer
//! commits each one every tick: the event runs on the request's worker, which ticks
//! (`worker_slot`). A request that is no longer parked drops its scheduler, and with it its
//! place here.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::abi::StreamScheduler;

/// The event a wake-up commits.
pub const WAKE: u64 = 1;

static PARKED: Mutex<Vec<Weak<StreamScheduler>>> = Mutex::new(Vec::new());

/// A worker parked the request of `scheduler`'s stream.
pub fn register(scheduler: &Arc<StreamScheduler>) {
    PARKED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::downgrade(scheduler));
}

/// Main thread, every sync tick: wakes every request still parked.
pub fn wake_all() {
    let mut parked = PARKED.lock().unwrap_or_else(PoisonError::into_inner);
    parked.retain(|weak| match weak.upgrade() {
        Some(scheduler) => {
            scheduler.commit(WAKE);
            true
        }
        None => false,
    });
}
