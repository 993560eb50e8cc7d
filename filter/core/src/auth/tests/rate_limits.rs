//! Local and global rate limits, and requests parked for other workers' leases.

use super::*;
use crate::host::fake_log::logged_line;
use keysync_contract::rate_limit_headers::RATELIMIT_HEADER;
use keysync_contract::{RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_SUBJECT_HEADER};

#[test]
fn a_key_over_its_rate_limit_gets_429_with_when_to_retry() {
    let worker = synced_worker("{}");
    store(&worker, limited(KEY, 2));
    for remaining in [1, 0] {
        let (mut request, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Continue);
        request.on_response_headers();
        let header = worker.host.response_value(RATELIMIT_HEADER).unwrap();
        assert!(
            header.starts_with(&format!("limit=2, remaining={remaining}, reset=")),
            "{header}"
        );
    }
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Pause);
    let reply = worker.host.reply().unwrap();
    assert_eq!(reply.status, 429);
    assert!(reply.body.contains("rate_limited"));
    let reset = 60 - (NOW_MS / 1000) % 60;
    assert_eq!(
        reply.header("retry-after"),
        Some(reset.to_string().as_str())
    );
    assert_eq!(reply.header("ratelimit-policy"), Some("2;w=60"));
    assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
}

#[test]
fn a_request_waits_for_another_workers_lease_rather_than_lose_it() {
    use crate::limits::local_rate_limit::{check, give_back, Decision, Leases};
    let worker = synced_worker("{}");
    let limited = limited(KEY, 6_400);
    store(&worker, limited.clone());
    let (subject, limit) = limited.limit_subject().unwrap();
    // Another worker took a lease of 32 at the start of the window and went quiet.
    let mut other = Leases::default();
    let now = NOW_MS / 1000;
    assert!(matches!(
        check(&worker.host, &mut other, &subject, limit, now).unwrap(),
        Decision::Allow(_)
    ));
    let mut allowed = 1;
    let waiting = loop {
        let (request, action) = send_key(&worker, KEY);
        match (action, status(&worker)) {
            (Action::Continue, None) => allowed += 1,
            (Action::Pause, None) => break request,
            other => panic!("{other:?} after {allowed}"),
        }
    };
    assert_eq!(
        allowed,
        6_400 - 31,
        "the other worker's unused 31 are not handed out"
    );
    // Its tick gives them back; ours then decides the waiting request, in its context.
    give_back(&worker.host, &mut other, now);
    worker.host.new_request(&[]);
    worker.on_tick();
    assert_eq!(
        worker.host.effective_context.get(),
        Some(waiting.request.context_id)
    );
    assert_eq!(worker.host.resumed.get(), 1);
    assert_eq!(
        worker.host.request_values(ORG_ID_HEADER),
        [ORG.hyphenated()]
    );
    let mut waiting = waiting;
    waiting.on_response_headers();
    let header = worker.host.response_value(RATELIMIT_HEADER).unwrap();
    assert!(header.starts_with("limit=6400, remaining=30,"), "{header}");
}

#[test]
fn a_request_waiting_for_a_lease_that_never_comes_back_is_refused_in_time() {
    use crate::limits::local_rate_limit::{check, Leases};
    let worker = synced_worker("{}");
    let limited = limited(KEY, 128);
    store(&worker, limited.clone());
    let (subject, limit) = limited.limit_subject().unwrap();
    let mut other = Leases::default();
    check(&worker.host, &mut other, &subject, limit, NOW_MS / 1000).unwrap();
    let waiting = loop {
        let (request, action) = send_key(&worker, KEY);
        if action == Action::Pause {
            break request;
        }
    };
    for _ in 0..4 {
        worker.host.new_request(&[]);
        worker.on_tick();
        assert_eq!(status(&worker), None, "still waiting");
    }
    worker.host.new_request(&[]);
    worker.on_tick();
    assert_eq!(status(&worker), Some(429), "refused after four ticks");
    assert!(logged_line("were not given back in time").is_some());
    drop(waiting);
}

#[test]
fn global_mode_names_the_subject_and_limit_and_strips_client_values() {
    let worker = synced_worker(r#"{"rate_limit":"global"}"#);
    store(&worker, limited(KEY, 100));
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Continue);
    assert_eq!(
        worker.host.request_values(RATE_LIMIT_SUBJECT_HEADER),
        [format!("org:{}", ORG.hyphenated())]
    );
    assert_eq!(
        worker.host.request_values(RATE_LIMIT_LIMIT_HEADER),
        ["100+0"]
    );

    store(&worker, record(OTHER_KEY));
    let (_, action) = send(
        &worker,
        &[
            ("authorization", &format!("Bearer {OTHER_KEY}") as &str),
            (RATE_LIMIT_SUBJECT_HEADER, "org:someone-else"),
            (RATE_LIMIT_LIMIT_HEADER, "1000000+0"),
        ],
    );
    assert_eq!(action, Action::Continue);
    assert!(worker
        .host
        .request_values(RATE_LIMIT_SUBJECT_HEADER)
        .is_empty());
    assert!(worker
        .host
        .request_values(RATE_LIMIT_LIMIT_HEADER)
        .is_empty());
}
