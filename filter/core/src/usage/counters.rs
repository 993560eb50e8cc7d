//! The usage counters: what each recognized key's requests came to, counted by (org,
//! key, endpoint, outcome), and the requests no key accounts for.
//!
//! Counting is in three steps, so that a request costs no host call for it:
//! 1. the request adds itself to its worker's [`Tally`], a map in the VM's own memory;
//! 2. the worker's tick ([`merge`]) adds the tally into shared data: [`SLOTS`] entries
//!    `keysync.u.<slot>` each holding the cumulative counters that hash to it (by key
//!    and endpoint; at most [`SLOT_CAPACITY`]), plus one `keysync.u.totals` entry for
//!    the per-Envoy totals. A counter names its endpoint by its code in the endpoint
//!    table (`usage::endpoints`), which the same tick first adds the worker's new route
//!    names to. Every write is a compare-and-swap on an entry the sync service
//!    created, so two workers never lose a count between them. A counter that finds its
//!    slot full is not counted: its requests are added to `dropped` instead, which is
//!    how the space stays bounded (shared data never frees an entry);
//! 3. the sync service reads the slots and reports them to keysync (`usage::flush`).
//!
//! The counters are cumulative for the life of the Envoy process (its `instance_id`, in
//! `keysync.u.meta`, kept across VM reloads: see `usage::metering`), so keysync takes
//! differences and a repeated report adds nothing.

use crate::host::{SharedData, WriteError};
use crate::usage::endpoints::{self, EndpointCode, LocalEndpoint, LocalEndpoints, Resolved};
use keysync_contract::id::Id;
use keysync_contract::usage_endpoint::DEFAULT_MAX_ENDPOINTS;
use keysync_contract::usage_outcome::Outcome;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

/// Shared-data entries holding counters (created by the sync service).
pub const SLOTS: u16 = 2048;
/// Counters a slot holds at most: [`SLOTS`] x this = 131,072 counters, about 12.7 MB of
/// shared data when every slot is full. Keys hash unevenly, so the first drops come
/// before that, at about two thirds of it.
pub const SLOT_CAPACITY: usize = 64;
/// Distinct counters a worker keeps between two ticks (250 ms); requests of further
/// counters are dropped. Bounds the worker's memory whatever the traffic.
pub const TALLY_CAPACITY: usize = 16_384;

/// Compare-and-swap attempts per entry and tick before the deltas wait for the next tick.
const MAX_CAS_ATTEMPTS: usize = 16;

/// Slots written since endpoints are counted: each record names its endpoint.
const SLOT_FORMAT: u8 = 2;
/// Slots of a filter from before endpoints (an older VM of the same Envoy process):
/// read as the endpoint `-`, written again in the current format.
const SLOT_FORMAT_V1: u8 = 1;
const TOTALS_FORMAT: u8 = 1;
const VALUES_LEN: usize = 8 + 8 + 8 * BUCKETS + 8 + 8;
const RECORD_LEN_V1: usize = 16 + 16 + 1 + VALUES_LEN;
const RECORD_LEN: usize = 16 + 16 + 1 + 2 + VALUES_LEN;

pub const TOTALS_ENTRY: &str = "keysync.u.totals";

/// Duration buckets: at most 10 ms, 100 ms, 1 s, more.
pub const BUCKETS: usize = 4;
const BUCKET_BOUNDS_US: [u64; BUCKETS - 1] = [10_000, 100_000, 1_000_000];

/// Which counter a request goes to. In shared data its endpoint is a code of the
/// endpoint table; in a worker's tally, possibly a name not in that table yet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct UsageKey<E = EndpointCode> {
    pub org: Id,
    pub key: Id,
    pub endpoint: E,
    pub outcome: Outcome,
}

impl<E> UsageKey<E> {
    fn with_endpoint<F>(self, endpoint: F) -> UsageKey<F> {
        UsageKey {
            org: self.org,
            key: self.key,
            endpoint,
            outcome: self.outcome,
        }
    }
}

