//! A worker's part in usage metering: learning each recognized key's request's
//! endpoint (one host call), counting each request in its tally (memory, no host call),
//! choosing which requests to time, and merging the tally into the shared counters on
//! its tick.

use crate::auth::worker::AuthWorker;
use crate::config::{UsageDurations, UsageEndpoints};
use crate::host::{Host, HttpRequest};
use crate::stats::Counter;
use crate::usage::counters::{self, Counts, Tally, UsageKey};
use crate::usage::duration_sample::DurationSample;
use crate::usage::endpoints::{EndpointCode, LocalEndpoint};
use crate::usage::metering::{Meta, Metering};
use keysync_contract::usage_endpoint::ENDPOINT_HEADER;
use log::warn;

impl<H: Host> AuthWorker<H> {
    pub fn metering(&self) -> bool {
        self.metering.get() != Metering::Off
    }

    /// Whether usage metering times this request of a key (whose sample it is).
    pub fn times(&self, sample: Option<&DurationSample>) -> bool {
        if !self.metering() {
            return false;
        }
        match (self.config.usage_durations, sample) {
            (UsageDurations::Sampled, Some(sample)) => sample.take(self.ticks.get()),
            // A record read for this request alone (keysync's answer to a miss).
            (UsageDurations::Sampled, None) | (UsageDurations::All, _) => true,
        }
    }

    /// The endpoint a recognized key's request counts under: its route's name, read
    /// where `usage_endpoints` says (one header or property read), and only while
    /// metering is on. The name is mapped in the worker's memory.
    pub fn usage_endpoint(&self, request: &H::Request) -> LocalEndpoint {
        let no_name = LocalEndpoint::Code(EndpointCode::NO_NAME);
        if !self.metering() {
            return no_name;
        }
        let name = match self.config.usage_endpoints {
            UsageEndpoints::Off => return no_name,
            UsageEndpoints::Header => request.request_header(ENDPOINT_HEADER),
            // A failed read counts as a route without a name.
            UsageEndpoints::RouteName => request.route_name().ok().flatten(),
        };
        match self.usage.try_borrow_mut() {
            Ok(mut tally) => tally.endpoints.of(name.as_deref()),
            Err(_) => no_name,
        }
    }

    /// Counts one request of a recognized key. No host call.
    pub fn count_usage(&self, key: UsageKey<LocalEndpoint>, counts: Counts) {
        if self.metering() {
            if let Ok(mut tally) = self.usage.try_borrow_mut() {
                tally.record(key, counts);
            }
        }
    }

    /// Counts one request without a recognized key. No host call.
    pub fn count_unattributed(&self) {
        if self.metering() {
            if let Ok(mut tally) = self.usage.try_borrow_mut() {
                tally.unattributed();
            }
        }
    }

    /// Adds what this worker counted since the last tick into shared data, where the
    /// sync service reads it. One read of the metering settings a tick, and a
    /// compare-and-swap per slot touched.
    pub(super) fn merge_usage(&self) {
        let metering = Metering::of(Meta::read(&self.host));
        self.metering.set(metering);
        let Ok(mut tally) = self.usage.try_borrow_mut() else {
            return;
        };
        match metering {
            Metering::Off => *tally = Tally::new(self.config.usage_max_endpoints),
            // The slots may not exist yet; the tally holds on (it is bounded).
            Metering::Unknown => {}
            Metering::On if tally.is_empty() => {}
            Metering::On => {
                let merged = counters::merge(&self.host, &mut tally);
                if merged.dropped > 0 {
                    self.stats.add(Counter::UsageDropped, merged.dropped);
                }
                if merged.other_endpoint > 0 {
                    self.stats
                        .add(Counter::UsageEndpointOther, merged.other_endpoint);
                    if tally.endpoints.tell_other_once() {
                        warn!(
                            "usage: requests counted under the endpoint (other): route names \
                             that are not 1 to 64 of [A-Za-z0-9._:/-], or more distinct ones \
                             than usage_max_endpoints ({}); see keysync.usage_endpoint_other",
                            tally.endpoints.max()
                        );
                    }
                }
                if let Some(name) = tally.endpoints.take_unusable() {
                    warn!("usage: the route name \"{name}\" is not a usable endpoint name: counted as (other)");
                }
            }
        }
    }
}
