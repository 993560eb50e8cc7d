//! Every row of the request flow's decision table, against a fake host: the key and its
//! credential (`keys`), policies, the miss path (`lookups`), staleness, ready paths,
//! rate limits, quotas and usage metering, each in its own file, and the worker on its
//! own (`worker`); the fixtures they share here.

mod credentials;
mod keys;
mod lookups;
mod policies;
mod quotas;
mod rate_limits;
mod ready_paths;
mod staleness;
mod usage;
mod worker;

use crate::auth::request::AuthRequest;
use crate::auth::worker::AuthWorker;
use crate::config::PluginConfig;
use crate::host::fake_host::FakeHost;
use crate::host::{Action, Host};
use crate::keysync_api::Reply;
use crate::limits::quota;
use crate::store::key_policy::KeyPolicy;
use crate::store::key_record::KeyRecord;
use crate::store::key_store::Change;
use crate::store::store_meta::StoreMeta;
use crate::usage::counters::{self, Counts};
use crate::usage::endpoints;
use crate::usage::metering::Meta;
use keysync_contract::id::Id;
use keysync_contract::key_format;
use keysync_contract::key_hash::KeyHash;
use keysync_contract::limit::{KeyLimit, Limit};
use keysync_contract::subject::Subject;
use keysync_contract::{KEY_ID_HEADER, ORG_ID_HEADER};
use keysync_proto::v1 as proto;
use std::rc::Rc;
use std::time::Duration;

const NOW_MS: u64 = 1_700_000_000_000;
const KEY: &str = "sk_live_RequestFlowTestKey0000001";
const OTHER_KEY: &str = "sk_live_RequestFlowTestKey0000002";
const ORG: Id = Id([0xab; 16]);
const KEY_ID: Id = Id([0x01; 16]);
const STORE_REVISION: u64 = 20;
const EPOCH: u64 = 0x5eed;

type Worker = Rc<AuthWorker<FakeHost>>;

fn worker(config: &str) -> Worker {
    let PluginConfig::Auth(config) = PluginConfig::parse(config.as_bytes()).unwrap() else {
        panic!("not an auth configuration: {config}");
    };
    Rc::new(AuthWorker::new(FakeHost::at(NOW_MS), config))
}

/// A worker whose store completed a full sync just now, at `STORE_REVISION`, and
/// whose tick has seen it.
fn synced_worker(config: &str) -> Worker {
    let worker = worker(config);
    let meta = StoreMeta {
        epoch: EPOCH,
        revision: STORE_REVISION,
        synced: true,
        keys: 0,
        confirmed_age_ms: 0,
        beat: 1,
    };
    worker.store().write_meta(&meta).unwrap();
    crate::limits::local_rate_limit::ensure_slots(&worker.host).unwrap();
    worker.on_tick();
    worker
}

/// The sync service's tick: keysync confirmed the store's data `age_ms` ago.
fn sync_beat(worker: &Worker, age_ms: u64) {
    let mut meta = worker.store().meta();
    meta.beat += 1;
    meta.confirmed_age_ms = age_ms;
    worker.store().write_meta(&meta).unwrap();
}

fn record(key: &str) -> KeyRecord {
    KeyRecord {
        hash: KeyHash::of_key(key.as_bytes()),
        key_id: KEY_ID,
        org_id: ORG,
        expires_at: 0,
        rate_limit: None,
        policy: None,
    }
}

fn store(worker: &Worker, record: KeyRecord) {
    let store = worker.store();
    store.apply_changes(&[Change::Upsert(record)]).unwrap();
}

fn proto_record(record: &KeyRecord) -> proto::KeyRecord {
    let mut proto = proto::KeyRecord {
        key_hash: record.hash.0.to_vec(),
        key_id: record.key_id.0.to_vec(),
        org_id: record.org_id.0.to_vec(),
        expires_at: record.expires_at,
        rate_limit: record.rate_limit.map(|l| proto::RateLimit {
            requests_per_minute: l.limit.requests_per_minute,
            burst: l.limit.burst,
            per_key: l.per_key,
        }),
        ..Default::default()
    };
    if let Some(policy) = &record.policy {
        policy.to_proto(&mut proto);
    }
    proto
}

/// Sends a request with `headers` through a fresh context; returns it (it may be
/// waiting for keysync) and what the filter told Envoy.
fn send(worker: &Worker, headers: &[(&str, &str)]) -> (AuthRequest<FakeHost>, Action) {
    worker.host.new_request(headers);
    let context_id = worker.host.random_u64() as u32;
    let mut request = AuthRequest::new(Rc::clone(worker), worker.host.request(context_id));
    let action = request.on_request_headers();
    (request, action)
}

fn with_key(key: &str) -> Vec<(&'static str, String)> {
    vec![
        (":path", "/orders".into()),
        ("authorization", format!("Bearer {key}")),
    ]
}

fn send_key(worker: &Worker, key: &str) -> (AuthRequest<FakeHost>, Action) {
    let headers = with_key(key);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    send(worker, &headers)
}

fn status(worker: &Worker) -> Option<u32> {
    worker.host.reply().map(|reply| reply.status)
}

fn assert_forwarded_with_identity(worker: &Worker, action: Action) {
    assert_eq!(action, Action::Continue, "reply: {:?}", worker.host.reply());
    assert_eq!(
        worker.host.request_values(ORG_ID_HEADER),
        [ORG.hyphenated()]
    );
    assert_eq!(
        worker.host.request_values(KEY_ID_HEADER),
        [KEY_ID.hyphenated()]
    );
    assert!(
        worker.host.request_values("authorization").is_empty(),
        "the credential is not forwarded"
    );
}

