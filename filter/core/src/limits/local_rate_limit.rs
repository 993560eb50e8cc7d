//! Local rate limiting, exact across all of Envoy's workers and bounded in memory.
//! Windows are fixed minutes aligned to the clock; a window's budget is
//! `requests_per_minute + burst`.
//!
//! Counters live in [`SLOTS`] shared-data entries created once by the sync service; a
//! subject (an org, or a key with its own limit) is counted in the slot its id hashes
//! to, one small record per subject active in the current window. Records of past
//! windows are dropped whenever a slot is written, so memory follows the subjects active
//! now, not every subject ever seen (shared data never frees an entry, and each rotation
//! of a key with its own limit is a new subject). Every write is a compare-and-swap on
//! an entry that already exists, so two workers can never lose a count between them.
//!
//! A worker takes requests from the shared counter in small leases when plenty of the
//! budget is left (at most 1/64 of what remains, at most 32), so most requests of a busy
//! subject cost no shared-data call; near the end of the budget leases are single
//! requests. Unused lease goes back on the worker's next tick. The counter records how
//! many leased requests are still out: a worker that finds the budget spent while others
//! hold leases does not refuse yet ([`Decision::Wait`]); it asks again after its next
//! tick, when the holders have given back what they did not use. So when demand exceeds
//! the budget, a window allows exactly its budget even if a lease sat on a worker that
//! got no more requests.

use crate::host::{SharedData, WriteError};
use crate::limits::subject_slot;
use keysync_contract::id::Id;
use keysync_contract::limit::Limit;
use keysync_contract::rate_limit_headers::{
    self, POLICY_HEADER, RATELIMIT_HEADER, RETRY_AFTER_HEADER,
};
use keysync_contract::rate_window::Window;
use keysync_contract::subject::Subject;
use std::collections::HashMap;

/// Shared-data entries holding counters (created by the sync service).
pub const SLOTS: u16 = 1024;

/// A lease is at most this share of what is left of the window's budget...
const LEASE_DIVISOR: u32 = 64;
/// ...and at most this many requests.
const MAX_LEASE: u32 = 32;

/// Compare-and-swap attempts before a request is refused rather than risk a lost count.
const MAX_CAS_ATTEMPTS: usize = 64;

const FORMAT_VERSION: u8 = 2;
const RECORD_LEN: usize = 1 + 16 + 8 + 4 + 4;

/// The shared-data key of slot `index`.
fn slot_name(index: u16) -> String {
    format!("keysync.rl.{index:04x}")
}

/// The slot a subject is counted in.
fn slot_of(subject: &Subject) -> u16 {
    subject_slot::slot_of(subject, SLOTS)
}

/// One subject's count in one window.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Counter {
    subject: Subject,
    window: u64,
    /// Requests handed out: allowed ones and leased ones.
    granted: u32,
    /// Leased requests not yet settled by their holders (used or given back).
    outstanding: u32,
}

impl Counter {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.subject.code());
        out.extend_from_slice(&self.subject.id().0);
        out.extend_from_slice(&self.window.to_le_bytes());
        out.extend_from_slice(&self.granted.to_le_bytes());
        out.extend_from_slice(&self.outstanding.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<Counter> {
        let (kind, rest) = bytes.split_first()?;
        let subject = Subject::from_code(i64::from(*kind), Id::from_slice(rest.get(..16)?)?)?;
        Some(Counter {
            subject,
            window: u64::from_le_bytes(rest.get(16..24)?.try_into().ok()?),
            granted: u32::from_le_bytes(rest.get(24..28)?.try_into().ok()?),
            outstanding: u32::from_le_bytes(rest.get(28..32)?.try_into().ok()?),
        })
    }
}

/// A slot's counters; an unreadable entry reads as empty (it is rewritten whole).
fn decode_slot(bytes: &[u8]) -> Vec<Counter> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, records)) if records.len() % RECORD_LEN == 0 => records
            .chunks_exact(RECORD_LEN)
            .filter_map(Counter::decode)
            .collect(),
        _ => Vec::new(),
    }
}

