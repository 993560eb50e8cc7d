//! Local rate limiting, exact across all of Envoy's workers: one counter per subject
//! (an org, or a key with its own limit) in shared data, updated by compare-and-swap.
//! Windows are fixed minutes aligned to the clock; a window's budget is
//! `requests_per_minute + burst`.
//!
//! A worker takes requests from the shared counter in small leases when plenty of the
//! budget is left (at most 1/64 of what remains, at most 32), so most requests of a busy
//! subject cost no shared-data call; near the end of the budget leases are single
//! requests, so the count stays exact. A worker never allows more than it leased, so a
//! window never allows more than its budget; unused lease is given back on the worker's
//! next tick, so an idle worker holds a few requests back for well under a second.
//!
//! Counter entries are never freed (shared data has no delete), so there is one per org
//! and per key with its own limit, not one per window. The sync service creates a
//! subject's counter before any worker can see its keys: a worker finding no counter
//! would have to create it without compare-and-swap, and two workers doing that at once
//! could lose a count.

use crate::shared_data::{SharedData, WriteError};
use keysync_contract::limit::Limit;
use keysync_contract::rate_limit_headers::{
    self, POLICY_HEADER, RATELIMIT_HEADER, RETRY_AFTER_HEADER,
};
use keysync_contract::rate_window::Window;
use keysync_contract::subject::Subject;
use std::collections::HashMap;

/// A lease is at most this share of what is left of the window's budget...
const LEASE_DIVISOR: u32 = 64;
/// ...and at most this many requests.
const MAX_LEASE: u32 = 32;

/// Compare-and-swap attempts before a request is refused rather than risk a lost count.
const MAX_CAS_ATTEMPTS: usize = 64;

const FORMAT_VERSION: u8 = 1;

/// The shared-data entry of a subject's counter: `keysync.rl.org:<uuid>`.
fn entry_name(subject: &Subject) -> String {
    format!("keysync.rl.{subject}")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Counter {
    window: u64,
    count: u32,
}

impl Counter {
    fn encode(&self) -> [u8; 13] {
        let mut out = [0u8; 13];
        let (version, rest) = out.split_at_mut(1);
        version.copy_from_slice(&[FORMAT_VERSION]);
        let (window, count) = rest.split_at_mut(8);
        window.copy_from_slice(&self.window.to_le_bytes());
        count.copy_from_slice(&self.count.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Counter> {
        let [FORMAT_VERSION, rest @ ..] = bytes else {
            return None;
        };
        Some(Counter {
            window: u64::from_le_bytes(rest.get(..8)?.try_into().ok()?),
            count: u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?),
        })
    }
}

/// The outcome for one request, with what its rate-limit headers say.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Quota {
    pub allowed: bool,
    pub budget: u32,
    pub remaining: u32,
    /// Seconds until the window ends (at least 1).
    pub reset_secs: u64,
}

impl Quota {
    /// The `RateLimit` header's value, e.g. `limit=100, remaining=42, reset=17`.
    pub fn ratelimit_header(&self) -> String {
        rate_limit_headers::ratelimit(
            u64::from(self.budget),
            u64::from(self.remaining),
            self.reset_secs,
        )
    }

    /// The headers of the 429 for a request over the limit.
    pub fn refusal_headers(&self) -> Vec<(&'static str, String)> {
        let (json_name, json_value) = keysync_contract::reply::JSON;
        vec![
            (json_name, json_value.to_string()),
            (RETRY_AFTER_HEADER, self.reset_secs.to_string()),
            (
                POLICY_HEADER,
                rate_limit_headers::policy_item(u64::from(self.budget)),
            ),
            (RATELIMIT_HEADER, self.ratelimit_header()),
        ]
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum LimitError {
    /// The counter kept changing under compare-and-swap; refusing (with this quota)
    /// keeps the count exact.
    Contended(Quota),
    Host(u32),
}

/// Requests a worker has taken from shared counters and not used yet.
#[derive(Default)]
pub struct Leases {
    held: HashMap<Subject, Lease>,
}

struct Lease {
    window: u64,
    /// Requests taken from the shared counter and not used yet.
    unused: u32,
    /// What the shared counter had left when the lease was taken.
    left_after_grant: u32,
}

/// Counts one request against `subject`'s window at `now`: from this worker's lease if
/// it holds one, else by taking a new lease from the shared counter.
pub fn check<S: SharedData>(
    data: &S,
    leases: &mut Leases,
    subject: &Subject,
    limit: Limit,
    now_unix_secs: u64,
) -> Result<Quota, LimitError> {
    let now = Window::at(now_unix_secs);
    let window = now.number;
    let budget = limit.budget();
    let quota = |allowed, remaining| Quota {
        allowed,
        budget,
        remaining,
        reset_secs: now.seconds_left,
    };
    if let Some(lease) = leases.held.get_mut(subject) {
        if lease.window == window && lease.unused > 0 {
            lease.unused -= 1;
            return Ok(quota(true, lease.left_after_grant + lease.unused));
        }
    }
    let name = entry_name(subject);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let entry = data.get(&name);
        let used = entry
            .value
            .as_deref()
            .and_then(Counter::decode)
            .filter(|counter| counter.window == window)
            .map_or(0, |counter| counter.count);
        if used >= budget {
            leases.held.remove(subject);
            return Ok(quota(false, 0));
        }
        let left = budget - used;
        let take = (left / LEASE_DIVISOR).clamp(1, MAX_LEASE);
        let next = Counter {
            window,
            count: used + take,
        };
        match data.set(&name, &next.encode(), entry.cas) {
            Ok(()) => {
                let left_after_grant = left - take;
                leases.held.insert(
                    *subject,
                    Lease {
                        window,
                        unused: take - 1,
                        left_after_grant,
                    },
                );
                return Ok(quota(true, left_after_grant + take - 1));
            }
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host(status)) => return Err(LimitError::Host(status)),
        }
    }
    Err(LimitError::Contended(quota(false, 0)))
}

/// On the worker's tick: gives unused lease back to the shared counters, so that other
/// workers can use it. Leases of past windows are simply dropped.
pub fn give_back<S: SharedData>(data: &S, leases: &mut Leases, now_unix_secs: u64) {
    let window = Window::at(now_unix_secs).number;
    for (subject, lease) in leases.held.drain() {
        if lease.window != window || lease.unused == 0 {
            continue;
        }
        let name = entry_name(&subject);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = data.get(&name);
            let Some(counter) = entry.value.as_deref().and_then(Counter::decode) else {
                break;
            };
            if counter.window != window {
                break;
            }
            let back = Counter {
                window,
                count: counter.count.saturating_sub(lease.unused),
            };
            match data.set(&name, &back.encode(), entry.cas) {
                Err(WriteError::CasMismatch) => continue,
                _ => break,
            }
        }
    }
}

