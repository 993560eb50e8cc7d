//! Monthly quotas in the gateway: what this Envoy may still admit for each organization
//! or key with a quota, shared by all its workers.
//!
//! keysync grants requests in leases (`AcquireQuota`, asked by the sync service: see
//! `quota_sync`); the sync service writes each subject's state into one of [`SLOTS`]
//! bounded shared-data entries, and the list of subjects with a quota into [`LIST`]
//! (workers re-read it when [`REVISION`] changes). A worker admits a request of a
//! subject while the subject's `admitted` count is below what was `granted`, with a
//! compare-and-swap on its slot, so two workers never admit the same unit. When the
//! grant is spent and keysync has not said the quota is exhausted, a small
//! [`credit`] is admitted while the next lease is on its way: the overshoot of the
//! whole fleet is at most one credit per Envoy. Subjects without a quota cost one
//! lookup in an empty set.

use crate::host::{SharedData, WriteError};
use crate::limits::subject_slot;
use keysync_contract::id::Id;
use keysync_contract::subject::Subject;
use std::collections::HashSet;

/// Shared-data entries holding quota states (created by the sync service).
pub const SLOTS: u16 = 512;
/// The subjects with a quota: the list's revision, then kind and id of each.
pub const LIST: &str = "keysync.q.list";
/// The list's revision alone, which workers read on every tick.
pub const REVISION: &str = "keysync.q.rev";

const FORMAT_VERSION: u8 = 1;
const RECORD_LEN: usize = 1 + 16 + 8 * 6 + 1;
const LIST_ENTRY_LEN: usize = 17;

/// Compare-and-swap attempts before a request is refused rather than risk admitting a
/// unit twice.
const MAX_CAS_ATTEMPTS: usize = 64;

pub fn slot_name(index: u16) -> String {
    format!("keysync.q.{index:03x}")
}

/// The slot a subject's state lives in.
pub fn slot_of(subject: &Subject) -> u16 {
    subject_slot::slot_of(subject, SLOTS)
}

/// A subject as keysync's quota messages and this Envoy's records carry it: its kind
/// code and its id's bytes.
pub fn subject_of(kind: u32, id: &[u8]) -> Option<Subject> {
    Subject::from_code(i64::from(kind), Id::from_slice(id)?)
}

/// What a gateway may admit while a claim is on its way once its grant is spent: a
/// thousandth of the quota, at least 1 and at most 100.
pub fn credit(limit: u64) -> u64 {
    (limit / 1000).clamp(1, 100)
}

/// One subject's quota as this Envoy holds it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QuotaRecord {
    pub subject: Subject,
    pub period_start_ms: i64,
    pub resets_at_ms: i64,
    pub limit: u64,
    /// All keysync granted this Envoy in the period.
    pub granted: u64,
    /// Requests admitted in the period, all workers.
    pub admitted: u64,
    /// Requests refused in the period: demand the sync service asks keysync about.
    pub refused: u64,
    /// keysync had nothing left to grant at the last claim.
    pub exhausted: bool,
}

impl QuotaRecord {
    pub fn new(subject: Subject) -> QuotaRecord {
        QuotaRecord {
            subject,
            period_start_ms: 0,
            resets_at_ms: 0,
            limit: 0,
            granted: 0,
            admitted: 0,
            refused: 0,
            exhausted: false,
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.subject.code());
        out.extend_from_slice(&self.subject.id().0);
        for value in [
            self.period_start_ms.to_le_bytes(),
            self.resets_at_ms.to_le_bytes(),
            self.limit.to_le_bytes(),
            self.granted.to_le_bytes(),
            self.admitted.to_le_bytes(),
            self.refused.to_le_bytes(),
        ] {
            out.extend_from_slice(&value);
        }
        out.push(u8::from(self.exhausted));
    }

    fn decode(bytes: &[u8]) -> Option<QuotaRecord> {
        let (kind, rest) = bytes.split_first()?;
        let subject = subject_of(u32::from(*kind), rest.get(..16)?)?;
        let word =
            |n: usize| -> Option<[u8; 8]> { rest.get(16 + n * 8..24 + n * 8)?.try_into().ok() };
        Some(QuotaRecord {
            subject,
            period_start_ms: i64::from_le_bytes(word(0)?),
            resets_at_ms: i64::from_le_bytes(word(1)?),
            limit: u64::from_le_bytes(word(2)?),
            granted: u64::from_le_bytes(word(3)?),
            admitted: u64::from_le_bytes(word(4)?),
            refused: u64::from_le_bytes(word(5)?),
            exhausted: *rest.get(64)? != 0,
        })
    }
}

