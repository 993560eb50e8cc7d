//! Mutated keysync messages, generated from a seed, for the rogue keysync case: what a
//! broken or hostile keysync could put on the watch stream and in lookup answers.
//!
//! The mutations are chosen so that the right reaction is known whatever the filter's
//! inner workings: a message a correct filter may take in stride changes no test key
//! (a heartbeat with unknown fields, say), and every message that would re-admit a
//! revoked key or drop a known one is one it must refuse whole (a revision going
//! backwards, a change set with one bad record, a removal of a malformed hash, a
//! lookup answer for another key or older than the store). So "known keys 200, revoked
//! keys 403 throughout" is the right outcome for every one of them.

use std::collections::BTreeMap;
use std::time::Instant;

use keysync_proto::v1 as proto;
use prost::Message;

use crate::rogue_keysync::{LookupAnswer, WireFrame};
use crate::seeded::Seeded;

/// What to mutate, and how much.
pub struct MutationPlan {
    pub seed: u64,
    /// Records of keys that must keep working.
    pub known: Vec<proto::KeyRecord>,
    /// Records of keys that must stay refused.
    pub revoked: Vec<proto::KeyRecord>,
    /// The revision the rogue serves (its ListKeys pages and heartbeats).
    pub revision: u64,
    pub epoch: u64,
    /// Largest oversized frame, in bytes.
    pub max_frame: u32,
    pub stream_messages: usize,
    pub lookup_answers: usize,
}

/// The mutations still to send, and what was sent.
pub struct Mutations {
    random: Seeded,
    plan: MutationPlan,
    stream_left: usize,
    lookup_left: usize,
    /// Messages sent, by kind.
    pub sent: BTreeMap<&'static str, usize>,
    /// When each of the first messages was sent, and its kind: what preceded a wrong
    /// answer.
    pub history: Vec<(Instant, &'static str)>,
}

/// How many messages [`Mutations::history`] keeps.
const HISTORY: usize = 20_000;

impl Mutations {
    pub fn new(plan: MutationPlan) -> Mutations {
        Mutations {
            random: Seeded::new(plan.seed),
            stream_left: plan.stream_messages,
            lookup_left: plan.lookup_answers,
            plan,
            sent: BTreeMap::new(),
            history: Vec::new(),
        }
    }

    /// Stream messages still to send.
    pub fn stream_left(&self) -> usize {
        self.stream_left
    }

    /// Lookup answers still to give.
    pub fn lookup_left(&self) -> usize {
        self.lookup_left
    }

    /// Messages sent so far, stream and lookups.
    pub fn total_sent(&self) -> usize {
        self.sent.values().sum()
    }

    fn count(&mut self, kind: &'static str) {
        *self.sent.entry(kind).or_default() += 1;
        if self.history.len() < HISTORY {
            self.history.push((Instant::now(), kind));
        }
    }

    /// The kinds of the last `n` messages sent before `at`.
    pub fn before(&self, at: Instant, n: usize) -> Vec<&'static str> {
        let end = self.history.partition_point(|(sent, _)| *sent <= at);
        self.history[end.saturating_sub(n)..end]
            .iter()
            .map(|(_, kind)| *kind)
            .collect()
    }

    /// What to send on a watch stream that just opened: a few messages a correct
    /// filter takes in stride, then one it must refuse (it resyncs and opens another
    /// stream) or that never completes (it gives up on the stream). Once every stream
    /// message is sent, a plain heartbeat, so the filter settles.
    pub fn stream_batch(&mut self) -> Vec<WireFrame> {
        if self.stream_left == 0 {
            return vec![WireFrame::Message(self.heartbeat(0))];
        }
        let mut batch = Vec::new();
        let harmless = self.random.below(8).min(self.stream_left - 1);
        for _ in 0..harmless {
            batch.push(self.harmless());
        }
        batch.push(self.refused());
        self.stream_left -= batch.len();
        batch
    }

