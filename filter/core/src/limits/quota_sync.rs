//! The sync service's half of quotas: it asks keysync (`AcquireQuota`) for the list of
//! subjects with a quota and for leases, and writes what comes back into shared data,
//! where the workers admit against it (see `quota`).
//!
//! On every tick it reads the states of the subjects it knows and claims more for those
//! with demand whose grant is running low (less than half of what it expects to need,
//! which is two seconds at the rate seen since the last tick, at least [`MIN_WANT`]);
//! for an exhausted one it asks again at most once a second while requests are being
//! refused, since a lease another gateway left idle may have been released or the
//! quota raised. With no claim to make it still calls every [`LIST_POLL`] to learn of
//! quotas set, changed or cleared. One call at a time; a failed call is simply made
//! again on a later tick.

use crate::host::Host;
use crate::keysync_api::{self, Reply};
use crate::limits::quota::{self, QuotaList, QuotaRecord};
use crate::stats::Stat;
use crate::steady_clock::millis;
use keysync_contract::subject::Subject;
use keysync_proto::v1 as proto;
use log::{info, warn};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// The smallest claim.
pub const MIN_WANT: u64 = 16;
/// How often the list of quotas is asked for when no claim is due: keysync answers
/// such a poll from its memory (it reads the list's revision once a second), so a quota
/// set, changed or cleared reaches every Envoy within about two seconds.
pub const LIST_POLL: Duration = Duration::from_secs(1);
/// Claims per call.
const MAX_CLAIMS_PER_CALL: usize = 1_000;
/// An exhausted subject is claimed again at most this often while refused.
const EXHAUSTED_RETRY_MS: u64 = 1_000;

pub struct QuotaSync {
    instance_id: [u8; 16],
    timeout: Duration,
    known_revision: u64,
    subjects: HashSet<Subject>,
    demand: HashMap<Subject, Demand>,
    in_flight: Option<InFlight>,
    next_poll_ms: u64,
    last_tick_ms: u64,
    stats: QuotaStats,
}

/// The sync service's quota stats: calls answered, calls failed, and the revision of
/// the list this Envoy holds.
#[derive(Clone, Copy)]
pub struct QuotaStats {
    pub ok: Stat,
    pub failed: Stat,
    pub revision: Stat,
}

/// What the sync service remembers of a subject between ticks.
#[derive(Default, Clone, Copy)]
struct Demand {
    admitted: u64,
    refused: u64,
    /// Requests a second, as last seen.
    rate: u64,
    last_claim_ms: u64,
}

struct InFlight {
    token: u32,
    sent_at_ms: u64,
    claimed: HashSet<Subject>,
}

impl QuotaSync {
    /// Makes sure the slots and the list exist. Quotas are reconciled with usage
    /// flushes, so they need metering's instance id.
    pub fn start<H: Host>(
        host: &H,
        instance_id: [u8; 16],
        timeout: Duration,
        now_ms: u64,
        stats: QuotaStats,
    ) -> Option<QuotaSync> {
        if let Err(e) = quota::ensure_slots(host) {
            warn!("cannot create the quota states: {e:?}; quotas are not enforced");
            return None;
        }
        // What an earlier VM of this instance learnt stays valid.
        let list = host
            .get(quota::LIST)
            .value
            .as_deref()
            .and_then(QuotaList::decode)
            .unwrap_or_default();
        Some(QuotaSync {
            instance_id,
            timeout,
            known_revision: list.revision,
            subjects: list.subjects,
            demand: HashMap::new(),
            in_flight: None,
            next_poll_ms: now_ms,
            last_tick_ms: now_ms,
            stats,
        })
    }

