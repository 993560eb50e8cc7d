//! Usage by endpoint, the gateway's side: the route a request came through, carried by
//! the counters as a small number, and the bound on how many distinct routes one Envoy
//! counts (`usage_max_endpoints`).
//!
//! - Shared data holds one table, `keysync.u.endpoints`: the route names counted so far,
//!   in the order they were first counted, at most `usage_max_endpoints` of them. The
//!   counters in the slots name their endpoint by [`EndpointCode`]: `-`, `(other)` or
//!   the table's n-th name. The table only grows for the life of the instance, so a
//!   code never changes meaning, and an endpoint's cumulative counters stay its own.
//! - A worker maps each request's route name to an endpoint in its own memory
//!   ([`LocalEndpoints::of`], no host call): a name already in its copy of the table is
//!   its code at once; a new one waits, numbered, in the worker's tally until the
//!   worker's tick adds it to the table ([`LocalEndpoints::resolve`]: one read, and a
//!   compare-and-swap when a name is new). A name once the table is full, and a name
//!   that is not a usable one (`keysync_contract::usage_endpoint::is_name`), counts as
//!   `(other)`: a misconfigured route table cannot make the counters or the rollup grow
//!   beyond the bound.

use crate::host::{SharedData, WriteError};
use keysync_contract::usage_endpoint::{self, NO_NAME, OTHER};
use std::collections::HashMap;

/// The shared-data entry of the endpoint table (created by the sync service).
pub const TABLE_ENTRY: &str = "keysync.u.endpoints";

const FORMAT_VERSION: u8 = 1;
const MAX_CAS_ATTEMPTS: usize = 16;

/// An endpoint in the shared counters: `-`, `(other)` or a name of the table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct EndpointCode(pub u16);

impl EndpointCode {
    /// A route without a name ([`NO_NAME`]).
    pub const NO_NAME: EndpointCode = EndpointCode(0);
    /// A name not counted as itself ([`OTHER`]).
    pub const OTHER: EndpointCode = EndpointCode(1);

    fn of_index(index: usize) -> Option<EndpointCode> {
        u16::try_from(index.checked_add(2)?).ok().map(EndpointCode)
    }

    fn index(self) -> Option<usize> {
        usize::from(self.0).checked_sub(2)
    }

    /// The endpoint's name as reported, given the table's names; `None` for a code the
    /// table does not have (an entry written by something else).
    pub fn name(self, table: &[String]) -> Option<&str> {
        match self {
            EndpointCode::NO_NAME => Some(NO_NAME),
            EndpointCode::OTHER => Some(OTHER),
            code => table.get(code.index()?).map(String::as_str),
        }
    }
}

/// An endpoint as a worker's tally holds it: a code of the table, or a name the worker
/// saw since its last tick and has not added to the table yet (its number in
/// [`LocalEndpoints`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum LocalEndpoint {
    Code(EndpointCode),
    Pending(u16),
}

/// The table's names, as stored.
pub fn decode_table(bytes: &[u8]) -> Option<Vec<String>> {
    let (&FORMAT_VERSION, mut rest) = bytes.split_first()? else {
        return None;
    };
    let mut names = Vec::new();
    while let Some((&len, after)) = rest.split_first() {
        let name = after.get(..usize::from(len))?;
        names.push(String::from_utf8(name.to_vec()).ok()?);
        rest = after.get(usize::from(len)..)?;
    }
    Some(names)
}

fn encode_table(names: &[String]) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    for name in names {
        // Names are at most 64 bytes (`is_name`): the length fits a byte.
        out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(name.as_bytes());
    }
    out
}

/// The table's names (empty when there is none yet, or it is unreadable).
pub fn read_table<S: SharedData>(data: &S) -> Vec<String> {
    data.get(TABLE_ENTRY)
        .value
        .as_deref()
        .and_then(decode_table)
        .unwrap_or_default()
}

/// Sync service: the empty table, written once, like the counter slots.
pub fn empty_table() -> Vec<u8> {
    encode_table(&[])
}