/// One counter's values (cumulative in shared data, deltas in a worker's tally).
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Counts {
    pub requests: u64,
    pub duration_us: u64,
    pub buckets: [u64; BUCKETS],
    pub request_bytes: u64,
    pub response_bytes: u64,
}

impl Counts {
    /// One request. `duration_us` is `None` when it was not timed (the gateway answered
    /// it itself, no response headers came, or it was not in the sample): it is then in
    /// no bucket, so that the buckets count the timed requests and `duration_us` over
    /// their total is the mean.
    pub fn one(duration_us: Option<u64>, request_bytes: u64, response_bytes: u64) -> Self {
        let mut buckets = [0; BUCKETS];
        if let Some(duration_us) = duration_us {
            let bucket = BUCKET_BOUNDS_US
                .iter()
                .position(|bound| duration_us <= *bound)
                .unwrap_or(BUCKETS - 1);
            if let Some(b) = buckets.get_mut(bucket) {
                *b = 1;
            }
        }
        Counts {
            requests: 1,
            duration_us: duration_us.unwrap_or(0),
            buckets,
            request_bytes,
            response_bytes,
        }
    }

    pub fn add(&mut self, other: &Counts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.duration_us = self.duration_us.saturating_add(other.duration_us);
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine = mine.saturating_add(theirs);
        }
        self.request_bytes = self.request_bytes.saturating_add(other.request_bytes);
        self.response_bytes = self.response_bytes.saturating_add(other.response_bytes);
    }
}

/// Hashes usage keys for a worker's tally: a multiply-rotate over 8-byte words, a
/// fraction of the default SipHash's cost on every counted request. Safe here because
/// the ids are keysync's random UUIDs, which no client chooses.
#[derive(Default)]
pub struct IdHasher(u64);

impl IdHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        for byte in chunks.remainder() {
            self.mix(u64::from(*byte));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.mix(u64::from(value));
    }

    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What a worker counted since its last tick: in the VM's memory, no host call.
#[derive(Debug)]
pub struct Tally {
    pub counters: HashMap<UsageKey<LocalEndpoint>, Counts, BuildHasherDefault<IdHasher>>,
    pub unattributed: u64,
    pub dropped: u64,
    /// The route names the worker's requests came with (kept across ticks).
    pub endpoints: LocalEndpoints,
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new(DEFAULT_MAX_ENDPOINTS)
    }
}

impl Tally {
    /// An empty tally whose endpoints are bounded by `max_endpoints`
    /// (`usage_max_endpoints`).
    pub fn new(max_endpoints: usize) -> Self {
        Tally {
            counters: HashMap::default(),
            unattributed: 0,
            dropped: 0,
            endpoints: LocalEndpoints::new(max_endpoints),
        }
    }

    pub fn record(&mut self, key: UsageKey<LocalEndpoint>, counts: Counts) {
        if let Some(current) = self.counters.get_mut(&key) {
            current.add(&counts);
        } else if self.counters.len() < TALLY_CAPACITY {
            self.counters.insert(key, counts);
        } else {
            self.dropped = self.dropped.saturating_add(counts.requests);
        }
    }

    pub fn unattributed(&mut self) {
        self.unattributed = self.unattributed.saturating_add(1);
    }

    pub fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.unattributed == 0 && self.dropped == 0
    }
}

/// The shared-data key of slot `index`.
pub fn slot_name(index: u16) -> String {
    format!("keysync.u.{index:04x}")
}

/// The slot a counter lives in (FNV-1a of its key's id and its endpoint): every
/// outcome of a key's endpoint in one, a key's endpoints spread over several.
pub fn slot_of(key: &UsageKey) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.key.0.into_iter().chain(key.endpoint.0.to_le_bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    u16::try_from(hash % u32::from(SLOTS)).unwrap_or(0)
}