    pub fn owns(&self, token: u32) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.token == token)
    }

    pub fn stop<H: Host>(&mut self, host: &H) {
        if let Some(in_flight) = self.in_flight.take() {
            host.cancel_grpc(in_flight.token);
        }
    }

    pub fn on_tick<H: Host>(&mut self, host: &H, cluster: &str, now_ms: u64, wall_ms: u64) {
        if let Some(in_flight) = &self.in_flight {
            let deadline = millis(self.timeout).saturating_mul(2);
            if now_ms.saturating_sub(in_flight.sent_at_ms) > deadline {
                host.cancel_grpc(in_flight.token);
                self.in_flight = None;
                self.stats.failed.add(host, 1);
            }
            return;
        }
        let elapsed_ms = now_ms.saturating_sub(self.last_tick_ms).max(1);
        self.last_tick_ms = now_ms;
        let claims = self.claims(host, now_ms, wall_ms, elapsed_ms);
        if claims.is_empty() && now_ms < self.next_poll_ms {
            return;
        }
        let claimed: HashSet<Subject> = claims.iter().map(|(subject, _)| *subject).collect();
        let request = proto::AcquireQuotaRequest {
            instance_id: self.instance_id.to_vec(),
            known_revision: self.known_revision,
            claims: claims
                .iter()
                .map(|(subject, want)| proto::QuotaClaim {
                    subject_kind: u32::from(subject.code()),
                    subject_id: subject.id().0.to_vec(),
                    want: *want,
                })
                .collect(),
        };
        match keysync_api::dispatch(
            host,
            cluster,
            keysync_api::ACQUIRE_QUOTA,
            &request,
            self.timeout,
        ) {
            Ok(token) => {
                for subject in &claimed {
                    if let Some(demand) = self.demand.get_mut(subject) {
                        demand.last_claim_ms = now_ms;
                    }
                }
                self.in_flight = Some(InFlight {
                    token,
                    sent_at_ms: now_ms,
                    claimed,
                });
                self.next_poll_ms = now_ms.saturating_add(millis(LIST_POLL));
            }
            Err(e) => {
                self.stats.failed.add(host, 1);
                warn!("quota claim not sent: {e}");
            }
        }
    }

    /// The subjects to claim for now, and how much each.
    fn claims<H: Host>(
        &mut self,
        host: &H,
        now_ms: u64,
        wall_ms: u64,
        elapsed_ms: u64,
    ) -> Vec<(Subject, u64)> {
        let slots: BTreeSet<u16> = self.subjects.iter().map(quota::slot_of).collect();
        let mut claims = Vec::new();
        for slot in slots {
            let value = host.get(&quota::slot_name(slot)).value;
            for record in value.as_deref().map(quota::decode_slot).unwrap_or_default() {
                if !self.subjects.contains(&record.subject) {
                    continue;
                }
                let demand = self.demand.entry(record.subject).or_default();
                if let Some(want) = want(&record, demand, now_ms, wall_ms, elapsed_ms) {
                    if claims.len() < MAX_CLAIMS_PER_CALL {
                        claims.push((record.subject, want));
                    }
                }
            }
        }
        claims
    }

    pub fn on_response<H: Host>(&mut self, host: &H, token: u32, reply: Reply) {
        let Some(in_flight) = self.in_flight.take_if(|f| f.token == token) else {
            return;
        };
        let answer = match keysync_api::decode::<proto::AcquireQuotaResponse>(reply) {
            Ok(answer) => answer,
            Err(e) => {
                self.stats.failed.add(host, 1);
                warn!("quota claim failed: {e}; claimed again on a later tick");
                return;
            }
        };
        self.stats.ok.add(host, 1);
        if answer.full_list {
            self.replace_list(host, &answer);
        }
        for state in &answer.quotas {
            let Some(subject) = quota::subject_of(state.subject_kind, &state.subject_id) else {
                continue;
            };
            if state.monthly_limit == 0 {
                continue;
            }
            let claimed = in_flight.claimed.contains(&subject);
            let written = quota::update(host, &subject, |record| {
                apply(record, state, claimed);
            });
            if let Err(e) = written {
                warn!("cannot write a quota state: {e:?}");
            }
        }
    }

    /// keysync sent every subject with a quota: the list and the states follow it.
    fn replace_list<H: Host>(&mut self, host: &H, answer: &proto::AcquireQuotaResponse) {
        let subjects: HashSet<Subject> = answer
            .quotas
            .iter()
            .filter(|state| state.monthly_limit > 0)
            .filter_map(|state| quota::subject_of(state.subject_kind, &state.subject_id))
            .collect();
        if let Err(e) = quota::retain(host, &subjects) {
            warn!("cannot drop cleared quota states: {e:?}");
        }
        let list = QuotaList {
            revision: answer.revision,
            subjects,
        };
        // The list first, then its revision: a worker that sees the new revision reads
        // the new list.
        let written = host
            .set(quota::LIST, &list.encode(), 0)
            .and_then(|()| host.set(quota::REVISION, &answer.revision.to_le_bytes(), 0));
        if let Err(e) = written {
            warn!("cannot write the list of quotas: {e:?}");
            return;
        }
        if list.revision != self.known_revision {
            info!(
                "quotas: {} organizations and keys with a monthly quota (revision {})",
                list.subjects.len(),
                list.revision
            );
        }
        self.demand
            .retain(|subject, _| list.subjects.contains(subject));
        self.stats.revision.record(host, list.revision);
        self.known_revision = list.revision;
        self.subjects = list.subjects;
    }
}

