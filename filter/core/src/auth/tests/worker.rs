//! The worker on its own, without a request flow around it: the admission step for each
//! rate-limit mode and quota state, forwarding, parking and the tick's chores.

use super::*;
use crate::auth::admission::{Admission, Carried, RateLimitStep, MAX_WAIT_TICKS};
use crate::auth::admission_step::AdmissionStep;
use crate::auth::record_cache::CachedRecord;
use crate::config::RateLimitMode;
use crate::host::fake_host::FakeRequest;
use keysync_contract::usage_outcome::Outcome;
use keysync_contract::{RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_SUBJECT_HEADER};

/// A Bearer key, as the default sources find it: both headers removed.
const BEARER: Carried = Carried {
    headers: 0b11,
    rewritten: None,
};

/// A request of `record`'s key with `headers`, and its admission as the request flow
/// would start it.
fn admission(
    worker: &Worker,
    record: &KeyRecord,
    headers: &[(&str, &str)],
) -> (FakeRequest, Admission) {
    worker.host.new_request(headers);
    let request = worker.host.request(worker.host.random_u64() as u32);
    let rate_limit = RateLimitStep::of(worker.config.rate_limit, record.limit_subject());
    let identity = Rc::new(CachedRecord::new(record.clone()));
    (request, Admission::new(rate_limit, identity, BEARER))
}

#[test]
fn a_request_within_its_limit_is_forwarded_with_its_identity_and_window() {
    let worker = synced_worker("{}");
    let record = limited(KEY, 2);
    let (request, admission) = admission(&worker, &record, &[("authorization", "Bearer x")]);
    assert_eq!(
        worker.admit(&request, &admission, MAX_WAIT_TICKS),
        AdmissionStep::Forwarded
    );
    assert_eq!(admission.rate_limit.get(), RateLimitStep::Done);
    assert_eq!(admission.window.get().map(|w| w.remaining), Some(1));
    assert_eq!(
        worker.host.request_values(ORG_ID_HEADER),
        [ORG.hyphenated()]
    );
    assert_eq!(
        worker.host.request_values(KEY_ID_HEADER),
        [KEY_ID.hyphenated()]
    );
    assert!(worker.host.request_values("authorization").is_empty());
    assert_eq!(worker.host.reply(), None);
}

#[test]
fn a_request_over_its_limit_is_answered_429_and_counted_as_rate_limited() {
    let worker = synced_worker("{}");
    let record = limited(KEY, 1);
    let (request, first) = admission(&worker, &record, &[]);
    worker.admit(&request, &first, MAX_WAIT_TICKS);
    let (request, second) = admission(&worker, &record, &[]);
    assert_eq!(
        worker.admit(&request, &second, MAX_WAIT_TICKS),
        AdmissionStep::Answered(Outcome::RateLimited)
    );
    assert_eq!(worker.host.reply().map(|reply| reply.status), Some(429));
    assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
}