/// The slot with `counter` in it, and without counters of windows before `window`.
fn encode_slot(counters: &[Counter], changed: Counter, window: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + RECORD_LEN * (counters.len() + 1));
    out.push(FORMAT_VERSION);
    for counter in counters
        .iter()
        .filter(|c| c.window >= window && c.subject != changed.subject)
    {
        counter.encode_into(&mut out);
    }
    changed.encode_into(&mut out);
    out
}

/// Sync service: creates every slot that does not exist yet. Only one VM syncs at a
/// time, so these unconditional first writes race with nobody.
pub fn ensure_slots<S: SharedData>(data: &S) -> Result<(), WriteError> {
    for index in 0..SLOTS {
        let name = slot_name(index);
        if data.get(&name).value.is_none() {
            data.set(&name, &[FORMAT_VERSION], 0)?;
        }
    }
    Ok(())
}

/// Where one request leaves its rate window: whether it was allowed, and what its
/// rate-limit headers say.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct WindowState {
    pub allowed: bool,
    pub budget: u32,
    pub remaining: u32,
    /// Seconds until the window ends (at least 1).
    pub reset_secs: u64,
}

impl WindowState {
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
    /// The counter kept changing under compare-and-swap; refusing (with this state)
    /// keeps the count exact.
    Contended(WindowState),
    /// The slot does not exist (the sync service has not created the slots yet).
    NoSlot,
    Host(u32),
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(WindowState),
    Refuse(WindowState),
    /// The budget is spent, but other workers still hold leased requests they may not
    /// use: ask again after the next tick.
    Wait,
}

/// Requests a worker has taken from shared counters and not used yet.
#[derive(Default)]
pub struct Leases {
    held: HashMap<Subject, Lease>,
}

struct Lease {
    window: u64,
    /// Requests the lease was for; counted in the shared `outstanding` until settled.
    size: u32,
    /// Requests of it not used yet.
    unused: u32,
    /// What the shared counter had left when the lease was taken.
    left_after_grant: u32,
}

/// Counts one request against `subject`'s window at `now`: from this worker's lease if
/// it holds one, else from the shared counter (settling a used-up lease on the way).
pub fn check<S: SharedData>(
    data: &S,
    leases: &mut Leases,
    subject: &Subject,
    limit: Limit,
    now_unix_secs: u64,
) -> Result<Decision, LimitError> {
    let now = Window::at(now_unix_secs);
    let window = now.number;
    let budget = limit.budget();
    let state = |allowed, remaining| WindowState {
        allowed,
        budget,
        remaining,
        reset_secs: now.seconds_left,
    };
    if let Some(lease) = leases.held.get_mut(subject) {
        if lease.window == window && lease.unused > 0 {
            lease.unused -= 1;
            return Ok(Decision::Allow(state(
                true,
                lease.left_after_grant + lease.unused,
            )));
        }
    }
    // A used-up lease of this window is settled in the same write.
    let settling = leases
        .held
        .get(subject)
        .filter(|lease| lease.window == window)
        .map_or(0, |lease| lease.size);
    let name = slot_name(slot_of(subject));
    for _ in 0..MAX_CAS_ATTEMPTS {
        let entry = data.get(&name);
        let Some(bytes) = entry.value.as_deref() else {
            return Err(LimitError::NoSlot);
        };
        let counters = decode_slot(bytes);
        let mut counter = counters
            .iter()
            .find(|c| c.subject == *subject && c.window == window)
            .copied()
            .unwrap_or(Counter {
                subject: *subject,
                window,
                granted: 0,
                outstanding: 0,
            });
        counter.outstanding = counter.outstanding.saturating_sub(settling);
        let left = budget.saturating_sub(counter.granted);
        let (decision, lease) = if left == 0 {
            let decision = if counter.outstanding > 0 {
                Decision::Wait
            } else {
                Decision::Refuse(state(false, 0))
            };
            (decision, None)
        } else {
            let take = (left / LEASE_DIVISOR).clamp(1, MAX_LEASE);
            counter.granted += take;
            let left_after_grant = left - take;
            let lease = (take > 1).then(|| {
                counter.outstanding = counter.outstanding.saturating_add(take);
                Lease {
                    window,
                    size: take,
                    unused: take - 1,
                    left_after_grant,
                }
            });
            (
                Decision::Allow(state(true, left_after_grant + take - 1)),
                lease,
            )
        };
        if settling == 0 && left == 0 {
            // Nothing to write: the answer stands on what was read.
            leases.held.remove(subject);
            return Ok(decision);
        }
        match data.set(&name, &encode_slot(&counters, counter, window), entry.cas) {
            Ok(()) => {
                match lease {
                    Some(lease) => {
                        leases.held.insert(*subject, lease);
                    }
                    None => {
                        leases.held.remove(subject);
                    }
                }
                return Ok(decision);
            }
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host(status)) => return Err(LimitError::Host(status)),
        }
    }
    Err(LimitError::Contended(state(false, 0)))
}