    /// The answer to a lookup of `asked`: never an honest "found" for it.
    pub fn lookup_answer(&mut self, asked: &[u8]) -> LookupAnswer {
        if self.lookup_left == 0 {
            return LookupAnswer::Honest;
        }
        self.lookup_left -= 1;
        let (kind, answer) = match self.random.below(20) {
            0..=2 => (
                "lookup: junk bytes",
                LookupAnswer::Frame(WireFrame::Message(self.junk())),
            ),
            3..=5 => {
                let other = self.random.pick(&self.plan.known).clone();
                (
                    "lookup: answer for another key",
                    self.found(other, self.plan.revision),
                )
            }
            6..=8 => {
                // Found, but at a revision older than the store's: the store knows better.
                let record = self.record_for(asked);
                let stale = self.random.between(0, 1) as u64;
                (
                    "lookup: found, older than the store",
                    self.found(record, stale),
                )
            }
            9 | 10 => {
                let mut record = self.record_for(asked);
                record.org_id.truncate(self.random.below(16));
                ("lookup: bad record", self.found(record, self.plan.revision))
            }
            11 | 12 => (
                "lookup: gRPC error",
                LookupAnswer::Status(*self.random.pick(&[2, 4, 13, 14])),
            ),
            13 => ("lookup: no answer", LookupAnswer::Stall),
            14 | 15 => (
                "lookup: oversized frame",
                LookupAnswer::Frame(WireFrame::Huge(self.oversized())),
            ),
            16 => {
                let answer = proto::LookupKeyResponse {
                    key: None,
                    revision: u64::MAX,
                    provenance: Some(self.provenance()),
                };
                (
                    "lookup: not found at the maximum revision",
                    LookupAnswer::Frame(WireFrame::Message(answer.encode_to_vec())),
                )
            }
            _ => {
                let mut payload = proto::LookupKeyResponse {
                    key: Some(self.record_for(asked)),
                    revision: self.plan.revision,
                    provenance: Some(self.provenance()),
                }
                .encode_to_vec();
                // Cut inside the record: never a whole one.
                let cut = self.random.between(1, 40).min(payload.len() - 1);
                payload.truncate(cut);
                (
                    "lookup: truncated found",
                    LookupAnswer::Frame(WireFrame::Message(payload)),
                )
            }
        };
        self.count(kind);
        answer
    }

    fn found(&self, record: proto::KeyRecord, revision: u64) -> LookupAnswer {
        let answer = proto::LookupKeyResponse {
            key: Some(record),
            revision,
            provenance: Some(self.provenance()),
        };
        LookupAnswer::Frame(WireFrame::Message(answer.encode_to_vec()))
    }

    /// A record for `hash` with made-up ids.
    fn record_for(&mut self, hash: &[u8]) -> proto::KeyRecord {
        proto::KeyRecord {
            key_hash: hash.to_vec(),
            key_id: self.random.bytes(16),
            org_id: self.random.bytes(16),
            expires_at: 0,
            rate_limit: None,
            scopes: Vec::new(),
            allowed_networks: Vec::new(),
        }
    }

    /// A record for a key nobody holds.
    fn fresh_record(&mut self) -> proto::KeyRecord {
        let hash = self.random.bytes(32);
        self.record_for(&hash)
    }

    fn provenance(&self) -> proto::Provenance {
        proto::Provenance {
            epoch: self.plan.epoch,
            confirmed_age_ms: 0,
        }
    }