fn encode_record(key: &UsageKey, counts: &Counts, out: &mut Vec<u8>) {
    out.extend_from_slice(&key.org.0);
    out.extend_from_slice(&key.key.0);
    out.push(key.outcome.code());
    out.extend_from_slice(&key.endpoint.0.to_le_bytes());
    for value in [counts.requests, counts.duration_us]
        .into_iter()
        .chain(counts.buckets)
        .chain([counts.request_bytes, counts.response_bytes])
    {
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// One record; `with_endpoint`: of the current format (else of the first: `-`).
fn decode_record(bytes: &[u8], with_endpoint: bool) -> Option<(UsageKey, Counts)> {
    let org = Id::from_slice(bytes.get(..16)?)?;
    let key = Id::from_slice(bytes.get(16..32)?)?;
    let outcome = Outcome::from_code(i64::from(*bytes.get(32)?))?;
    let (endpoint, values_at) = if with_endpoint {
        let code = u16::from_le_bytes(bytes.get(33..35)?.try_into().ok()?);
        (EndpointCode(code), 35)
    } else {
        (EndpointCode::NO_NAME, 33)
    };
    let mut values = bytes
        .get(values_at..)?
        .chunks_exact(8)
        .filter_map(|chunk| chunk.try_into().ok().map(u64::from_le_bytes));
    let mut next = || values.next();
    let requests = next()?;
    let duration_us = next()?;
    let buckets = [next()?, next()?, next()?, next()?];
    Some((
        UsageKey {
            org,
            key,
            endpoint,
            outcome,
        },
        Counts {
            requests,
            duration_us,
            buckets,
            request_bytes: next()?,
            response_bytes: next()?,
        },
    ))
}

/// A slot's counters, in stored order; an unreadable entry reads as empty.
pub fn decode_slot(bytes: &[u8]) -> Vec<(UsageKey, Counts)> {
    let (len, with_endpoint) = match bytes.first() {
        Some(&SLOT_FORMAT) => (RECORD_LEN, true),
        Some(&SLOT_FORMAT_V1) => (RECORD_LEN_V1, false),
        _ => return Vec::new(),
    };
    match bytes.get(1..) {
        Some(records) if records.len() % len == 0 => records
            .chunks_exact(len)
            .filter_map(|record| decode_record(record, with_endpoint))
            .collect(),
        _ => Vec::new(),
    }
}

fn encode_slot(counters: &[(UsageKey, Counts)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + RECORD_LEN * counters.len());
    out.push(SLOT_FORMAT);
    for (key, counts) in counters {
        encode_record(key, counts, &mut out);
    }
    out
}

/// The per-Envoy totals: requests without a recognized key, requests not counted.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Totals {
    pub unattributed: u64,
    pub dropped: u64,
}

impl Totals {
    pub fn decode(bytes: &[u8]) -> Option<Totals> {
        match bytes.split_first() {
            Some((&TOTALS_FORMAT, rest)) => Some(Totals {
                unattributed: u64::from_le_bytes(rest.get(..8)?.try_into().ok()?),
                dropped: u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?),
            }),
            _ => None,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = vec![TOTALS_FORMAT];
        out.extend_from_slice(&self.unattributed.to_le_bytes());
        out.extend_from_slice(&self.dropped.to_le_bytes());
        out
    }

    pub fn read<S: SharedData>(data: &S) -> Totals {
        data.get(TOTALS_ENTRY)
            .value
            .as_deref()
            .and_then(Totals::decode)
            .unwrap_or_default()
    }
}

/// Sync service: creates the slots, the totals entry and the endpoint table that do
/// not exist yet (only one VM syncs at a time, so these unconditional first writes race
/// with nobody).
pub fn ensure_slots<S: SharedData>(data: &S) -> Result<(), WriteError> {
    let others = [
        (TOTALS_ENTRY, Totals::default().encode()),
        (endpoints::TABLE_ENTRY, endpoints::empty_table()),
    ];
    let slots = (0..SLOTS).map(|slot| (slot_name(slot), vec![SLOT_FORMAT]));
    for (name, empty) in slots.chain(others.map(|(name, empty)| (name.to_string(), empty))) {
        if data.get(&name).value.is_none() {
            data.set(&name, &empty, 0)?;
        }
    }
    Ok(())
}

/// What a merge did.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Merged {
    /// Requests not counted this time because their slot, or the worker's tally, was
    /// full: added to the shared `dropped` total (and to the worker's stat).
    pub dropped: u64,
    /// Counters whose deltas could not be written (slot or endpoint table missing,
    /// contended, host error): they stay in the tally for the next tick.
    pub kept: usize,
    /// Requests written under the endpoint `(other)` (an unusable route name, or one
    /// beyond the bound on distinct endpoints).
    pub other_endpoint: u64,
}

