//! One request as usage metering sees it, from its verdict to the end of its stream: a
//! recognized key's request is counted under (org, key, endpoint, outcome), with its
//! duration when it is timed; any other in the per-Envoy unattributed total. Counting
//! is an addition in the worker's memory; a recognized key's request pays one host call
//! for its endpoint (its route's name, unless `usage_endpoints` is off), a forwarded
//! request's response one more (its status), and a timed one (`duration_sample`) two
//! more (the clock at its start and at its response).

use crate::auth::worker::AuthWorker;
use crate::host::{Host, HttpRequest};
use crate::usage::counters::{Counts, UsageKey};
use crate::usage::endpoints::LocalEndpoint;
use keysync_contract::id::Id;
use keysync_contract::usage_outcome::Outcome;

pub enum RequestUsage {
    /// No recognized key: missing, malformed, unknown, or nobody could tell.
    Unattributed,
    Key {
        org: Id,
        key: Id,
        /// The route it came through, read when it was admitted.
        endpoint: LocalEndpoint,
        /// Set when the gateway answered the request itself, or from the upstream's
        /// status when its response headers came.
        outcome: Option<Outcome>,
        /// When it was admitted (the clock, read only for a request metering times);
        /// request start to response headers is measured from it.
        admitted_us: Option<u64>,
        /// Admission to response headers; measured for timed forwarded requests only.
        duration_us: Option<u64>,
    },
}

impl RequestUsage {
    /// The gateway answered a recognized key's request itself.
    pub fn answered(&mut self, code: Outcome) {
        if let RequestUsage::Key { outcome, .. } = self {
            *outcome = Some(code);
        }
    }

    /// A forwarded request of a recognized key got its response headers: its status,
    /// and, when it is timed, how long since it was admitted. One host call (two when
    /// timed), only when metering is on. `parked` is what a worker's tick answered for
    /// it, if it did (then it was not forwarded by this path).
    pub fn measure_response<H: Host>(
        &mut self,
        worker: &AuthWorker<H>,
        request: &H::Request,
        parked: Option<Outcome>,
    ) {
        let RequestUsage::Key {
            outcome: answered @ None,
            admitted_us,
            duration_us,
            ..
        } = self
        else {
            return;
        };
        if parked.is_some() || !worker.metering() {
            return;
        }
        *answered = Some(Outcome::of_status(request.response_status()));
        if let Some(admitted_us) = admitted_us {
            *duration_us = Some(worker.host.now_unix_us().saturating_sub(*admitted_us));
        }
    }

    /// The stream ended: counts the request, in the worker's memory. No host call.
    pub fn count<H: Host>(
        self,
        worker: &AuthWorker<H>,
        parked: Option<Outcome>,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        match self {
            RequestUsage::Unattributed => worker.count_unattributed(),
            RequestUsage::Key {
                org,
                key,
                endpoint,
                outcome,
                duration_us,
                ..
            } => {
                let key = UsageKey {
                    org,
                    key,
                    endpoint,
                    outcome: outcome.or(parked).unwrap_or(Outcome::Other),
                };
                let counts = Counts::one(duration_us, request_bytes, response_bytes);
                worker.count_usage(key, counts);
            }
        }
    }
}