/// The route names one worker's requests came with: a copy of the shared table as of
/// its last tick, and the names seen since that are not in it. Bounded by `max` (the
/// table's bound) whatever the requests send.
#[derive(Debug)]
pub struct LocalEndpoints {
    max: usize,
    /// The shared table's names and codes, as the last tick read them.
    known: HashMap<Box<[u8]>, EndpointCode>,
    /// The table had `max` names: no name will be added.
    full: bool,
    /// Every name seen that the copy of the table did not have then, by its number
    /// ([`LocalEndpoint::Pending`]), for the worker's life: a request holds its number
    /// from admission to its response, across ticks, so a number never names another
    /// name. At most `max` (no more names can be new than the table takes).
    pending: Vec<Box<[u8]>>,
    /// The codes of the first `resolved.len()` pending names.
    resolved: Vec<EndpointCode>,
    /// The first route name that was not a usable one, until it is logged.
    unusable: Option<String>,
    /// Whether the worker said so already: once for its life is enough.
    told_unusable: bool,
    told_other: bool,
}

/// What resolving the pending names did.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Every pending name has its code (`codes[n]` for `Pending(n)`).
    Codes(Vec<EndpointCode>),
    /// The table could not be read or written (not created yet, contended, a host
    /// error): the names stay pending, and so do their requests.
    NotYet,
}

impl LocalEndpoints {
    pub fn new(max: usize) -> LocalEndpoints {
        LocalEndpoints {
            max,
            known: HashMap::new(),
            full: false,
            pending: Vec::new(),
            resolved: Vec::new(),
            unusable: None,
            told_unusable: false,
            told_other: false,
        }
    }

    /// The endpoint of a request whose route is named `name` (`None` or empty: no name).
    /// In the worker's memory, no host call.
    pub fn of(&mut self, name: Option<&[u8]>) -> LocalEndpoint {
        let name = match name {
            None | Some(b"") => return LocalEndpoint::Code(EndpointCode::NO_NAME),
            // A route named "-" is a route without a name: one counter, not two.
            Some(name) if name == NO_NAME.as_bytes() => {
                return LocalEndpoint::Code(EndpointCode::NO_NAME)
            }
            Some(name) => name,
        };
        if !usage_endpoint::is_name(name) {
            if !self.told_unusable && self.unusable.is_none() {
                let shown: String = String::from_utf8_lossy(name).chars().take(80).collect();
                self.unusable = Some(shown.escape_debug().to_string());
            }
            return LocalEndpoint::Code(EndpointCode::OTHER);
        }
        if let Some(code) = self.known.get(name) {
            return LocalEndpoint::Code(*code);
        }
        if self.full {
            return LocalEndpoint::Code(EndpointCode::OTHER);
        }
        if let Some(number) = self.pending.iter().position(|pending| **pending == *name) {
            return pending_number(number);
        }
        // No more names can be new than the table can take.
        if self.pending.len() >= self.max {
            return LocalEndpoint::Code(EndpointCode::OTHER);
        }
        self.pending.push(name.into());
        pending_number(self.pending.len() - 1)
    }

    /// The first unusable route name seen (escaped, at most 80 characters), once for
    /// the worker's life: for its log line.
    pub fn take_unusable(&mut self) -> Option<String> {
        let name = self.unusable.take()?;
        self.told_unusable = true;
        Some(name)
    }

    /// True the first time it is asked: the worker logs requests counted as `(other)`
    /// once.
    pub fn tell_other_once(&mut self) -> bool {
        !std::mem::replace(&mut self.told_other, true)
    }

    /// The bound on distinct endpoints.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Whether names wait for the table.
    pub fn has_pending(&self) -> bool {
        self.pending.len() > self.resolved.len()
    }

    /// The codes of the pending names resolved so far (`codes[n]` for `Pending(n)`).
    pub fn codes(&self) -> &[EndpointCode] {
        &self.resolved
    }

