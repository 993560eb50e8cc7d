//! The gateway's readiness: ready once its key store holds a complete sync (a full
//! refresh completed, [`StoreMeta::synced`]), and ready for good after that. Before,
//! the store cannot tell an unknown key from one it has not loaded yet: keys are asked
//! of keysync one by one, and a stall of keysync turns them into 503s. After, a keysync
//! or database outage is served from the store (within `max_staleness`), so it must not
//! take the gateway out of its load balancer: the latch never closes.
//!
//! Envoy gives a wasm plugin no way to hold back its own readiness: proxy-wasm's
//! `on_configure` cannot answer "pending" (proxy-wasm/spec#2), a plugin registers no
//! init target, and Envoy's admin `/ready` reports only the server's state. So the
//! filter answers readiness itself, from the store's metadata: the auth filter on its
//! `ready_paths` (`/health`), and the `ready` role ([`ReadinessGate`]) on the probe
//! listener's `/ready` route, in front of the admin `/ready` it passes to once ready.

use crate::host::{Action, Host, HttpRequest, SharedData};
use crate::store::key_store::KeyStore;
use crate::store::store_meta::StoreMeta;
use keysync_contract::reply::{self as response, Denial};
use log::{info, warn};
use std::cell::Cell;

/// One VM's view of the latch: a shared-data read per check until the store first
/// shows a complete sync, nothing after.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: Cell<bool>,
}

impl Readiness {
    /// Whether the store holds a complete sync (reads its metadata until it does).
    pub fn is_ready<S: SharedData>(&self, store: &KeyStore<S>) -> bool {
        self.ready.get() || self.note(&store.meta())
    }

    /// Whether the latch is open, as last seen: no host call.
    pub fn seen_ready(&self) -> bool {
        self.ready.get()
    }

    /// Takes in metadata read for another reason (a worker's tick); returns readiness.
    pub fn note(&self, meta: &StoreMeta) -> bool {
        if meta.synced && !self.ready.replace(true) {
            info!(
                "the key store holds a complete sync (total={}): ready",
                meta.keys
            );
        }
        self.ready.get()
    }
}

/// The `ready` role: an HTTP filter whose every request is answered 503
/// `auth_unavailable` until the store holds a complete sync, and passed on after (to
/// Envoy's admin `/ready` on the probe listener, which adds Envoy's own state).
pub struct ReadinessGate<H> {
    host: H,
    readiness: Readiness,
}

impl<H: Host> ReadinessGate<H> {
    pub fn new(host: H) -> Self {
        ReadinessGate {
            host,
            readiness: Readiness::default(),
        }
    }

    pub fn on_request_headers(&self, request: &H::Request) -> Action {
        if self.readiness.is_ready(&KeyStore::new(&self.host)) {
            return Action::Continue;
        }
        let reply = response::reply(Denial::Unavailable, 403);
        if let Err(e) = request.send_reply(reply.status, reply.headers, reply.body) {
            warn!("cannot send the {} readiness reply: {e}", reply.status);
        }
        Action::Pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_host::FakeHost;
    use crate::host::fake_log::logged_line;

    const NOW_MS: u64 = 1_700_000_000_000;

    fn complete_sync(host: &FakeHost, keys: u64) {
        let meta = StoreMeta {
            epoch: 7,
            revision: 3,
            synced: true,
            keys,
            confirmed_age_ms: 0,
            beat: 1,
        };
        KeyStore::new(host).write_meta(&meta).unwrap();
    }

    /// What the gate did with a probe, its reply's status, and the host calls it made.
    fn probe(gate: &ReadinessGate<FakeHost>, host: &FakeHost) -> (Action, Option<u32>, usize) {
        host.new_request(&[(":path", "/ready"), (":method", "GET")]);
        let action = gate.on_request_headers(&host.request(1));
        let calls = host.host_calls.get();
        (action, host.reply().map(|reply| reply.status), calls)
    }

    #[test]
    fn the_gate_answers_503_until_a_full_sync_completed_then_passes_for_good() {
        let host = FakeHost::at(NOW_MS);
        let gate = ReadinessGate::new(host.clone());
        assert_eq!(probe(&gate, &host).0, Action::Pause);
        let reply = host.reply().unwrap();
        assert_eq!(reply.status, 503);
        assert!(reply.body.contains("auth_unavailable"), "{}", reply.body);

        // A refresh under way (its pages announced a revision) is not a complete sync.
        let meta = StoreMeta {
            epoch: 7,
            revision: 3,
            confirmed_age_ms: 100,
            ..StoreMeta::default()
        };
        KeyStore::new(&host).write_meta(&meta).unwrap();
        assert_eq!(probe(&gate, &host).1, Some(503));

        complete_sync(&host, 12);
        assert_eq!(probe(&gate, &host).0, Action::Continue);
        assert_eq!(host.reply(), None);
        assert!(logged_line("the key store holds a complete sync (total=12): ready").is_some());

        // Latched: whatever the store says later (a restore of stale metadata, keysync
        // gone), no shared-data read and no 503.
        KeyStore::new(&host)
            .write_meta(&StoreMeta::default())
            .unwrap();
        assert_eq!(
            probe(&gate, &host),
            (Action::Continue, None, 0),
            "no host call once ready"
        );
    }
}