/// Worker's tick: adds the worker's new route names to the endpoint table, then the
/// tally into the shared slots and totals. Deltas that could not be written stay in
/// `tally` for the next tick; the rest is taken out of it.
pub fn merge<S: SharedData>(data: &S, tally: &mut Tally) -> Merged {
    let mut merged = Merged::default();
    // Every pending name gets its code, or none does (and their deltas wait). The codes
    // are every name's resolved so far: a request admitted before an earlier tick
    // resolved its name still holds it pending.
    let resolved =
        !tally.endpoints.has_pending() || tally.endpoints.resolve(data) != Resolved::NotYet;
    let codes = resolved.then(|| tally.endpoints.codes());
    let mut by_slot: BTreeMap<u16, Vec<(UsageKey, Counts)>> = BTreeMap::new();
    let mut waiting = Vec::new();
    for (key, counts) in tally.counters.drain() {
        let endpoint = match (key.endpoint, codes) {
            (LocalEndpoint::Code(code), _) => code,
            (LocalEndpoint::Pending(number), Some(codes)) => codes
                .get(usize::from(number))
                .copied()
                .unwrap_or(EndpointCode::OTHER),
            (LocalEndpoint::Pending(_), None) => {
                waiting.push((key, counts));
                continue;
            }
        };
        let key = key.with_endpoint(endpoint);
        by_slot
            .entry(slot_of(&key))
            .or_default()
            .push((key, counts));
    }
    merged.kept += waiting.len();
    tally.counters.extend(waiting);
    let mut dropped = std::mem::take(&mut tally.dropped);
    for (slot, deltas) in by_slot {
        match merge_slot(data, slot, &deltas) {
            Some(slot_dropped) => {
                dropped = dropped.saturating_add(slot_dropped);
                let other = deltas
                    .iter()
                    .filter(|(key, _)| key.endpoint == EndpointCode::OTHER)
                    .fold(0u64, |sum, (_, counts)| sum.saturating_add(counts.requests));
                merged.other_endpoint = merged.other_endpoint.saturating_add(other);
            }
            None => {
                merged.kept += deltas.len();
                tally
                    .counters
                    .extend(deltas.into_iter().map(|(key, counts)| {
                        let endpoint = LocalEndpoint::Code(key.endpoint);
                        (key.with_endpoint(endpoint), counts)
                    }));
            }
        }
    }
    let unattributed = std::mem::take(&mut tally.unattributed);
    if dropped > 0 || unattributed > 0 {
        let delta = Totals {
            unattributed,
            dropped,
        };
        if !merge_totals(data, delta) {
            tally.unattributed = unattributed;
            tally.dropped = dropped;
        }
    }
    merged.dropped = dropped;
    merged
}

