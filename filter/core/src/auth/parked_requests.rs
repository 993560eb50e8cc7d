//! Requests a worker parked because admission had to wait (other workers hold leases of
//! their rate limit, or their quota's next lease is on its way). Each tick, after the
//! leases went back, takes each one's admission a step further, in its own request
//! context: it is forwarded and resumed, answered, or parked again until its ticks run
//! out. A request whose client left is dropped.

use crate::auth::admission::{Admission, Parked, MAX_WAIT_TICKS};
use crate::auth::admission_step::AdmissionStep;
use crate::auth::worker::AuthWorker;
use crate::host::{Host, HttpRequest};
use log::warn;
use std::rc::Rc;

impl<H: Host> AuthWorker<H> {
    /// Parks a request until a tick can take its admission further.
    pub fn park(&self, request: H::Request, admission: Rc<Admission>) {
        if let Ok(mut parked) = self.parked.try_borrow_mut() {
            parked.push(Parked {
                request,
                admission,
                ticks_left: MAX_WAIT_TICKS,
            });
        }
    }

    /// On the tick, after the leases went back: decides the parked requests, each in
    /// its own context.
    pub(super) fn decide_parked(&self) {
        let Ok(mut parked) = self.parked.try_borrow_mut() else {
            return;
        };
        if parked.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut *parked);
        drop(parked);
        let mut still = Vec::new();
        for mut parked in waiting {
            // The request's own handle is gone: the client left.
            if Rc::strong_count(&parked.admission) == 1 {
                continue;
            }
            if parked.request.enter().is_err() {
                continue;
            }
            match self.admit(&parked.request, &parked.admission, parked.ticks_left) {
                AdmissionStep::Forwarded => {
                    if let Err(e) = parked.request.resume() {
                        warn!("cannot resume a request after its rate limit: {e}");
                    }
                }
                AdmissionStep::Answered(outcome) => parked.admission.answered.set(Some(outcome)),
                AdmissionStep::Wait => {
                    parked.ticks_left = parked.ticks_left.saturating_sub(1);
                    still.push(parked);
                }
            }
        }
        if let Ok(mut parked) = self.parked.try_borrow_mut() {
            parked.extend(still);
        }
    }
}