#[test]
fn global_mode_names_the_limit_and_a_key_without_one_strips_what_a_client_sent() {
    let worker = synced_worker(r#"{"rate_limit":"global"}"#);
    assert_eq!(worker.config.rate_limit, RateLimitMode::Global);
    let (request, limited_key) = admission(&worker, &limited(KEY, 7), &[]);
    assert_eq!(
        worker.admit(&request, &limited_key, MAX_WAIT_TICKS),
        AdmissionStep::Forwarded
    );
    assert_eq!(worker.host.request_values(RATE_LIMIT_LIMIT_HEADER), ["7+0"]);
    let forged = [(RATE_LIMIT_SUBJECT_HEADER, "org:someone-else")];
    let (request, unlimited) = admission(&worker, &record(KEY), &forged);
    assert_eq!(unlimited.rate_limit.get(), RateLimitStep::Global(None));
    assert_eq!(
        worker.admit(&request, &unlimited, MAX_WAIT_TICKS),
        AdmissionStep::Forwarded
    );
    assert!(worker
        .host
        .request_values(RATE_LIMIT_SUBJECT_HEADER)
        .is_empty());
    // Headers that cannot be written: the gateway's own 503.
    worker.host.fail_header_writes.set(true);
    let (request, failing) = admission(&worker, &limited(KEY, 7), &[]);
    assert_eq!(
        worker.admit(&request, &failing, MAX_WAIT_TICKS),
        AdmissionStep::Answered(Outcome::Other)
    );
    assert_eq!(worker.host.reply().map(|reply| reply.status), Some(503));
}

#[test]
fn a_spent_quota_grant_waits_while_it_may_and_refuses_when_it_may_not() {
    let worker = quota_worker(&[Subject::Org(ORG)], 1_000, 0, false);
    // The credit (1 of a 1,000 quota) goes to the first request.
    let (request, first) = admission(&worker, &record(KEY), &[]);
    assert_eq!(
        worker.admit(&request, &first, MAX_WAIT_TICKS),
        AdmissionStep::Forwarded
    );
    let (request, second) = admission(&worker, &record(KEY), &[]);
    assert_eq!(
        worker.admit(&request, &second, MAX_WAIT_TICKS),
        AdmissionStep::Wait
    );
    assert_eq!(worker.host.reply(), None, "not refused while it may wait");
    assert_eq!(
        worker.admit(&request, &second, 0),
        AdmissionStep::Answered(Outcome::QuotaExceeded)
    );
    let reply = worker.host.reply().expect("refused");
    assert_eq!(
        (reply.status, reply.header("retry-after")),
        (429, Some("1"))
    );
}

#[test]
fn the_tick_admits_a_parked_request_in_its_own_context_and_drops_one_whose_client_left() {
    let worker = quota_worker(&[Subject::Key(KEY_ID)], 1_000, 0, false);
    let (request, first) = admission(&worker, &record(KEY), &[]);
    worker.admit(&request, &first, MAX_WAIT_TICKS);
    let (waiting, kept) = admission(&worker, &record(KEY), &[]);
    assert_eq!(
        worker.admit(&waiting, &kept, MAX_WAIT_TICKS),
        AdmissionStep::Wait
    );
    let kept = Rc::new(kept);
    worker.park(waiting.clone(), Rc::clone(&kept));
    let (gone, left) = admission(&worker, &record(KEY), &[]);
    worker.park(gone.clone(), Rc::new(left));
    // The next lease comes: the tick forwards and resumes the request still waiting.
    quota::update(&worker.host, &Subject::Key(KEY_ID), |r| r.granted = 10).unwrap();
    worker.host.new_request(&[]);
    worker.on_tick();
    assert_eq!(
        worker.host.effective_context.get(),
        Some(waiting.context_id)
    );
    assert_eq!(worker.host.resumed.get(), 1, "only the request still there");
    assert_eq!(
        worker.host.request_values(ORG_ID_HEADER),
        [ORG.hyphenated()]
    );
    assert_eq!(kept.answered.get(), None, "forwarded, not answered");
    assert!(worker.parked.borrow().is_empty());
}

#[test]
fn a_parked_request_is_refused_once_its_ticks_run_out() {
    let worker = quota_worker(&[Subject::Org(ORG)], 1_000, 0, false);
    let (request, first) = admission(&worker, &record(KEY), &[]);
    worker.admit(&request, &first, MAX_WAIT_TICKS);
    let (waiting, admission) = admission(&worker, &record(KEY), &[]);
    let admission = Rc::new(admission);
    worker.park(waiting, Rc::clone(&admission));
    for _ in 0..MAX_WAIT_TICKS {
        worker.on_tick();
        assert_eq!(admission.answered.get(), None);
    }
    worker.on_tick();
    assert_eq!(admission.answered.get(), Some(Outcome::QuotaExceeded));
    assert_eq!(worker.host.reply().map(|reply| reply.status), Some(429));
    assert!(worker.parked.borrow().is_empty());
}

#[test]
fn the_tick_flushes_stats_and_drops_record_copies_when_the_store_moves() {
    let worker = synced_worker("{}");
    store(&worker, record(KEY));
    worker.on_tick();
    let hash = record(KEY).hash;
    assert!(matches!(
        worker.judge_stored(&hash).0,
        crate::auth::decision::Verdict::Allow(_)
    ));
    worker.on_tick();
    assert!(
        worker.records.borrow().get(&hash).is_some(),
        "kept while the store stands"
    );
    worker.stats.bump(crate::stats::Counter::Allowed);
    assert_eq!(
        worker.host.metric("keysync.allowed"),
        Some(0),
        "batched until the tick"
    );
    store(&worker, record(OTHER_KEY));
    worker.on_tick();
    assert_eq!(worker.host.metric("keysync.allowed"), Some(1));
    assert!(
        worker.records.borrow().get(&hash).is_none(),
        "the store moved"
    );
}

#[test]
fn metering_follows_what_the_sync_service_said() {
    let worker = synced_worker("{}");
    assert!(worker.metering(), "counts until told otherwise");
    worker.count_unattributed();
    Meta {
        enabled: false,
        instance_id: [9; 16],
    }
    .write(&worker.host)
    .unwrap();
    worker.on_tick();
    assert!(!worker.metering());
    assert!(!worker.times(None), "nothing is timed either");
    assert!(worker.usage.borrow().is_empty(), "what it held is dropped");
}