/// A slot's records; an unreadable entry reads as empty (it is rewritten whole).
pub fn decode_slot(bytes: &[u8]) -> Vec<QuotaRecord> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, records)) if records.len() % RECORD_LEN == 0 => records
            .chunks_exact(RECORD_LEN)
            .filter_map(QuotaRecord::decode)
            .collect(),
        _ => Vec::new(),
    }
}

pub fn encode_slot(records: &[QuotaRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + RECORD_LEN * records.len());
    out.push(FORMAT_VERSION);
    for record in records {
        record.encode_into(&mut out);
    }
    out
}

/// The list of subjects with a quota.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct QuotaList {
    pub revision: u64,
    pub subjects: HashSet<Subject>,
}

impl QuotaList {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + LIST_ENTRY_LEN * self.subjects.len());
        out.extend_from_slice(&self.revision.to_le_bytes());
        for subject in &self.subjects {
            out.push(subject.code());
            out.extend_from_slice(&subject.id().0);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<QuotaList> {
        let revision = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let entries = bytes.get(8..)?;
        if entries.len() % LIST_ENTRY_LEN != 0 {
            return None;
        }
        let subjects = entries
            .chunks_exact(LIST_ENTRY_LEN)
            .filter_map(|entry| {
                let (kind, id) = entry.split_first()?;
                subject_of(u32::from(*kind), id)
            })
            .collect();
        Some(QuotaList { revision, subjects })
    }
}

/// Why a request is refused: what the 429 says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Refusal {
    pub limit: u64,
    /// Seconds until the period resets (at least 1).
    pub reset_secs: u64,
    /// Seconds the client should wait: the reset, or 1 while a lease may still come.
    pub retry_after_secs: u64,
    /// The period's length in seconds (the policy's window).
    pub window_secs: u64,
    /// keysync has not said the quota is exhausted: the next lease may be on its way.
    pub pending: bool,
}

/// What one request does to a subject's record.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Take {
    Admit,
    Refuse(Refusal),
}

/// Admits one request against `record`, or refuses it. Pure: the caller writes the
/// changed record back.
pub fn take(record: &mut QuotaRecord, now_ms: u64) -> Take {
    let now_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
    // A period keysync has not confirmed yet (never claimed, or past its reset while
    // the next claim is on its way): admitted on credit only.
    let current = record.limit > 0 && now_ms < record.resets_at_ms;
    let credit = credit(record.limit);
    let allowed = if !current {
        record.granted.saturating_add(credit)
    } else if record.exhausted {
        record.granted
    } else {
        record.granted.saturating_add(credit)
    };
    if record.admitted < allowed {
        record.admitted += 1;
        return Take::Admit;
    }
    record.refused = record.refused.saturating_add(1);
    let pending = !current || !record.exhausted;
    let reset_ms = u64::try_from(record.resets_at_ms.saturating_sub(now_ms)).unwrap_or(0);
    let reset_secs = reset_ms.div_ceil(1000).max(1);
    let window_ms = record.resets_at_ms.saturating_sub(record.period_start_ms);
    Take::Refuse(Refusal {
        limit: record.limit,
        reset_secs,
        retry_after_secs: if pending { 1 } else { reset_secs },
        window_secs: u64::try_from(window_ms / 1000).unwrap_or(0),
        pending,
    })
}

#[derive(Debug, PartialEq, Eq)]
pub enum QuotaError {
    /// The state kept changing under compare-and-swap: refused to stay exact.
    Contended,
    NoSlot,
    Host(u32),
}

/// One request of `subject`, against its state in shared data. A subject the list names
/// but the sync service has not written yet is admitted on credit like any other.
pub fn check<S: SharedData>(data: &S, subject: &Subject, now_ms: u64) -> Result<Take, QuotaError> {
    update(data, subject, |record| take(record, now_ms))
}