    /// Worker's tick: adds the pending names not resolved yet to the shared table (those
    /// it has room for; the others are `(other)`), refreshes the copy of the table, and
    /// returns every pending name's code.
    pub fn resolve<S: SharedData>(&mut self, data: &S) -> Resolved {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let entry = data.get(TABLE_ENTRY);
            // Workers never create the table: two creating it at once could lose a name.
            let Some(mut names) = entry.value.as_deref().and_then(decode_table) else {
                return Resolved::NotYet;
            };
            let before = names.len();
            let codes: Vec<EndpointCode> = self
                .pending
                .iter()
                .skip(self.resolved.len())
                .map(|pending| {
                    let position = names.iter().position(|name| name.as_bytes() == &**pending);
                    let index = match position {
                        Some(index) => index,
                        None if names.len() < self.max => {
                            names.push(String::from_utf8_lossy(pending).into_owned());
                            names.len() - 1
                        }
                        None => return EndpointCode::OTHER,
                    };
                    EndpointCode::of_index(index).unwrap_or(EndpointCode::OTHER)
                })
                .collect();
            if names.len() > before {
                match data.set(TABLE_ENTRY, &encode_table(&names), entry.cas) {
                    Ok(()) => {}
                    Err(WriteError::CasMismatch) => continue,
                    Err(WriteError::Host(_)) => return Resolved::NotYet,
                }
            }
            self.known = names
                .iter()
                .enumerate()
                .filter_map(|(index, name)| {
                    Some((name.as_bytes().into(), EndpointCode::of_index(index)?))
                })
                .collect();
            self.full = names.len() >= self.max;
            self.resolved.extend(codes);
            return Resolved::Codes(self.resolved.clone());
        }
        Resolved::NotYet
    }
}

