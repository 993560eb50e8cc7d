//! Who runs the sync service. Normally the singleton bootstrap VM does; but Envoy does
//! not reload a singleton whose VM died (a panic), and a store nobody syncs only ages
//! toward `max_staleness`. So the running sync service holds a lease in shared data and
//! renews it on every tick; when the renewals stop for [`TAKEOVER_AFTER_MS`], any VM that
//! can sync (an auth worker's) takes the lease with compare-and-swap and syncs in its
//! place. A singleton that was only slow finds the lease gone at its next tick and stands
//! down, so there is one writer of the store at a time.

use crate::host::{SharedData, WriteError};

/// Shared-data key of the lease.
pub const LEASE_ENTRY: &str = "keysync.sync_lease";

/// Renewals silent this long (on the observer's steady clock) mean the holder is gone.
pub const TAKEOVER_AFTER_MS: u64 = 5_000;

const FORMAT_VERSION: u8 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    holder: u64,
    renewals: u64,
}

impl Lease {
    fn encode(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        let (version, rest) = out.split_at_mut(1);
        version.copy_from_slice(&[FORMAT_VERSION]);
        let (holder, renewals) = rest.split_at_mut(8);
        holder.copy_from_slice(&self.holder.to_le_bytes());
        renewals.copy_from_slice(&self.renewals.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Lease> {
        let [FORMAT_VERSION, rest @ ..] = bytes else {
            return None;
        };
        Some(Lease {
            holder: u64::from_le_bytes(rest.get(..8)?.try_into().ok()?),
            renewals: u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// This VM holds the lease: it syncs.
    Holding,
    /// Another VM holds it (or the lease is being decided): this one must not write.
    Standby,
}

/// One VM's view of the lease.
pub struct SyncLease {
    /// This VM's identity (see [`SyncLease::new`]).
    id: u64,
    /// Take a lease nobody holds at once (the singleton) rather than after waiting.
    first_claim: bool,
    /// The lease as last seen, and when (steady clock) it last changed.
    seen: Option<Lease>,
    changed_at_ms: Option<u64>,
}

impl SyncLease {
    /// `id` must differ between the VMs of one Envoy (a random number). `first_claim`:
    /// the designated holder (the singleton).
    pub fn new(id: u64, first_claim: bool) -> Self {
        SyncLease {
            id: id.max(1),
            first_claim,
            seen: None,
            changed_at_ms: None,
        }
    }

    /// Once a tick: renews the lease when held, takes it when its holder is gone.
    pub fn tick<S: SharedData>(&mut self, data: &S, now_ms: u64) -> Standing {
        let entry = data.get(LEASE_ENTRY);
        let current = entry.value.as_deref().and_then(Lease::decode);
        if current != self.seen || self.changed_at_ms.is_none() {
            self.seen = current;
            self.changed_at_ms = Some(now_ms);
        }
        let silent_for = now_ms.saturating_sub(self.changed_at_ms.unwrap_or(now_ms));
        let claim = match current {
            Some(lease) if lease.holder == self.id => true,
            None => self.first_claim || silent_for >= TAKEOVER_AFTER_MS,
            Some(_) => silent_for >= TAKEOVER_AFTER_MS,
        };
        if !claim {
            return Standing::Standby;
        }
        let next = Lease {
            holder: self.id,
            renewals: current.map_or(0, |lease| lease.renewals.wrapping_add(1)),
        };
        // An absent entry cannot be compare-and-swapped; it is created unconditionally,
        // and whoever wrote last finds the lease theirs on the next tick.
        let renewing = current.is_some_and(|lease| lease.holder == self.id);
        match data.set(LEASE_ENTRY, &next.encode(), entry.cas) {
            Ok(()) => {
                self.seen = Some(next);
                self.changed_at_ms = Some(now_ms);
                // A taker holds only once its write has stood for a tick: an absent
                // entry cannot be compare-and-swapped, so two takers may both have
                // written it, and only the last one's stands. The designated holder
                // creating the lease at start has nobody to race.
                if renewing || (current.is_none() && self.first_claim) {
                    Standing::Holding
                } else {
                    Standing::Standby
                }
            }
            Err(WriteError::CasMismatch | WriteError::Host(_)) => Standing::Standby,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_shared_data::FakeSharedData;

    #[test]
    fn the_singleton_takes_a_free_lease_at_once_and_keeps_it() {
        let data = FakeSharedData::default();
        let mut singleton = SyncLease::new(1, true);
        let mut worker = SyncLease::new(2, false);
        assert_eq!(singleton.tick(&data, 0), Standing::Holding);
        for t in (250..30_000).step_by(250) {
            assert_eq!(singleton.tick(&data, t), Standing::Holding);
            assert_eq!(worker.tick(&data, t), Standing::Standby, "at {t}");
        }
    }

    #[test]
    fn a_worker_takes_over_when_the_renewals_stop_and_the_singleton_stands_down() {
        let data = FakeSharedData::default();
        let mut singleton = SyncLease::new(1, true);
        let mut workers = [SyncLease::new(2, false), SyncLease::new(3, false)];
        singleton.tick(&data, 0);
        for worker in &mut workers {
            worker.tick(&data, 0);
        }
        // The singleton's VM dies: no more renewals.
        let mut holding = Vec::new();
        let mut t = 0;
        while t < 12_000 {
            t += 250;
            for (i, worker) in workers.iter_mut().enumerate() {
                if worker.tick(&data, t) == Standing::Holding {
                    holding.push((t, i));
                }
            }
        }
        let first = holding.first().expect("someone took over");
        assert!(first.0 >= TAKEOVER_AFTER_MS && first.0 <= TAKEOVER_AFTER_MS + 1_000);
        assert!(
            holding.iter().all(|(_, i)| *i == first.1),
            "one taker: {holding:?}"
        );
        // A singleton that was only slow comes back to find the lease gone.
        assert_eq!(singleton.tick(&data, t + 250), Standing::Standby);
    }

    #[test]
    fn workers_take_a_lease_nobody_ever_held_only_after_waiting() {
        let data = FakeSharedData::default();
        let mut worker = SyncLease::new(2, false);
        assert_eq!(worker.tick(&data, 0), Standing::Standby);
        assert_eq!(worker.tick(&data, 4_750), Standing::Standby);
        let mut t = 5_000;
        let mut standing = worker.tick(&data, t);
        while standing == Standing::Standby && t < 6_000 {
            t += 250;
            standing = worker.tick(&data, t);
        }
        assert_eq!(standing, Standing::Holding);
    }

    #[test]
    fn garbage_in_the_entry_is_a_lease_nobody_holds() {
        let data = FakeSharedData::default();
        data.put(LEASE_ENTRY, b"junk");
        let mut singleton = SyncLease::new(1, true);
        assert_eq!(singleton.tick(&data, 0), Standing::Holding);
    }
}
