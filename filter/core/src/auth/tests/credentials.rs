//! Credentials in a query parameter or a cookie (`credentials`), through the request
//! flow: the key found, the carrier rewritten before forwarding, disagreeing sources
//! refused, and what a key in a header costs with the new sources configured.

use super::*;

const QUERY_AND_COOKIE: &str = r#"{"credentials":[
    {"header":"authorization","scheme":"Bearer"},{"header":"x-api-key"},
    {"query":"api_key"},{"cookie":"session"}]}"#;

fn keyed_worker(config: &str) -> Worker {
    let worker = synced_worker(config);
    store(&worker, record(KEY));
    worker.on_tick();
    worker
}

#[test]
fn a_query_key_is_accepted_and_taken_off_the_path() {
    let worker = keyed_worker(QUERY_AND_COOKIE);
    let path = format!("/orders?b=2&api_key={KEY}&&a=%2F&b=1");
    let (_, action) = send(&worker, &[(":path", &path)]);
    assert_forwarded_with_identity(&worker, action);
    assert_eq!(
        worker.host.request_values(":path"),
        ["/orders?b=2&&a=%2F&b=1"]
    );
}

#[test]
fn a_cookie_key_is_accepted_and_taken_off_the_cookies() {
    let worker = keyed_worker(QUERY_AND_COOKIE);
    let cookie = format!("theme=dark; session={KEY}; lang=en");
    let (_, action) = send(&worker, &[(":path", "/orders"), ("cookie", &cookie)]);
    assert_forwarded_with_identity(&worker, action);
    assert_eq!(
        worker.host.request_values("cookie"),
        ["theme=dark; lang=en"]
    );
    assert_eq!(worker.host.request_values(":path"), ["/orders"]);

    // A second Cookie line (HTTP/1.1 clients may send several) is read too, and every
    // line replaced by the one rewritten header.
    let second = format!("session={KEY}");
    let (_, action) = send(
        &worker,
        &[
            (":path", "/orders"),
            ("cookie", "theme=dark"),
            ("cookie", &second),
            ("cookie", "a=1"),
        ],
    );
    assert_forwarded_with_identity(&worker, action);
    assert_eq!(worker.host.request_values("cookie"), ["theme=dark; a=1"]);

    let alone = format!("session={KEY}");
    let (_, action) = send(&worker, &[(":path", "/orders"), ("cookie", &alone)]);
    assert_forwarded_with_identity(&worker, action);
    assert!(worker.host.request_values("cookie").is_empty());
}

#[test]
fn sources_that_disagree_are_refused_as_an_invalid_key() {
    let worker = keyed_worker(r#"{"credentials":[{"query":"api_key"},{"header":"x-api-key"}]}"#);
    let path = format!("/orders?api_key={KEY}");
    let (_, action) = send(&worker, &[(":path", &path), ("x-api-key", OTHER_KEY)]);
    assert_eq!(action, Action::Pause);
    let reply = worker.host.reply().unwrap();
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("\"invalid_api_key\""), "{}", reply.body);
}

#[test]
fn a_percent_encoded_query_key_is_decoded_once() {
    let worker = keyed_worker(QUERY_AND_COOKIE);
    let path = format!("/orders?api_key={}", KEY.replace('_', "%5F"));
    let (_, action) = send(&worker, &[(":path", &path)]);
    assert_forwarded_with_identity(&worker, action);

    let worker = keyed_worker(QUERY_AND_COOKIE);
    let path = format!("/orders?api_key={}", KEY.replace('_', "%255F"));
    send(&worker, &[(":path", &path)]);
    assert_eq!(status(&worker), Some(403));
}

#[test]
fn a_public_path_forwards_without_the_query_credential() {
    let worker =
        keyed_worker(r#"{"public_paths":["/docs/*"],"credentials":[{"query":"api_key"}]}"#);
    let (_, action) = send(&worker, &[(":path", "/docs/a?x=1&api_key=sk_live_nope")]);
    assert_eq!(action, Action::Continue);
    assert_eq!(worker.host.request_values(":path"), ["/docs/a?x=1"]);
}

/// The cost the issue asks about: with query and cookie sources configured after the
/// headers, a key in a header makes exactly the host calls it makes with the default.
#[test]
fn a_key_in_a_header_pays_nothing_for_query_and_cookie_sources() {
    let calls = |config: &str| {
        let worker = keyed_worker(config);
        send_key(&worker, KEY);
        worker.host.host_calls.set(0);
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
        worker.host.host_calls.get()
    };
    assert_eq!(calls(QUERY_AND_COOKIE), calls("{}"));
    assert_eq!(calls("{}"), 7);
}