    /// A heartbeat at the served revision, confirmed `age_ms` ago.
    fn heartbeat(&self, age_ms: u64) -> Vec<u8> {
        proto::KeyChanges {
            revision: self.plan.revision,
            provenance: Some(proto::Provenance {
                epoch: self.plan.epoch,
                confirmed_age_ms: age_ms,
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn junk(&mut self) -> Vec<u8> {
        let len = self.random.between(1, 2048);
        self.random.bytes(len)
    }

    fn oversized(&mut self) -> u32 {
        let low = (1u32 << 20).min(self.plan.max_frame);
        self.random
            .between(low as usize, self.plan.max_frame as usize) as u32
    }

    /// A message a correct filter accepts without any change to the test keys.
    fn harmless(&mut self) -> WireFrame {
        let age = self.random.below(2000) as u64;
        let mut payload = self.heartbeat(age);
        let kind = match self.random.below(3) {
            0 => "stream: heartbeat",
            1 => {
                // An unknown field (a newer keysync's): a decoder skips it.
                let field = self.random.between(50, 1000) as u32;
                let len = self.random.below(40);
                let value = self.random.bytes(len);
                prost::encoding::bytes::encode(field, &value, &mut payload);
                "stream: heartbeat with an unknown field"
            }
            _ => {
                // The revision twice: the last one wins, and it is the same.
                prost::encoding::uint64::encode(1, &self.plan.revision, &mut payload);
                "stream: heartbeat with a repeated field"
            }
        };
        self.count(kind);
        WireFrame::Message(payload)
    }

    /// A message a correct filter must refuse (or that leaves the stream hanging).
    fn refused(&mut self) -> WireFrame {
        let next = self.plan.revision + 1;
        let (kind, frame) = match self.random.below(100) {
            0..=14 => ("stream: junk bytes", WireFrame::Message(self.junk())),
            15..=24 => {
                let mut payload = proto::KeyChanges {
                    revision: next,
                    upserts: (0..3).map(|_| self.fresh_record()).collect(),
                    provenance: Some(self.provenance()),
                    ..Default::default()
                }
                .encode_to_vec();
                let cut = self.random.between(1, payload.len() - 1);
                payload.truncate(cut);
                ("stream: truncated change set", WireFrame::Message(payload))
            }
            25..=39 => {
                // Undoes the revocations and drops the known keys, at an old revision.
                let message = proto::KeyChanges {
                    revision: self.random.below(self.plan.revision as usize) as u64,
                    upserts: self.plan.revoked.clone(),
                    removals: self.plan.known.iter().map(|k| k.key_hash.clone()).collect(),
                    provenance: Some(self.provenance()),
                    ..Default::default()
                };
                (
                    "stream: revision going backwards",
                    WireFrame::Message(message.encode_to_vec()),
                )
            }
            40..=44 => {
                let message = proto::KeyChanges {
                    revision: u64::MAX - self.random.below(2) as u64,
                    upserts: (0..self.random.below(2))
                        .map(|_| self.fresh_record())
                        .collect(),
                    provenance: Some(self.provenance()),
                    ..Default::default()
                };
                (
                    "stream: maximum revision",
                    WireFrame::Message(message.encode_to_vec()),
                )
            }
            45..=47 => {
                // Keys nobody holds: the parts of a split set are real changes that a
                // client may apply as they come (the set is complete only after its last
                // part), so a rogue's parts cannot be told from keysync's. What must hold
                // is that the set that never ends is given up and resynced.
                let message = proto::KeyChanges {
                    revision: next,
                    upserts: (0..3).map(|_| self.fresh_record()).collect(),
                    partial: true,
                    provenance: Some(self.provenance()),
                    ..Default::default()
                };
                (
                    "stream: split change set that never ends",
                    WireFrame::Message(message.encode_to_vec()),
                )
            }
            48..=59 => {
                let mut bad = self.random.pick(&self.plan.known).clone();
                match self.random.below(3) {
                    0 => bad.org_id.truncate(3),
                    1 => bad.key_hash.push(0),
                    _ => bad.key_id.clear(),
                }
                let mut upserts = self.plan.revoked.clone();
                upserts.insert(self.random.below(upserts.len() + 1), bad);
                let message = proto::KeyChanges {
                    revision: next,
                    upserts,
                    provenance: Some(self.provenance()),
                    ..Default::default()
                };
                (
                    "stream: change set with a bad record",
                    WireFrame::Message(message.encode_to_vec()),
                )
            }
            60..=67 => ("stream: oversized frame", WireFrame::Huge(self.oversized())),
            68 | 69 => {
                // A length prefix of ~4 GB, and then almost nothing.
                let mut raw = vec![0, 0xff, 0xff, 0xff, 0x00];
                raw.extend(self.random.bytes(16));
                ("stream: frame that never completes", WireFrame::Raw(raw))
            }
            70..=74 => {
                let junk = self.junk();
                let mut raw = vec![1];
                raw.extend_from_slice(&(junk.len() as u32).to_be_bytes());
                raw.extend(junk);
                ("stream: compressed-flag frame", WireFrame::Raw(raw))
            }
            75..=79 => {
                let message = proto::KeyChanges {
                    revision: self.plan.revision,
                    resync_required: true,
                    provenance: Some(self.provenance()),
                    ..Default::default()
                };
                (
                    "stream: resync required",
                    WireFrame::Message(message.encode_to_vec()),
                )
            }
            80..=89 => {
                let mut removals: Vec<Vec<u8>> = self
                    .plan
                    .revoked
                    .iter()
                    .map(|k| k.key_hash.clone())
                    .collect();
                let len = self.random.below(31);
                removals.push(self.random.bytes(len));
                let message = proto::KeyChanges {
                    revision: next,
                    upserts: self.plan.revoked.clone(),
                    removals,
                    provenance: Some(self.provenance()),
                    ..Default::default()
                };
                (
                    "stream: removal of a malformed hash",
                    WireFrame::Message(message.encode_to_vec()),
                )
            }
            _ => {
                let message = proto::KeyChanges {
                    revision: self.random.below(self.plan.revision as usize) as u64,
                    upserts: self.plan.revoked.clone(),
                    provenance: Some(proto::Provenance {
                        epoch: self.plan.epoch,
                        confirmed_age_ms: u64::MAX,
                    }),
                    ..Default::default()
                };
                (
                    "stream: old revision with a nonsense age",
                    WireFrame::Message(message.encode_to_vec()),
                )
            }
        };
        self.count(kind);
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> proto::KeyRecord {
        proto::KeyRecord {
            key_hash: vec![n; 32],
            key_id: vec![n; 16],
            org_id: vec![n; 16],
            expires_at: 0,
            rate_limit: None,
            scopes: Vec::new(),
            allowed_networks: Vec::new(),
        }
    }

    fn mutations(seed: u64) -> Mutations {
        Mutations::new(MutationPlan {
            seed,
            known: vec![record(1)],
            revoked: vec![record(2)],
            revision: 50,
            epoch: 1,
            max_frame: 2 << 20,
            stream_messages: 200,
            lookup_answers: 100,
        })
    }

    #[test]
    fn the_same_seed_sends_the_same_messages() {
        let (mut a, mut b) = (mutations(3), mutations(3));
        for _ in 0..20 {
            assert_eq!(a.stream_batch(), b.stream_batch());
            assert_eq!(a.lookup_answer(&[9; 32]), b.lookup_answer(&[9; 32]));
        }
    }

    #[test]
    fn every_message_is_counted_and_the_budget_is_kept() {
        let mut m = mutations(5);
        let mut streamed = 0;
        while m.stream_left() > 0 {
            streamed += m.stream_batch().len();
        }
        while m.lookup_left() > 0 {
            m.lookup_answer(&[9; 32]);
        }
        assert_eq!(streamed, 200);
        assert_eq!(m.total_sent(), 300);
        assert_eq!(m.lookup_answer(&[9; 32]), LookupAnswer::Honest);
    }

    #[test]
    fn no_lookup_answer_is_an_honest_fresh_found_for_the_asked_key() {
        let mut m = mutations(11);
        let asked = [9u8; 32];
        for _ in 0..100 {
            if let LookupAnswer::Frame(WireFrame::Message(payload)) = m.lookup_answer(&asked) {
                if let Ok(answer) = proto::LookupKeyResponse::decode(payload.as_slice()) {
                    if let Some(key) = answer.key {
                        let whole = key.key_hash.len() == 32
                            && key.key_id.len() == 16
                            && key.org_id.len() == 16;
                        assert!(
                            key.key_hash != asked || !whole || answer.revision < 50,
                            "an honest answer: {key:?} at {}",
                            answer.revision
                        );
                    }
                }
            }
        }
    }
}