/// Whether `record` needs a claim now, and for how much. Updates what is remembered.
fn want(
    record: &QuotaRecord,
    demand: &mut Demand,
    now_ms: u64,
    wall_ms: u64,
    elapsed_ms: u64,
) -> Option<u64> {
    // A new period (the states were reset) reads as fewer admitted than before.
    let admitted = record.admitted.saturating_sub(demand.admitted);
    let refused = record.refused.saturating_sub(demand.refused);
    let rate = (admitted + refused).saturating_mul(1000) / elapsed_ms;
    // Falls slowly, rises at once: a burst is met, a lull does not starve the next one.
    demand.rate = rate.max(demand.rate / 2);
    demand.admitted = record.admitted;
    demand.refused = record.refused;
    let want = demand.rate.saturating_mul(2).max(MIN_WANT);
    let wall = i64::try_from(wall_ms).unwrap_or(i64::MAX);
    let used_at_all = record.admitted > 0 || record.refused > 0;
    if !used_at_all {
        return None;
    }
    // Never claimed in this period, or its period is over: keysync says which it is.
    if record.limit == 0 || wall >= record.resets_at_ms {
        return Some(want);
    }
    if record.exhausted {
        let again =
            refused > 0 && now_ms.saturating_sub(demand.last_claim_ms) >= EXHAUSTED_RETRY_MS;
        return again.then_some(want);
    }
    let left = record.granted.saturating_sub(record.admitted);
    (left < want / 2).then_some(want)
}

