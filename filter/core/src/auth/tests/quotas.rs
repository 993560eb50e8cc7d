//! Monthly quotas: refusals, requests parked for the next lease, each counted once.

use super::*;

#[test]
fn an_exhausted_org_quota_answers_429_with_the_quota_and_its_reset() {
    let worker = quota_worker(&[Subject::Org(ORG)], 1_000, 2, true);
    for _ in 0..2 {
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
    }
    let (request, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Pause);
    let reply = worker.host.reply().expect("refused");
    assert_eq!(reply.status, 429);
    assert!(reply.body.contains("quota_exceeded"), "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("3600"));
    assert_eq!(
        reply.header("ratelimit"),
        Some("limit=1000, remaining=0, reset=3600")
    );
    assert_eq!(reply.header("ratelimit-policy"), Some("1000;w=3601"));
    assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
    drop(request);
    worker.on_tick();
    assert_eq!(worker.host.metric("keysync.quota_exceeded"), Some(1));
}

#[test]
fn a_spent_grant_waits_for_the_next_lease_then_goes_on() {
    let worker = quota_worker(&[Subject::Key(KEY_ID)], 1_000, 0, false);
    // Credit first: a thousandth of 1,000 is 1.
    let (_, action) = send_key(&worker, KEY);
    assert_forwarded_with_identity(&worker, action);
    let (request, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Pause, "parked for the lease");
    assert_eq!(worker.host.reply(), None, "not refused");
    // The sync service writes the next grant; the tick admits the parked request.
    quota::update(&worker.host, &Subject::Key(KEY_ID), |r| r.granted = 10).unwrap();
    worker.on_tick();
    assert_eq!(worker.host.resumed.get(), 1);
    assert_eq!(worker.host.request_values(ORG_ID_HEADER).len(), 1);
    drop(request);
}

#[test]
fn a_lease_that_never_comes_refuses_with_retry_after_1_within_a_second() {
    let worker = quota_worker(&[Subject::Org(ORG)], 1_000, 0, false);
    send_key(&worker, KEY);
    let (request, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Pause);
    for _ in 0..4 {
        worker.on_tick();
        assert_eq!(worker.host.reply(), None);
    }
    worker.on_tick();
    let reply = worker.host.reply().expect("refused at last");
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(worker.host.resumed.get(), 0);
    drop(request);
}

#[test]
fn a_key_quota_is_not_counted_twice_while_its_org_waits() {
    let worker = quota_worker(&[Subject::Key(KEY_ID), Subject::Org(ORG)], 1_000, 0, false);
    // Both credits (1 each) go to the first request.
    let (_, action) = send_key(&worker, KEY);
    assert_forwarded_with_identity(&worker, action);
    // The key's own quota gets a grant; the organization's does not yet.
    quota::update(&worker.host, &Subject::Key(KEY_ID), |r| r.granted = 5).unwrap();
    let (request, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Pause);
    for _ in 0..2 {
        worker.on_tick();
    }
    quota::update(&worker.host, &Subject::Org(ORG), |r| r.granted = 5).unwrap();
    worker.on_tick();
    assert_eq!(worker.host.resumed.get(), 1);
    let admitted = |subject: Subject| {
        let slot = worker
            .host
            .shared
            .value(&quota::slot_name(quota::slot_of(&subject)))
            .unwrap();
        quota::decode_slot(&slot)
            .into_iter()
            .find(|r| r.subject == subject)
            .unwrap()
            .admitted
    };
    assert_eq!(admitted(Subject::Key(KEY_ID)), 2, "once per request");
    assert_eq!(admitted(Subject::Org(ORG)), 2);
    drop(request);
}

#[test]
fn keys_without_a_quota_never_touch_the_quota_states() {
    let other_org = Subject::Org(Id([0x77; 16]));
    let worker = quota_worker(&[other_org], 1_000, 0, true);
    let writes = worker.host.shared.writes.get();
    for _ in 0..5 {
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
    }
    assert_eq!(worker.host.shared.writes.get(), writes);
}