/// On the worker's tick: settles every lease of the current window (unused requests go
/// back to the shared counter, so other workers, or waiting requests, can use them).
/// Leases of past windows are simply dropped: their counters are gone with the window.
pub fn give_back<S: SharedData>(data: &S, leases: &mut Leases, now_unix_secs: u64) {
    let window = Window::at(now_unix_secs).number;
    for (subject, lease) in leases.held.drain() {
        if lease.window != window {
            continue;
        }
        let name = slot_name(slot_of(&subject));
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = data.get(&name);
            let Some(bytes) = entry.value.as_deref() else {
                break;
            };
            let counters = decode_slot(bytes);
            let Some(mut counter) = counters
                .iter()
                .find(|c| c.subject == subject && c.window == window)
                .copied()
            else {
                break;
            };
            counter.granted = counter.granted.saturating_sub(lease.unused);
            counter.outstanding = counter.outstanding.saturating_sub(lease.size);
            match data.set(&name, &encode_slot(&counters, counter, window), entry.cas) {
                Err(WriteError::CasMismatch) => continue,
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_shared_data::FakeSharedData;

    const ORG: Id = Id([7; 16]);

    fn limit(rpm: u32, burst: u32) -> Limit {
        Limit {
            requests_per_minute: rpm,
            burst,
        }
    }

    fn slots() -> FakeSharedData {
        let data = FakeSharedData::default();
        ensure_slots(&data).unwrap();
        data
    }

    fn allowed_now(data: &FakeSharedData, leases: &mut Leases, limit: Limit, now: u64) -> bool {
        matches!(
            check(data, leases, &Subject::Org(ORG), limit, now).unwrap(),
            Decision::Allow(_)
        )
    }

    fn allowed(data: &FakeSharedData, limit: Limit, now: u64, n: usize) -> usize {
        let mut leases = Leases::default();
        (0..n)
            .filter(|_| allowed_now(data, &mut leases, limit, now))
            .count()
    }

    fn counter(data: &FakeSharedData, subject: &Subject) -> Option<Counter> {
        let bytes = data.value(&slot_name(slot_of(subject)))?;
        decode_slot(&bytes)
            .into_iter()
            .find(|c| c.subject == *subject)
    }

    #[test]
    fn allows_exactly_the_budget_in_a_window() {
        let data = slots();
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
        let data = slots();
        assert_eq!(allowed(&data, limit(10, 5), 60, 100), 15);
    }

    #[test]
    fn headers_count_down_and_tell_the_reset() {
        let data = slots();
        let leases = &mut Leases::default();
        let subject = Subject::Org(ORG);
        let Decision::Allow(first) = check(&data, leases, &subject, limit(3, 0), 6_017).unwrap()
        else {
            panic!("allowed");
        };
        assert_eq!(first.remaining, 2);
        assert_eq!(first.reset_secs, 43);
        assert_eq!(first.ratelimit_header(), "limit=3, remaining=2, reset=43");
        check(&data, leases, &subject, limit(3, 0), 6_017).unwrap();
        let last = check(&data, leases, &subject, limit(3, 0), 6_017).unwrap();
        assert!(matches!(last, Decision::Allow(q) if q.remaining == 0));
        let over = check(&data, leases, &subject, limit(3, 0), 6_059).unwrap();
        assert!(matches!(over, Decision::Refuse(q) if q.reset_secs == 1 && !q.allowed));
    }

    #[test]
    fn a_refusal_says_when_to_retry() {
        let state = WindowState {
            allowed: false,
            budget: 100,
            remaining: 0,
            reset_secs: 17,
        };
        let headers = state.refusal_headers();
        assert!(headers.contains(&("retry-after", "17".to_string())));
        assert!(headers.contains(&("ratelimit", "limit=100, remaining=0, reset=17".to_string())));
        assert!(headers.contains(&("ratelimit-policy", "100;w=60".to_string())));
        assert!(headers.contains(&("content-type", "application/json".to_string())));
    }

    #[test]
    fn subjects_do_not_share_a_budget_even_in_one_slot() {
        let data = slots();
        let leases = &mut Leases::default();
        // Find a key subject that lands in the org's slot.
        let org = Subject::Org(ORG);
        let key = (0u8..=255)
            .map(|b| Subject::Key(Id([b; 16])))
            .chain((0u16..5000).map(|n| {
                let mut id = [0u8; 16];
                id[..2].copy_from_slice(&n.to_le_bytes());
                Subject::Key(Id(id))
            }))
            .find(|s| slot_of(s) == slot_of(&org))
            .expect("a subject sharing the slot");
        for _ in 0..2 {
            assert!(matches!(
                check(&data, leases, &org, limit(2, 0), 60).unwrap(),
                Decision::Allow(_)
            ));
        }
        assert!(matches!(
            check(&data, leases, &org, limit(2, 0), 60).unwrap(),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            check(&data, leases, &key, limit(2, 0), 60).unwrap(),
            Decision::Allow(_)
        ));
        assert_eq!(counter(&data, &org).unwrap().granted, 2);
        assert_eq!(counter(&data, &key).unwrap().granted, 1);
    }

    #[test]
    fn a_racing_worker_never_costs_a_count() {
        let data = slots();
        let subject = Subject::Org(ORG);
        let name = slot_name(slot_of(&subject));
        // Another worker counts one request between each of our reads and writes.
        let racing = std::cell::Cell::new(0);
        let race_name = name.clone();
        *data.after_get.borrow_mut() = Some(Box::new(move |d: &FakeSharedData, key: &str| {
            if key == race_name && racing.get() < 10 {
                racing.set(racing.get() + 1);
                let mut other = Leases::default();
                check(d, &mut other, &Subject::Org(ORG), limit(20, 0), 60).unwrap();
            }
        }));
        let ours = allowed(&data, limit(20, 0), 60, 20);
        *data.after_get.borrow_mut() = None;
        assert_eq!(counter(&data, &subject).unwrap().granted, 20);
        assert_eq!(
            ours, 10,
            "10 went to the other worker, none lost, none over"
        );
    }

    #[test]
    fn big_budgets_are_leased_and_never_exceeded() {
        let data = slots();
        let (mut a, mut b) = (Leases::default(), Leases::default());
        let mut writes = 0;
        let mut allowed = 0;
        // Two workers alternate on a 10,000 budget, then keep going past it, giving
        // back their leases on their ticks (every 500 requests here).
        for i in 0..12_000 {
            let leases = if i % 2 == 0 { &mut a } else { &mut b };
            let before = data.writes.get();
            if allowed_now(&data, leases, limit(10_000, 0), 60) {
                allowed += 1;
            }
            writes += data.writes.get() - before;
            if i % 500 == 499 {
                give_back(&data, &mut a, 60);
                give_back(&data, &mut b, 60);
            }
        }
        assert_eq!(allowed, 10_000, "every request of the budget, and no more");
        assert!(
            writes < 2_500,
            "{writes} shared writes: leases save most of them"
        );
    }

    #[test]
    fn a_lease_stranded_on_an_idle_worker_is_waited_for_not_lost() {
        let data = slots();
        let subject = Subject::Org(ORG);
        let (mut idle, mut busy) = (Leases::default(), Leases::default());
        let budget = limit(6_400, 0);
        // The idle worker takes one request, leasing 32, then gets no more requests
        // and its tick is late (a busy machine).
        assert!(allowed_now(&data, &mut idle, budget, 60));
        assert_eq!(counter(&data, &subject).unwrap().outstanding, MAX_LEASE);
        let mut allowed = 1;
        let mut waits = 0;
        for _ in 0..7_000 {
            match check(&data, &mut busy, &subject, budget, 60).unwrap() {
                Decision::Allow(_) => allowed += 1,
                Decision::Wait => waits += 1,
                Decision::Refuse(_) => panic!("refused while a lease was still out"),
            }
        }
        assert_eq!(
            allowed,
            6_400 - 31,
            "the 31 leased requests are not handed out twice"
        );
        assert!(waits > 0);
        // The idle worker's tick finally comes: the 31 go back, and waiting requests
        // get exactly them.
        give_back(&data, &mut idle, 61);
        give_back(&data, &mut busy, 61);
        let mut rest = 0;
        loop {
            match check(&data, &mut busy, &subject, budget, 61).unwrap() {
                Decision::Allow(_) => rest += 1,
                Decision::Wait => give_back(&data, &mut busy, 61),
                Decision::Refuse(_) => break,
            }
        }
        assert_eq!(allowed + rest, 6_400, "exactly the budget");
        assert_eq!(counter(&data, &subject).unwrap().outstanding, 0);
    }

    #[test]
    fn remaining_counts_down_within_a_lease() {
        let data = slots();
        let leases = &mut Leases::default();
        let subject = Subject::Org(ORG);
        let remaining: Vec<u32> = (0..4)
            .map(
                |_| match check(&data, leases, &subject, limit(6_400, 0), 60).unwrap() {
                    Decision::Allow(state) => state.remaining,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(remaining, vec![6_399, 6_398, 6_397, 6_396]);
    }

    #[test]
    fn slots_hold_only_the_current_window() {
        let data = slots();
        // 500 subjects with their own limits, then a minute later one more request.
        for n in 0..500u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_le_bytes());
            let mut leases = Leases::default();
            check(&data, &mut leases, &Subject::Key(Id(id)), limit(5, 0), 60).unwrap();
        }
        let total = |data: &FakeSharedData| -> usize {
            (0..SLOTS)
                .map(|i| data.value(&slot_name(i)).map_or(0, |v| v.len()))
                .sum()
        };
        let busy = total(&data);
        assert!(busy >= 500 * RECORD_LEN);
        for n in 0..500u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_le_bytes());
            let mut leases = Leases::default();
            check(&data, &mut leases, &Subject::Key(Id(id)), limit(5, 0), 120).unwrap();
        }
        assert_eq!(total(&data), busy, "past windows were dropped, not kept");
        assert_eq!(
            data.entries.borrow().len(),
            usize::from(SLOTS),
            "no entry per subject"
        );
    }

    #[test]
    fn without_slots_the_limit_cannot_count() {
        let data = FakeSharedData::default();
        let mut leases = Leases::default();
        assert_eq!(
            check(&data, &mut leases, &Subject::Org(ORG), limit(5, 0), 60),
            Err(LimitError::NoSlot)
        );
        assert!(
            data.entries.borrow().is_empty(),
            "a worker never creates a slot"
        );
    }

    #[test]
    fn ensure_slots_keeps_existing_counts() {
        let data = slots();
        let subject = Subject::Org(ORG);
        check(&data, &mut Leases::default(), &subject, limit(5, 0), 60).unwrap();
        ensure_slots(&data).unwrap();
        assert_eq!(counter(&data, &subject).unwrap().granted, 1);
    }
}