/// keysync's answer for a subject into its record. A new period starts the counts
/// again; within a period a grant only grows (answers may arrive out of order with
/// a worker's writes, never with each other: one call at a time).
fn apply(record: &mut QuotaRecord, state: &proto::QuotaState, claimed: bool) {
    if record.period_start_ms != state.period_start_ms {
        record.period_start_ms = state.period_start_ms;
        record.admitted = 0;
        record.refused = 0;
        record.granted = state.granted;
        record.exhausted = false;
    } else {
        record.granted = record.granted.max(state.granted);
    }
    if record.limit != state.monthly_limit {
        // A changed quota (raised, say): whether it is exhausted is for the next claim.
        record.exhausted = false;
    }
    record.resets_at_ms = state.resets_at_ms;
    record.limit = state.monthly_limit;
    if claimed {
        record.exhausted = state.exhausted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysync_contract::id::Id;

    fn record(granted: u64, admitted: u64) -> QuotaRecord {
        QuotaRecord {
            limit: 10_000,
            period_start_ms: 0,
            resets_at_ms: 10_000_000,
            granted,
            admitted,
            ..QuotaRecord::new(Subject::Org(Id([1; 16])))
        }
    }

    use crate::host::fake_host::FakeHost;
    use crate::host::{MetricKind, SharedData};

    const ORG: Subject = Subject::Org(Id([1; 16]));

    fn started(host: &FakeHost) -> QuotaSync {
        let stats = QuotaStats {
            ok: Stat::define(host, MetricKind::Counter, "ok"),
            failed: Stat::define(host, MetricKind::Counter, "failed"),
            revision: Stat::define(host, MetricKind::Gauge, "revision"),
        };
        QuotaSync::start(host, [7; 16], Duration::from_secs(1), 0, stats).unwrap()
    }

    fn answer(host: &FakeHost, sync: &mut QuotaSync, response: proto::AcquireQuotaResponse) {
        let call = host.last_call().unwrap();
        assert_eq!(call.method, keysync_api::ACQUIRE_QUOTA);
        sync.on_response(
            host,
            call.token,
            Ok(prost::Message::encode_to_vec(&response)),
        );
    }

    fn org_state(granted: u64, exhausted: bool) -> proto::QuotaState {
        proto::QuotaState {
            subject_kind: 1,
            subject_id: vec![1; 16],
            monthly_limit: 1_000,
            period_start_ms: 0,
            resets_at_ms: 10_000_000,
            granted,
            exhausted,
        }
    }

    fn held(host: &FakeHost) -> Option<QuotaRecord> {
        let slot = host.get(&quota::slot_name(quota::slot_of(&ORG))).value?;
        quota::decode_slot(&slot)
            .into_iter()
            .find(|r| r.subject == ORG)
    }

    #[test]
    fn the_list_is_asked_for_first_then_leases_follow_demand() {
        let host = FakeHost::default();
        let mut sync = started(&host);
        sync.on_tick(&host, "keysync", 0, 0);
        let asked: proto::AcquireQuotaRequest = host.last_call().unwrap().decode();
        assert_eq!((asked.known_revision, asked.claims.len()), (0, 0));
        assert_eq!(asked.instance_id, vec![7; 16]);
        answer(
            &host,
            &mut sync,
            proto::AcquireQuotaResponse {
                revision: 3,
                full_list: true,
                quotas: vec![org_state(0, false)],
            },
        );
        let list = QuotaList::decode(&host.get(quota::LIST).value.unwrap()).unwrap();
        assert_eq!(list.revision, 3);
        assert!(list.subjects.contains(&ORG));
        assert_eq!(held(&host).unwrap().limit, 1_000);

        // No demand: no claim (and no call before the list poll is due).
        let calls = host.calls.borrow().len();
        sync.on_tick(&host, "keysync", 250, 250);
        assert_eq!(host.calls.borrow().len(), calls);
        // A worker admitted one on credit: claimed at the next tick.
        assert_eq!(quota::check(&host, &ORG, 300), Ok(quota::Take::Admit));
        sync.on_tick(&host, "keysync", 500, 500);
        let asked: proto::AcquireQuotaRequest = host.last_call().unwrap().decode();
        assert_eq!(asked.known_revision, 3);
        assert_eq!(asked.claims.len(), 1);
        assert_eq!(asked.claims[0].want, MIN_WANT);
        answer(
            &host,
            &mut sync,
            proto::AcquireQuotaResponse {
                revision: 3,
                full_list: false,
                quotas: vec![org_state(16, false)],
            },
        );
        let record = held(&host).unwrap();
        assert_eq!((record.granted, record.admitted), (16, 1));

        // Cleared: the next full list leaves it out, and its state goes.
        sync.on_tick(&host, "keysync", 6_000, 6_000);
        answer(
            &host,
            &mut sync,
            proto::AcquireQuotaResponse {
                revision: 4,
                full_list: true,
                quotas: vec![],
            },
        );
        assert!(held(&host).is_none());
        let list = QuotaList::decode(&host.get(quota::LIST).value.unwrap()).unwrap();
        assert!(list.subjects.is_empty());
    }

    #[test]
    fn claims_ahead_of_demand_and_not_without_it() {
        let mut demand = Demand::default();
        assert_eq!(
            want(&record(0, 0), &mut demand, 0, 0, 250),
            None,
            "no demand"
        );
        // 100 admitted in 250 ms: 400/s, so two seconds' worth is wanted.
        assert_eq!(want(&record(1_000, 100), &mut demand, 250, 250, 250), None);
        assert_eq!(demand.rate, 400);
        assert_eq!(
            want(&record(1_000, 700), &mut demand, 500, 500, 250),
            Some(4_800),
            "600 more in 250 ms: 2,400/s, and only 300 left"
        );
    }

    #[test]
    fn exhausted_subjects_are_asked_again_only_while_refused_and_once_a_second() {
        let mut demand = Demand::default();
        let mut exhausted = record(100, 100);
        exhausted.exhausted = true;
        assert_eq!(want(&exhausted, &mut demand, 0, 0, 250), None, "no refusal");
        exhausted.refused = 5;
        assert!(want(&exhausted, &mut demand, 1_000, 1_000, 250).is_some());
        demand.last_claim_ms = 1_000;
        exhausted.refused = 9;
        assert_eq!(want(&exhausted, &mut demand, 1_500, 1_500, 250), None);
        exhausted.refused = 12;
        assert!(want(&exhausted, &mut demand, 2_000, 2_000, 250).is_some());
        // Past the reset: claimed for the new period whatever it said.
        exhausted.refused = 12;
        assert!(want(&exhausted, &mut demand, 2_100, 10_000_000, 250).is_some());
    }

    #[test]
    fn a_new_period_starts_again_and_grants_only_grow_within_one() {
        let mut held = record(500, 480);
        held.refused = 3;
        let state = proto::QuotaState {
            subject_kind: 1,
            subject_id: vec![1; 16],
            monthly_limit: 10_000,
            period_start_ms: 0,
            resets_at_ms: 10_000_000,
            granted: 400,
            exhausted: true,
        };
        apply(&mut held, &state, false);
        assert_eq!(
            (held.granted, held.admitted, held.exhausted),
            (500, 480, false)
        );
        apply(&mut held, &state, true);
        assert!(held.exhausted, "a claim's answer says it");
        let raised = proto::QuotaState {
            monthly_limit: 20_000,
            ..state.clone()
        };
        apply(&mut held, &raised, false);
        assert!(!held.exhausted, "a raised quota is claimed again");
        let next = proto::QuotaState {
            period_start_ms: 10_000_000,
            resets_at_ms: 20_000_000,
            granted: 16,
            exhausted: false,
            ..state
        };
        apply(&mut held, &next, true);
        assert_eq!(
            (held.granted, held.admitted, held.refused, held.resets_at_ms),
            (16, 0, 0, 20_000_000)
        );
    }
}