/// Reads `subject`'s slot, applies `change` to its record (created when absent) and
/// writes the slot back with compare-and-swap, again from the read when another writer
/// came first (the sync service writes while workers admit); returns what `change`
/// returned for the write that landed.
pub fn update<S: SharedData, T>(
    data: &S,
    subject: &Subject,
    change: impl Fn(&mut QuotaRecord) -> T,
) -> Result<T, QuotaError> {
    let name = slot_name(slot_of(subject));
    for _ in 0..MAX_CAS_ATTEMPTS {
        let entry = data.get(&name);
        let Some(bytes) = entry.value.as_deref() else {
            return Err(QuotaError::NoSlot);
        };
        let mut records = decode_slot(bytes);
        let changed = match records.iter_mut().find(|r| r.subject == *subject) {
            Some(record) => change(record),
            None => {
                let mut record = QuotaRecord::new(*subject);
                let changed = change(&mut record);
                records.push(record);
                changed
            }
        };
        match data.set(&name, &encode_slot(&records), entry.cas) {
            Ok(()) => return Ok(changed),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host(status)) => return Err(QuotaError::Host(status)),
        }
    }
    Err(QuotaError::Contended)
}

/// Drops the records of subjects that have no quota any more from every slot.
pub fn retain<S: SharedData>(data: &S, keep: &HashSet<Subject>) -> Result<(), QuotaError> {
    for index in 0..SLOTS {
        let name = slot_name(index);
        for attempt in 0..=MAX_CAS_ATTEMPTS {
            if attempt == MAX_CAS_ATTEMPTS {
                return Err(QuotaError::Contended);
            }
            let entry = data.get(&name);
            let Some(bytes) = entry.value.as_deref() else {
                return Err(QuotaError::NoSlot);
            };
            let records = decode_slot(bytes);
            if records.iter().all(|r| keep.contains(&r.subject)) {
                break;
            }
            let kept: Vec<QuotaRecord> = records
                .into_iter()
                .filter(|r| keep.contains(&r.subject))
                .collect();
            match data.set(&name, &encode_slot(&kept), entry.cas) {
                Ok(()) => break,
                Err(WriteError::CasMismatch) => continue,
                Err(WriteError::Host(status)) => return Err(QuotaError::Host(status)),
            }
        }
    }
    Ok(())
}

/// Sync service: creates every slot and an empty list that do not exist yet.
pub fn ensure_slots<S: SharedData>(data: &S) -> Result<(), WriteError> {
    for index in 0..SLOTS {
        let name = slot_name(index);
        if data.get(&name).value.is_none() {
            data.set(&name, &[FORMAT_VERSION], 0)?;
        }
    }
    if data.get(LIST).value.is_none() {
        data.set(LIST, &QuotaList::default().encode(), 0)?;
        data.set(REVISION, &0u64.to_le_bytes(), 0)?;
    }
    Ok(())
}

/// What a worker knows of the list: read again when the revision moves.
#[derive(Default)]
pub struct QuotaView {
    revision: Option<u64>,
    subjects: HashSet<Subject>,
}