fn pending_number(number: usize) -> LocalEndpoint {
    // `pending` holds at most `max` names, at most MAX_ENDPOINTS (1000).
    u16::try_from(number).map_or(
        LocalEndpoint::Code(EndpointCode::OTHER),
        LocalEndpoint::Pending,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_shared_data::FakeSharedData;

    fn ready() -> FakeSharedData {
        let data = FakeSharedData::default();
        data.set(TABLE_ENTRY, &empty_table(), 0).unwrap();
        data
    }

    fn codes(resolved: Resolved) -> Vec<EndpointCode> {
        match resolved {
            Resolved::Codes(codes) => codes,
            Resolved::NotYet => panic!("not resolved"),
        }
    }

    #[test]
    fn no_name_and_unusable_names_need_no_table() {
        let mut local = LocalEndpoints::new(10);
        for none in [None, Some(&b""[..]), Some(b"-")] {
            assert_eq!(local.of(none), LocalEndpoint::Code(EndpointCode::NO_NAME));
        }
        assert_eq!(local.take_unusable(), None);
        let long = [b'a'; 65];
        for unusable in [&b"two words"[..], b"\xff", &long[..], b"(other)"] {
            assert_eq!(
                local.of(Some(unusable)),
                LocalEndpoint::Code(EndpointCode::OTHER)
            );
        }
        assert_eq!(
            local.take_unusable().as_deref(),
            Some("two words"),
            "the first one, once"
        );
        assert_eq!(local.take_unusable(), None);
        local.of(Some(b"new\nline"));
        assert_eq!(local.take_unusable(), None, "once for the worker's life");
        assert!(!local.has_pending());
    }

    #[test]
    fn new_names_wait_for_the_tick_then_have_their_code() {
        let data = ready();
        let mut local = LocalEndpoints::new(10);
        assert_eq!(local.of(Some(b"orders")), LocalEndpoint::Pending(0));
        assert_eq!(local.of(Some(b"search")), LocalEndpoint::Pending(1));
        assert_eq!(local.of(Some(b"orders")), LocalEndpoint::Pending(0));
        assert_eq!(
            codes(local.resolve(&data)),
            [EndpointCode(2), EndpointCode(3)]
        );
        assert_eq!(read_table(&data), ["orders", "search"]);
        // Known now: its code at once.
        assert_eq!(
            local.of(Some(b"search")),
            LocalEndpoint::Code(EndpointCode(3))
        );
        assert!(!local.has_pending());
        // Another worker finds the names where the first put them.
        let mut other = LocalEndpoints::new(10);
        assert_eq!(other.of(Some(b"search")), LocalEndpoint::Pending(0));
        assert_eq!(other.of(Some(b"users")), LocalEndpoint::Pending(1));
        assert_eq!(
            codes(other.resolve(&data)),
            [EndpointCode(3), EndpointCode(4)]
        );
        assert_eq!(read_table(&data), ["orders", "search", "users"]);
        let table = read_table(&data);
        assert_eq!(EndpointCode(4).name(&table), Some("users"));
        assert_eq!(EndpointCode::NO_NAME.name(&table), Some("-"));
        assert_eq!(EndpointCode::OTHER.name(&table), Some("(other)"));
        assert_eq!(EndpointCode(5).name(&table), None);
    }

    #[test]
    fn names_beyond_the_bound_count_as_other() {
        let data = ready();
        let mut first = LocalEndpoints::new(2);
        let mut second = LocalEndpoints::new(2);
        first.of(Some(b"a"));
        second.of(Some(b"b"));
        second.of(Some(b"c"));
        // The bound holds locally too: no more pending names than the table takes.
        assert_eq!(
            second.of(Some(b"d")),
            LocalEndpoint::Code(EndpointCode::OTHER)
        );
        assert_eq!(codes(first.resolve(&data)), [EndpointCode(2)]);
        assert_eq!(
            codes(second.resolve(&data)),
            [EndpointCode(3), EndpointCode::OTHER],
            "c came when the table was full"
        );
        assert_eq!(read_table(&data), ["a", "b"]);
        // A full table: no name waits any more, and the table's names keep counting.
        assert_eq!(
            second.of(Some(b"e")),
            LocalEndpoint::Code(EndpointCode::OTHER)
        );
        assert_eq!(second.of(Some(b"a")), LocalEndpoint::Code(EndpointCode(2)));
        assert!(!second.has_pending());
    }

    #[test]
    fn without_the_table_names_stay_pending() {
        let data = FakeSharedData::default();
        let mut local = LocalEndpoints::new(10);
        local.of(Some(b"orders"));
        assert_eq!(local.resolve(&data), Resolved::NotYet);
        assert!(local.has_pending());
        assert!(data.entries.borrow().is_empty(), "workers create nothing");
        data.set(TABLE_ENTRY, &empty_table(), 0).unwrap();
        assert_eq!(codes(local.resolve(&data)), [EndpointCode(2)]);
    }

    #[test]
    fn a_name_added_meanwhile_by_another_worker_is_not_lost() {
        let data = ready();
        let other = std::cell::RefCell::new(Some(LocalEndpoints::new(10)));
        // Another worker adds its name between this worker's read and its write, once.
        *data.after_get.borrow_mut() = Some(Box::new(move |data, _| {
            if let Some(mut worker) = other.borrow_mut().take() {
                worker.of(Some(b"search"));
                worker.resolve(data);
            }
        }));
        let mut local = LocalEndpoints::new(10);
        local.of(Some(b"orders"));
        assert_eq!(codes(local.resolve(&data)), [EndpointCode(3)]);
        assert_eq!(read_table(&data), ["search", "orders"]);
    }

    #[test]
    fn the_table_round_trips_and_garbage_reads_as_none() {
        let names = vec!["a".to_string(), "x".repeat(64)];
        assert_eq!(decode_table(&encode_table(&names)), Some(names));
        assert_eq!(decode_table(&empty_table()), Some(vec![]));
        assert_eq!(decode_table(b"\x09"), None);
        assert_eq!(decode_table(b"\x01\x05ab"), None);
        assert_eq!(decode_table(b""), None);
    }
}