/// Adds `deltas` into one slot; returns the requests dropped for want of room, or
/// `None` when nothing was written.
fn merge_slot<S: SharedData>(data: &S, slot: u16, deltas: &[(UsageKey, Counts)]) -> Option<u64> {
    let name = slot_name(slot);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let entry = data.get(&name);
        // Workers never create a slot: two creating it at once could lose a count.
        let bytes = entry.value.as_deref()?;
        let mut counters = decode_slot(bytes);
        let mut dropped = 0u64;
        for (key, delta) in deltas {
            if let Some((_, counts)) = counters.iter_mut().find(|(k, _)| k == key) {
                counts.add(delta);
            } else if counters.len() < SLOT_CAPACITY {
                counters.push((*key, *delta));
            } else {
                dropped = dropped.saturating_add(delta.requests);
            }
        }
        match data.set(&name, &encode_slot(&counters), entry.cas) {
            Ok(()) => return Some(dropped),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host(_)) => return None,
        }
    }
    None
}

fn merge_totals<S: SharedData>(data: &S, delta: Totals) -> bool {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let entry = data.get(TOTALS_ENTRY);
        let Some(current) = entry.value.as_deref() else {
            return false;
        };
        let current = Totals::decode(current).unwrap_or_default();
        let total = Totals {
            unattributed: current.unattributed.saturating_add(delta.unattributed),
            dropped: current.dropped.saturating_add(delta.dropped),
        };
        match data.set(TOTALS_ENTRY, &total.encode(), entry.cas) {
            Ok(()) => return true,
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Host(_)) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_shared_data::FakeSharedData;
    use crate::usage::endpoints::read_table;

    /// A counter of key `n` on a route without a name, as a tally holds it.
    fn key(n: u8, outcome: u8) -> UsageKey<LocalEndpoint> {
        UsageKey {
            org: Id([0xab; 16]),
            key: Id([n; 16]),
            endpoint: LocalEndpoint::Code(EndpointCode::NO_NAME),
            outcome: Outcome::from_code(i64::from(outcome)).unwrap(),
        }
    }

    /// The same counter as shared data holds it, with `endpoint`'s code.
    fn shared(key: UsageKey<LocalEndpoint>, endpoint: EndpointCode) -> UsageKey {
        key.with_endpoint(endpoint)
    }

    fn slot_counters(data: &FakeSharedData, key: &UsageKey) -> Vec<(UsageKey, Counts)> {
        decode_slot(&data.value(&slot_name(slot_of(key))).unwrap())
    }

    fn counts_at(data: &FakeSharedData, key: &UsageKey) -> Option<Counts> {
        slot_counters(data, key)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, c)| c)
    }

    fn counts_of(data: &FakeSharedData, key: &UsageKey<LocalEndpoint>) -> Option<Counts> {
        counts_at(data, &shared(*key, EndpointCode::NO_NAME))
    }

    fn ready() -> FakeSharedData {
        let data = FakeSharedData::default();
        ensure_slots(&data).unwrap();
        data
    }

    #[test]
    fn durations_fall_into_their_buckets() {
        for (us, bucket) in [
            (0, 0),
            (10_000, 0),
            (10_001, 1),
            (100_000, 1),
            (999_999, 2),
            (1_000_000, 2),
            (1_000_001, 3),
            (u64::MAX, 3),
        ] {
            let counts = Counts::one(Some(us), 0, 0);
            let mut expected = [0; BUCKETS];
            expected[bucket] = 1;
            assert_eq!(counts.buckets, expected, "{us} us");
            assert_eq!(counts.duration_us, us);
        }
        let untimed = Counts::one(None, 0, 0);
        assert_eq!((untimed.requests, untimed.duration_us), (1, 0));
        assert_eq!(untimed.buckets, [0; BUCKETS], "in no bucket");
    }

    #[test]
    fn outcomes_follow_the_status_class() {
        for (status, outcome) in [
            (Some(200), 2),
            (Some(204), 2),
            (Some(302), 3),
            (Some(404), 4),
            (Some(503), 5),
            (Some(101), 1),
            (Some(600), 1),
            (None, 1),
        ] {
            assert_eq!(Outcome::of_status(status).code(), outcome, "{status:?}");
        }
    }

    #[test]
    fn records_round_trip() {
        let counts = Counts {
            requests: 3,
            duration_us: 12_345,
            buckets: [1, 1, 0, 1],
            request_bytes: 10,
            response_bytes: u64::MAX,
        };
        let counters = vec![
            (shared(key(1, 2), EndpointCode(7)), counts),
            (
                shared(key(2, 8), EndpointCode(u16::MAX)),
                Counts::one(None, 0, 0),
            ),
        ];
        assert_eq!(decode_slot(&encode_slot(&counters)), counters);
        assert!(decode_slot(b"\x09garbage").is_empty());
        assert!(decode_slot(&[SLOT_FORMAT, 1, 2]).is_empty());
    }

    #[test]
    fn a_slot_of_a_filter_from_before_endpoints_reads_as_no_name() {
        // The first format: no endpoint in a record.
        let mut old = vec![SLOT_FORMAT_V1];
        old.extend_from_slice(&[0xab; 16]);
        old.extend_from_slice(&[1; 16]);
        old.push(2);
        for value in [5u64, 100, 5, 0, 0, 0, 7, 9] {
            old.extend_from_slice(&value.to_le_bytes());
        }
        let counters = decode_slot(&old);
        assert_eq!(counters.len(), 1);
        let (key, counts) = counters[0];
        assert_eq!(key, shared(self::key(1, 2), EndpointCode::NO_NAME));
        assert_eq!((counts.requests, counts.response_bytes), (5, 9));
        // Merged into, it is written again in the current format.
        let data = ready();
        data.put(&slot_name(slot_of(&key)), &old);
        let mut tally = Tally::default();
        tally.record(self::key(1, 2), Counts::one(None, 0, 0));
        merge(&data, &mut tally);
        let slot = data.value(&slot_name(slot_of(&key))).unwrap();
        assert_eq!(slot[0], SLOT_FORMAT);
        assert_eq!(counts_at(&data, &key).unwrap().requests, 6);
    }

    #[test]
    fn two_workers_add_up_in_shared_data() {
        let data = ready();
        let mut a = Tally::default();
        let mut b = Tally::default();
        a.record(key(1, 2), Counts::one(Some(5_000), 100, 200));
        a.record(key(1, 2), Counts::one(Some(50_000), 0, 0));
        b.record(key(1, 2), Counts::one(Some(2_000_000), 1, 2));
        b.record(key(1, 6), Counts::one(None, 0, 0));
        a.unattributed();
        b.unattributed();
        assert_eq!(merge(&data, &mut a), Merged::default());
        assert_eq!(merge(&data, &mut b), Merged::default());
        assert!(a.is_empty() && b.is_empty(), "the deltas were taken");
        let forwarded = counts_of(&data, &key(1, 2)).unwrap();
        assert_eq!(forwarded.requests, 3);
        assert_eq!(forwarded.duration_us, 2_055_000);
        assert_eq!(forwarded.buckets, [1, 1, 0, 1]);
        assert_eq!(
            (forwarded.request_bytes, forwarded.response_bytes),
            (101, 202)
        );
        assert_eq!(counts_of(&data, &key(1, 6)).unwrap().requests, 1);
        assert_eq!(Totals::read(&data).unattributed, 2);
        // Cumulative: the next tick adds to what is there.
        a.record(key(1, 2), Counts::one(Some(1), 0, 0));
        merge(&data, &mut a);
        assert_eq!(counts_of(&data, &key(1, 2)).unwrap().requests, 4);
    }

    #[test]
    fn a_keys_endpoints_are_counters_of_their_own() {
        let data = ready();
        let mut a = Tally::default();
        let mut b = Tally::default();
        let orders = a.endpoints.of(Some(b"orders"));
        let search = a.endpoints.of(Some(b"search"));
        let on = |endpoint| UsageKey {
            endpoint,
            ..key(1, 2)
        };
        a.record(on(orders), Counts::one(None, 0, 0));
        a.record(on(orders), Counts::one(None, 0, 0));
        a.record(on(search), Counts::one(None, 0, 0));
        a.record(key(1, 2), Counts::one(None, 0, 0));
        // Another worker, the same route: the same counter.
        let orders_b = b.endpoints.of(Some(b"orders"));
        b.record(on(orders_b), Counts::one(None, 0, 0));
        merge(&data, &mut a);
        merge(&data, &mut b);
        assert!(a.is_empty() && b.is_empty());
        assert_eq!(read_table(&data), ["orders", "search"]);
        let requests = |code| counts_at(&data, &shared(key(1, 2), code)).unwrap().requests;
        assert_eq!(requests(EndpointCode(2)), 3, "orders, from both workers");
        assert_eq!(requests(EndpointCode(3)), 1, "search");
        assert_eq!(requests(EndpointCode::NO_NAME), 1, "no name");
    }

    #[test]
    fn a_request_admitted_before_a_tick_is_counted_under_its_route_after_it() {
        // A request takes its endpoint at admission and is counted at its response: a
        // tick in between resolves the name it holds pending. Its number must still
        // name that route, not `(other)`, nor a route seen after the tick.
        let data = ready();
        let mut tally = Tally::default();
        let on = |endpoint| UsageKey {
            endpoint,
            ..key(1, 2)
        };
        let in_flight = tally.endpoints.of(Some(b"orders"));
        tally.record(on(in_flight), Counts::one(None, 0, 0));
        merge(&data, &mut tally);
        let later = tally.endpoints.of(Some(b"search"));
        tally.record(on(later), Counts::one(None, 0, 0));
        // The first request's response comes now.
        tally.record(on(in_flight), Counts::one(None, 0, 0));
        let merged = merge(&data, &mut tally);
        assert_eq!(merged.other_endpoint, 0);
        // And once no name waits any more.
        tally.record(on(in_flight), Counts::one(None, 0, 0));
        let merged = merge(&data, &mut tally);
        assert_eq!(merged.other_endpoint, 0);
        assert_eq!(read_table(&data), ["orders", "search"]);
        let requests = |code| counts_at(&data, &shared(key(1, 2), code)).unwrap().requests;
        assert_eq!(requests(EndpointCode(2)), 3, "orders, all three");
        assert_eq!(requests(EndpointCode(3)), 1, "search");
    }

    #[test]
    fn the_bound_on_endpoints_counts_the_rest_as_other() {
        let data = ready();
        let mut tally = Tally::new(2);
        for name in ["a", "b", "c", "d", "a"] {
            let endpoint = tally.endpoints.of(Some(name.as_bytes()));
            tally.record(
                UsageKey {
                    endpoint,
                    ..key(1, 2)
                },
                Counts::one(None, 0, 0),
            );
        }
        let merged = merge(&data, &mut tally);
        assert_eq!(merged.other_endpoint, 2, "c and d");
        assert_eq!(read_table(&data), ["a", "b"]);
        let requests = |code| counts_at(&data, &shared(key(1, 2), code)).unwrap().requests;
        assert_eq!(requests(EndpointCode(2)), 2);
        assert_eq!(requests(EndpointCode(3)), 1);
        assert_eq!(requests(EndpointCode::OTHER), 2);
    }

    #[test]
    fn without_the_endpoint_table_new_names_wait_in_the_tally() {
        let data = ready();
        data.entries.borrow_mut().remove(endpoints::TABLE_ENTRY);
        let mut tally = Tally::default();
        let orders = tally.endpoints.of(Some(b"orders"));
        tally.record(
            UsageKey {
                endpoint: orders,
                ..key(1, 2)
            },
            Counts::one(None, 0, 0),
        );
        tally.record(key(2, 2), Counts::one(None, 0, 0));
        let merged = merge(&data, &mut tally);
        assert_eq!(merged.kept, 1, "the named counter waits");
        assert_eq!(counts_of(&data, &key(2, 2)).unwrap().requests, 1);
        data.put(endpoints::TABLE_ENTRY, &endpoints::empty_table());
        merge(&data, &mut tally);
        assert!(tally.is_empty());
        let named = shared(key(1, 2), EndpointCode(2));
        assert_eq!(counts_at(&data, &named).unwrap().requests, 1);
    }

    #[test]
    fn a_cas_conflict_is_retried_and_loses_nothing() {
        let data = ready();
        let mut other = Tally::default();
        other.record(key(1, 2), Counts::one(None, 0, 0));
        let other = std::cell::RefCell::new(Some(other));
        // Another worker merges between this worker's read and its write, once.
        *data.after_get.borrow_mut() = Some(Box::new(move |data, _| {
            if let Some(mut tally) = other.borrow_mut().take() {
                merge(data, &mut tally);
            }
        }));
        let mut mine = Tally::default();
        mine.record(key(1, 2), Counts::one(None, 0, 0));
        let writes = data.writes.get();
        merge(&data, &mut mine);
        assert_eq!(counts_of(&data, &key(1, 2)).unwrap().requests, 2);
        assert!(
            data.writes.get() >= writes + 2,
            "the first write lost its race"
        );
    }

    #[test]
    fn a_full_slot_drops_new_counters_and_counts_them() {
        let data = ready();
        let target = shared(key(1, 6), EndpointCode::NO_NAME);
        let slot = slot_of(&target);
        // Fill the slot with counters of other keys hashing elsewhere: write it directly.
        let filler: Vec<(UsageKey, Counts)> = (0..SLOT_CAPACITY)
            .map(|n| {
                let mut k = shared(key(1, 2), EndpointCode::NO_NAME);
                k.org = Id([u8::try_from(n).unwrap(); 16]);
                (k, Counts::one(None, 0, 0))
            })
            .collect();
        data.put(&slot_name(slot), &encode_slot(&filler));
        let mut tally = Tally::default();
        tally.record(key(1, 6), Counts::one(None, 0, 0));
        tally.record(key(1, 6), Counts::one(None, 0, 0));
        // An existing counter still counts (it lives in the same slot: same key and
        // endpoint).
        let existing = filler[0].0;
        tally.record(
            existing.with_endpoint(LocalEndpoint::Code(existing.endpoint)),
            Counts::one(None, 0, 0),
        );
        let merged = merge(&data, &mut tally);
        assert_eq!(merged.dropped, 2);
        assert_eq!(Totals::read(&data).dropped, 2);
        assert_eq!(counts_at(&data, &existing).unwrap().requests, 2);
        assert_eq!(slot_counters(&data, &target).len(), SLOT_CAPACITY);
    }

    #[test]
    fn a_full_tally_drops_and_the_drop_reaches_the_totals() {
        let data = ready();
        let mut tally = Tally::default();
        for n in 0..=TALLY_CAPACITY {
            let mut k = key(0, 2);
            k.key.0[..8].copy_from_slice(&(n as u64).to_le_bytes());
            tally.record(k, Counts::one(None, 0, 0));
        }
        assert_eq!(tally.counters.len(), TALLY_CAPACITY);
        assert_eq!(tally.dropped, 1);
        let merged = merge(&data, &mut tally);
        assert!(merged.dropped >= 1);
        assert_eq!(Totals::read(&data).dropped, merged.dropped);
    }

    #[test]
    fn without_slots_the_deltas_wait_in_the_tally() {
        let data = FakeSharedData::default();
        let mut tally = Tally::default();
        tally.record(key(1, 2), Counts::one(None, 0, 0));
        tally.unattributed();
        let merged = merge(&data, &mut tally);
        assert_eq!(merged.kept, 1);
        assert_eq!(tally.counters.len(), 1);
        assert_eq!(tally.unattributed, 1);
        assert!(data.entries.borrow().is_empty(), "workers create nothing");
        ensure_slots(&data).unwrap();
        merge(&data, &mut tally);
        assert!(tally.is_empty());
        assert_eq!(counts_of(&data, &key(1, 2)).unwrap().requests, 1);
        assert_eq!(Totals::read(&data).unattributed, 1);
    }
}