impl QuotaView {
    /// On the worker's tick: one read of the revision, the list only when it moved.
    pub fn refresh<S: SharedData>(&mut self, data: &S) {
        let revision = data
            .get(REVISION)
            .value
            .and_then(|bytes| Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)));
        if revision.is_none() || revision == self.revision {
            return;
        }
        if let Some(list) = data.get(LIST).value.as_deref().and_then(QuotaList::decode) {
            self.revision = Some(list.revision);
            self.subjects = list.subjects;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    pub fn contains(&self, subject: &Subject) -> bool {
        self.subjects.contains(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_shared_data::FakeSharedData;

    const NOW: u64 = 1_000_000;

    fn org(n: u8) -> Subject {
        Subject::Org(Id([n; 16]))
    }

    fn granted(subject: Subject, limit: u64, granted: u64, exhausted: bool) -> QuotaRecord {
        QuotaRecord {
            period_start_ms: 0,
            resets_at_ms: 2_000_000,
            limit,
            granted,
            exhausted,
            ..QuotaRecord::new(subject)
        }
    }

    fn slots() -> FakeSharedData {
        let data = FakeSharedData::default();
        ensure_slots(&data).unwrap();
        data
    }

    #[test]
    fn records_and_lists_round_trip() {
        let record = QuotaRecord {
            admitted: 7,
            refused: 3,
            ..granted(Subject::Key(Id([9; 16])), 10_000, 500, true)
        };
        assert_eq!(
            decode_slot(&encode_slot(&[record, record])),
            [record, record]
        );
        assert!(decode_slot(&[FORMAT_VERSION, 1, 2]).is_empty());
        let list = QuotaList {
            revision: 42,
            subjects: [org(1), Subject::Key(Id([2; 16]))].into_iter().collect(),
        };
        assert_eq!(QuotaList::decode(&list.encode()), Some(list));
        assert_eq!(QuotaList::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn a_grant_is_admitted_exactly_then_credit_while_a_lease_may_come() {
        let mut record = granted(org(1), 10_000, 3, false);
        for _ in 0..3 {
            assert_eq!(take(&mut record, NOW), Take::Admit);
        }
        // Credit: 10 (a thousandth of 10,000).
        for _ in 0..10 {
            assert_eq!(take(&mut record, NOW), Take::Admit);
        }
        let Take::Refuse(refusal) = take(&mut record, NOW) else {
            panic!("credit spent")
        };
        assert_eq!(refusal.retry_after_secs, 1, "a lease may still come");
        assert_eq!(refusal.limit, 10_000);
        assert_eq!((record.admitted, record.refused), (13, 1));
    }

    #[test]
    fn exhausted_means_no_credit_and_retry_at_the_reset() {
        let mut record = granted(org(1), 10_000, 2, true);
        assert_eq!(take(&mut record, NOW), Take::Admit);
        assert_eq!(take(&mut record, NOW), Take::Admit);
        assert_eq!(
            take(&mut record, NOW),
            Take::Refuse(Refusal {
                limit: 10_000,
                reset_secs: 1_000,
                retry_after_secs: 1_000,
                window_secs: 2_000,
                pending: false,
            })
        );
        // Past the reset, before the sync service has the new period: credit only.
        let later = 2_000_000;
        for _ in 0..10 {
            assert_eq!(take(&mut record, later), Take::Admit);
        }
        assert!(matches!(take(&mut record, later), Take::Refuse(_)));
    }

    #[test]
    fn workers_share_one_count_through_compare_and_swap() {
        let data = slots();
        update(&data, &org(1), |r| *r = granted(org(1), 1_000, 50, true)).unwrap();
        // Another worker admits between every read and write.
        let racing = std::cell::Cell::new(0);
        *data.after_get.borrow_mut() = Some(Box::new(move |data: &FakeSharedData, key: &str| {
            if key.starts_with("keysync.q.") && racing.get() < 20 {
                racing.set(racing.get() + 1);
                let entry = data.get(key);
                let mut records = decode_slot(entry.value.as_deref().unwrap());
                if let Some(record) = records.first_mut() {
                    let _ = take(record, NOW);
                }
                data.set(key, &encode_slot(&records), entry.cas).unwrap();
            }
        }));
        let mut admitted = 0;
        for _ in 0..100 {
            if check(&data, &org(1), NOW) == Ok(Take::Admit) {
                admitted += 1;
            }
        }
        *data.after_get.borrow_mut() = None;
        let record = decode_slot(&data.value(&slot_name(slot_of(&org(1)))).unwrap())[0];
        assert_eq!(record.admitted, 50, "never more than granted");
        assert_eq!(admitted, 30, "20 went to the other worker, none twice");
    }

    #[test]
    fn subjects_share_slots_without_sharing_counts_and_retain_drops_the_cleared() {
        let data = slots();
        for n in 0..=255u8 {
            update(&data, &org(n), |r| *r = granted(org(n), 100, 1, true)).unwrap();
        }
        for n in 0..=255u8 {
            assert_eq!(check(&data, &org(n), NOW), Ok(Take::Admit));
            assert!(matches!(check(&data, &org(n), NOW), Ok(Take::Refuse(_))));
        }
        let keep: HashSet<Subject> = (0..10).map(org).collect();
        retain(&data, &keep).unwrap();
        let left: usize = (0..SLOTS)
            .map(|i| decode_slot(&data.value(&slot_name(i)).unwrap()).len())
            .sum();
        assert_eq!(left, 10);
    }

    #[test]
    fn the_view_reads_the_list_only_when_its_revision_moves() {
        let data = slots();
        let mut view = QuotaView::default();
        view.refresh(&data);
        assert!(view.is_empty());
        let list = QuotaList {
            revision: 5,
            subjects: [org(3)].into_iter().collect(),
        };
        data.put(LIST, &list.encode());
        view.refresh(&data);
        assert!(view.is_empty(), "the revision did not move");
        data.put(REVISION, &5u64.to_le_bytes());
        view.refresh(&data);
        assert!(view.contains(&org(3)));
        assert_eq!(credit(5), 1);
        assert_eq!(credit(10_000_000), 100);
    }
}