fn answer(request: &mut AuthRequest<FakeHost>, worker: &Worker, reply: Reply) {
    let call = worker.host.last_call().expect("a lookup was sent");
    request.on_lookup_reply(call.token, reply);
}

fn provenance(epoch: u64, confirmed_age_ms: u64) -> Option<proto::Provenance> {
    Some(proto::Provenance {
        epoch,
        confirmed_age_ms,
    })
}

fn found(record: &KeyRecord, revision: u64) -> Reply {
    found_with(record, revision, provenance(EPOCH, 200))
}

fn found_with(record: &KeyRecord, revision: u64, provenance: Option<proto::Provenance>) -> Reply {
    Ok(prost::Message::encode_to_vec(&proto::LookupKeyResponse {
        key: Some(proto_record(record)),
        revision,
        provenance,
    }))
}

fn not_found() -> Reply {
    not_found_at(STORE_REVISION, EPOCH)
}

/// keysync's fresh answer that it does not know the key (revoked), at `revision` of the
/// revision history `epoch`.
fn not_found_at(revision: u64, epoch: u64) -> Reply {
    Ok(prost::Message::encode_to_vec(&proto::LookupKeyResponse {
        key: None,
        revision,
        provenance: provenance(epoch, 200),
    }))
}

fn checksummed(random: &str) -> String {
    let body = format!("sk_live_{random}");
    format!("{body}{}", key_format::checksum_for(&body))
}

const ROUTE_SCOPES: &str = "xds.route_metadata.filter_metadata.keysync.scopes";

fn with_policy(key: &str, scopes: &[&str], networks: &[&str]) -> KeyRecord {
    let mut scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    scopes.sort();
    KeyRecord {
        policy: Some(Rc::new(KeyPolicy {
            scopes,
            networks: (!networks.is_empty())
                .then(|| networks.iter().map(|n| n.parse().unwrap()).collect()),
        })),
        ..record(key)
    }
}

fn from_address(worker: &Worker, address: Option<&str>) {
    *worker.host.source_address.borrow_mut() = address.map(str::to_string);
}

fn route_requires(worker: &Worker, scopes: Option<&str>) {
    *worker.host.route_scopes.borrow_mut() = Ok(scopes.map(str::to_string));
}

fn refused_with(worker: &Worker, error: &str) {
    let reply = worker.host.reply().expect("refused");
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains(error), "{}", reply.body);
    assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
}

fn worker_never_synced() -> Worker {
    worker("{}")
}

fn limited(key: &str, requests_per_minute: u32) -> KeyRecord {
    KeyRecord {
        rate_limit: Some(KeyLimit {
            limit: Limit {
                requests_per_minute,
                burst: 0,
            },
            per_key: false,
        }),
        ..record(key)
    }
}

/// A synced worker whose sync service turned metering on.
fn metered_worker(config: &str) -> Worker {
    let worker = synced_worker(config);
    counters::ensure_slots(&worker.host).unwrap();
    Meta {
        enabled: true,
        instance_id: [9; 16],
    }
    .write(&worker.host)
    .unwrap();
    worker.on_tick();
    worker
}

/// The shared counters of the test key, by endpoint name and outcome, after the
/// worker's tick.
fn counted_by_endpoint(worker: &Worker) -> Vec<(String, u8, Counts)> {
    worker.on_tick();
    let table = endpoints::read_table(&worker.host);
    let mut counted: Vec<(String, u8, Counts)> = (0..counters::SLOTS)
        .filter_map(|slot| worker.host.shared.value(&counters::slot_name(slot)))
        .flat_map(|slot| counters::decode_slot(&slot))
        .filter(|(key, _)| key.key == KEY_ID && key.org == ORG)
        .map(|(key, counts)| {
            let name = key.endpoint.name(&table).unwrap().to_string();
            (name, key.outcome.code(), counts)
        })
        .collect();
    counted.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    counted
}

/// The shared counters of the test key (every endpoint), by outcome, after the
/// worker's tick.
fn counted(worker: &Worker) -> Vec<(u8, Counts)> {
    let mut by_outcome: Vec<(u8, Counts)> = counted_by_endpoint(worker)
        .into_iter()
        .map(|(_, outcome, counts)| (outcome, counts))
        .collect();
    by_outcome.sort_by_key(|(outcome, _)| *outcome);
    by_outcome
}

fn requests(counters: &[(u8, Counts)]) -> Vec<(u8, u64)> {
    counters.iter().map(|(o, c)| (*o, c.requests)).collect()
}

/// A forwarded request of `KEY` answered by the upstream with `status` after `after`.
fn forwarded(worker: &Worker, status: u32, after: Duration) {
    let (mut request, action) = send_key(worker, KEY);
    assert_eq!(action, Action::Continue);
    worker.host.respond(status, after);
    request.on_response_headers();
    request.finish();
}

/// A worker whose list names `subjects`, each with `granted` requests of `limit`.
fn quota_worker(subjects: &[Subject], limit: u64, granted: u64, exhausted: bool) -> Worker {
    let worker = synced_worker("{}");
    quota::ensure_slots(&worker.host).unwrap();
    let now_ms = i64::try_from(worker.host.now_unix_ms()).unwrap();
    for subject in subjects {
        quota::update(&worker.host, subject, |record| {
            record.limit = limit;
            record.period_start_ms = now_ms - 1_000;
            record.resets_at_ms = now_ms + 3_600_000;
            record.granted = granted;
            record.exhausted = exhausted;
        })
        .unwrap();
    }
    let list = quota::QuotaList {
        revision: 1,
        subjects: subjects.iter().copied().collect(),
    };
    worker.host.shared.put(quota::LIST, &list.encode());
    worker.host.shared.put(quota::REVISION, &1u64.to_le_bytes());
    worker.on_tick();
    store(&worker, record(KEY));
    worker
}