/// Sync service: creates `subject`'s counter if it does not exist yet.
pub fn ensure_counter<S: SharedData>(data: &S, subject: &Subject) -> Result<(), WriteError> {
    let name = entry_name(subject);
    if data.get(&name).value.is_some() {
        return Ok(());
    }
    data.set(
        &name,
        &Counter {
            window: 0,
            count: 0,
        }
        .encode(),
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_data::fake::FakeSharedData;
    use keysync_contract::id::Id;

    const ORG: Id = Id([7; 16]);

    fn limit(rpm: u32, burst: u32) -> Limit {
        Limit {
            requests_per_minute: rpm,
            burst,
        }
    }

    fn allowed(data: &FakeSharedData, limit: Limit, now: u64, n: usize) -> usize {
        let mut leases = Leases::default();
        (0..n)
            .filter(|_| {
                check(data, &mut leases, &Subject::Org(ORG), limit, now)
                    .unwrap()
                    .allowed
            })
            .count()
    }

    fn used(data: &FakeSharedData, subject: &Subject) -> u32 {
        Counter::decode(&data.value(&entry_name(subject)).unwrap())
            .unwrap()
            .count
    }

    #[test]
    fn allows_exactly_the_budget_in_a_window() {
        let data = FakeSharedData::default();
        assert_eq!(allowed(&data, limit(100, 0), 6_000, 150), 100);
        assert_eq!(allowed(&data, limit(100, 0), 6_059, 10), 0, "same window");
        assert_eq!(
            allowed(&data, limit(100, 0), 6_060, 150),
            100,
            "next window"
        );
    }

    #[test]
    fn burst_adds_to_the_budget() {
        let data = FakeSharedData::default();
        assert_eq!(allowed(&data, limit(10, 5), 60, 100), 15);
    }

    #[test]
    fn headers_count_down_and_tell_the_reset() {
        let data = FakeSharedData::default();
        let leases = &mut Leases::default();
        let first = check(&data, leases, &Subject::Org(ORG), limit(3, 0), 6_017).unwrap();
        assert_eq!(first.remaining, 2);
        assert_eq!(first.reset_secs, 43);
        assert_eq!(first.ratelimit_header(), "limit=3, remaining=2, reset=43");
        check(&data, leases, &Subject::Org(ORG), limit(3, 0), 6_017).unwrap();
        let last = check(&data, leases, &Subject::Org(ORG), limit(3, 0), 6_017).unwrap();
        assert!(last.allowed);
        assert_eq!(last.remaining, 0);
        let over = check(&data, leases, &Subject::Org(ORG), limit(3, 0), 6_059).unwrap();
        assert!(!over.allowed);
        assert_eq!(over.reset_secs, 1);
    }

    #[test]
    fn a_refusal_says_when_to_retry() {
        let quota = Quota {
            allowed: false,
            budget: 100,
            remaining: 0,
            reset_secs: 17,
        };
        let headers = quota.refusal_headers();
        assert!(headers.contains(&("retry-after", "17".to_string())));
        assert!(headers.contains(&("ratelimit", "limit=100, remaining=0, reset=17".to_string())));
        assert!(headers.contains(&("ratelimit-policy", "100;w=60".to_string())));
        assert!(headers.contains(&("content-type", "application/json".to_string())));
    }

    #[test]
    fn subjects_do_not_share_a_budget() {
        let data = FakeSharedData::default();
        let a = Subject::Org(ORG);
        let b = Subject::Key(ORG);
        assert_ne!(entry_name(&a), entry_name(&b));
        assert_eq!(entry_name(&a), format!("keysync.rl.org:{ORG}"));
        let leases = &mut Leases::default();
        for _ in 0..2 {
            assert!(check(&data, leases, &a, limit(2, 0), 60).unwrap().allowed);
        }
        assert!(!check(&data, leases, &a, limit(2, 0), 60).unwrap().allowed);
        assert!(check(&data, leases, &b, limit(2, 0), 60).unwrap().allowed);
    }

    #[test]
    fn a_racing_worker_never_costs_a_count() {
        let data = FakeSharedData::default();
        ensure_counter(&data, &Subject::Org(ORG)).unwrap();
        // Another worker counts one request between each of our reads and writes.
        let racing = std::cell::Cell::new(0);
        *data.after_get.borrow_mut() = Some(Box::new(move |d: &FakeSharedData, key: &str| {
            if racing.get() < 10 {
                racing.set(racing.get() + 1);
                let entry = d.entries.borrow().get(key).cloned();
                if let Some((value, _)) = entry {
                    let mut counter = Counter::decode(&value).unwrap();
                    if counter.window != 1 {
                        counter = Counter {
                            window: 1,
                            count: 0,
                        };
                    }
                    counter.count += 1;
                    d.put(key, &counter.encode());
                }
            }
        }));
        let ours = allowed(&data, limit(20, 0), 60, 20);
        assert_eq!(used(&data, &Subject::Org(ORG)), 20);
        assert_eq!(
            ours, 10,
            "10 went to the other worker, none lost, none over"
        );
    }

    #[test]
    fn big_budgets_are_leased_and_never_exceeded() {
        let data = FakeSharedData::default();
        let subject = Subject::Org(ORG);
        let (mut a, mut b) = (Leases::default(), Leases::default());
        let mut writes = 0;
        let mut allowed = 0;
        // Two workers alternate on a 10,000 budget, then keep going past it.
        for i in 0..12_000 {
            let leases = if i % 2 == 0 { &mut a } else { &mut b };
            let before = data.writes.get();
            if check(&data, leases, &subject, limit(10_000, 0), 60)
                .unwrap()
                .allowed
            {
                allowed += 1;
            }
            writes += data.writes.get() - before;
        }
        assert_eq!(allowed, 10_000, "every request of the budget, and no more");
        assert!(
            writes < 2_000,
            "{writes} shared writes: leases save most of them"
        );
    }

    #[test]
    fn unused_lease_goes_back_on_the_tick() {
        let data = FakeSharedData::default();
        let subject = Subject::Org(ORG);
        let (mut idle, mut busy) = (Leases::default(), Leases::default());
        // The idle worker takes one request, leasing more (1/64 of 6,400 = 100, capped).
        assert!(
            check(&data, &mut idle, &subject, limit(6_400, 0), 60)
                .unwrap()
                .allowed
        );
        assert_eq!(used(&data, &subject), MAX_LEASE);
        give_back(&data, &mut idle, 61);
        assert_eq!(used(&data, &subject), 1, "the 31 unused requests are back");
        // The busy worker can now use all the rest.
        let rest = (0..7_000)
            .filter(|_| {
                check(&data, &mut busy, &subject, limit(6_400, 0), 61)
                    .unwrap()
                    .allowed
            })
            .count();
        assert_eq!(rest, 6_399);
        // A lease from a past window is dropped, not given back to the new window.
        give_back(&data, &mut busy, 125);
        assert_eq!(used(&data, &subject), 6_400);
    }

    #[test]
    fn remaining_counts_down_within_a_lease() {
        let data = FakeSharedData::default();
        let leases = &mut Leases::default();
        let subject = Subject::Org(ORG);
        let remaining: Vec<u32> = (0..4)
            .map(|_| {
                check(&data, leases, &subject, limit(6_400, 0), 60)
                    .unwrap()
                    .remaining
            })
            .collect();
        assert_eq!(remaining, vec![6_399, 6_398, 6_397, 6_396]);
    }

    #[test]
    fn ensure_counter_creates_once() {
        let data = FakeSharedData::default();
        let subject = Subject::Org(ORG);
        ensure_counter(&data, &subject).unwrap();
        check(&data, &mut Leases::default(), &subject, limit(5, 0), 60).unwrap();
        ensure_counter(&data, &subject).unwrap();
        let counter = Counter::decode(&data.value(&entry_name(&subject)).unwrap()).unwrap();
        assert_eq!(counter.count, 1, "an existing counter is left alone");
    }
}
