//! Credentials and keys: missing, malformed, mistyped, legacy, known, expired; what is
//! forwarded with an accepted key, and without one (public paths, fail-open).

use super::*;

#[test]
fn a_missing_key_gets_401_with_a_bearer_challenge() {
    let worker = synced_worker("{}");
    let (_, action) = send(&worker, &[(":path", "/orders")]);
    assert_eq!(action, Action::Pause);
    let reply = worker.host.reply().unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    assert!(reply.body.contains("missing_api_key"), "{}", reply.body);
    for other_scheme in ["Basic dXNlcjpwYXNz", "Bearer", ""] {
        send(&worker, &[("authorization", other_scheme)]);
        assert_eq!(status(&worker), Some(401), "{other_scheme:?}");
    }
}

#[test]
fn a_malformed_key_gets_403_without_a_lookup() {
    let worker = synced_worker("{}");
    for junk in [
        "sk_live_",
        "sk_live_short",
        "pk_live_abcdefghijkl",
        "sk_live_a b c d e f",
    ] {
        send(&worker, &[("authorization", &format!("Bearer {junk}"))]);
        let reply = worker.host.reply().unwrap();
        assert_eq!(reply.status, 403, "{junk:?}");
        assert!(reply.body.contains("invalid_api_key"));
    }
    assert!(
        worker.host.calls.borrow().is_empty(),
        "keysync was not asked"
    );
}

#[test]
fn a_mistyped_checksummed_key_is_refused_without_a_lookup() {
    let worker = synced_worker("{}");
    let good = checksummed("0123456789abcdefghijABCDEFGHIJkl");
    store(&worker, record(&good));
    let (_, action) = send_key(&worker, &good);
    assert_forwarded_with_identity(&worker, action);

    let mut typo = good.clone().into_bytes();
    typo[20] = if typo[20] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    send_key(&worker, &typo);
    assert_eq!(status(&worker), Some(403));
    // Neither the store nor keysync was asked.
    // The headers, the :path (public-path check) and the reply; no shared-data read.
    assert_eq!(worker.host.host_calls.get(), 3);
    assert!(worker.host.calls.borrow().is_empty());
    worker.on_tick();
    assert_eq!(worker.host.metric("keysync.bad_checksum"), Some(1));
}

#[test]
fn legacy_keys_work_until_turned_off() {
    let worker = synced_worker("{}");
    store(&worker, record(KEY));
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Continue, "accepted by default");

    let strict = synced_worker(r#"{"accept_legacy_keys":false}"#);
    store(&strict, record(KEY));
    send_key(&strict, KEY);
    assert_eq!(status(&strict), Some(403));
    assert!(strict.host.calls.borrow().is_empty());
    let good = checksummed("0123456789abcdefghijABCDEFGHIJkl");
    store(&strict, record(&good));
    let (_, action) = send_key(&strict, &good);
    assert_eq!(action, Action::Continue, "checksummed keys still work");
}

#[test]
fn a_known_key_is_forwarded_with_the_gateways_identity_only() {
    let worker = synced_worker("{}");
    store(&worker, record(KEY));
    let headers = [
        (":path", "/orders"),
        ("authorization", &format!("Bearer {KEY}") as &str),
        ("x-org-id", "forged-org"),
        ("x-api-key-id", "forged-key"),
    ];
    let (_, action) = send(&worker, &headers);
    assert_forwarded_with_identity(&worker, action);
    assert_eq!(worker.host.reply(), None);

    // Through x-api-key too, which is then the header removed.
    let (_, action) = send(&worker, &[("x-api-key", KEY)]);
    assert_forwarded_with_identity(&worker, action);
    assert!(worker.host.request_values("x-api-key").is_empty());
}

#[test]
fn a_hot_key_costs_only_seven_host_calls() {
    let worker = synced_worker("{}");
    store(&worker, record(KEY));
    worker.on_tick();
    send_key(&worker, KEY);
    let (_, action) = send_key(&worker, KEY);
    assert_forwarded_with_identity(&worker, action);
    assert_eq!(
        worker.host.host_calls.get(),
        7,
        "get authorization, the route's scopes, set two identity headers, remove both \
         credential headers, the clock (usage metering's duration)"
    );
    assert_eq!(*worker.host.property_reads.borrow(), [ROUTE_SCOPES]);
}

#[test]
fn a_second_credential_beside_the_one_used_is_not_forwarded_either() {
    let worker = synced_worker("{}");
    store(&worker, record(KEY));
    let bearer = format!("Bearer {KEY}");
    let (_, action) = send(
        &worker,
        &[("authorization", &bearer as &str), ("x-api-key", OTHER_KEY)],
    );
    assert_forwarded_with_identity(&worker, action);
    assert!(worker.host.request_values("x-api-key").is_empty());

    // The key in x-api-key, and one of ours under another scheme in Authorization.
    let basic = format!("Basic {OTHER_KEY}");
    let (_, action) = send(&worker, &[("x-api-key", KEY), ("authorization", &basic)]);
    assert_forwarded_with_identity(&worker, action);
    // Another scheme without a key stays for the backend.
    let (_, action) = send(
        &worker,
        &[("x-api-key", KEY), ("authorization", "Basic dXNlcjpw")],
    );
    assert_eq!(action, Action::Continue);
    assert_eq!(
        worker.host.request_values("authorization"),
        ["Basic dXNlcjpw"]
    );
}

#[test]
fn forward_credential_keeps_the_key_for_the_backend() {
    let worker = synced_worker(r#"{"forward_credential":true}"#);
    store(&worker, record(KEY));
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Continue);
    assert_eq!(
        worker.host.request_values("authorization"),
        [format!("Bearer {KEY}")]
    );
}

#[test]
fn an_expired_key_is_refused_from_its_expiry_second() {
    let worker = synced_worker("{}");
    let now = i64::try_from(NOW_MS / 1000).unwrap();
    store(
        &worker,
        KeyRecord {
            expires_at: now + 1,
            ..record(KEY)
        },
    );
    let (_, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Continue, "still valid");
    store(
        &worker,
        KeyRecord {
            expires_at: now,
            ..record(KEY)
        },
    );
    worker.on_tick();
    send_key(&worker, KEY);
    assert_eq!(status(&worker), Some(403));
}

#[test]
fn a_public_path_passes_without_a_key_and_without_identity() {
    let worker = synced_worker(r#"{"public_paths":["/health","/docs/*"]}"#);
    for path in ["/health", "/health?verbose=1", "/docs/intro"] {
        let (_, action) = send(&worker, &[(":path", path), ("x-org-id", "forged")]);
        assert_eq!(action, Action::Continue, "{path}");
        assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
    }
    send(&worker, &[(":path", "/healthz")]);
    assert_eq!(status(&worker), Some(401), "not public");
}

#[test]
fn a_request_forwarded_without_an_accepted_key_never_carries_one() {
    let worker = synced_worker(r#"{"public_paths":["/docs/*"]}"#);
    let (_, action) = send(
        &worker,
        &[
            (":path", "/docs/a"),
            ("authorization", "Bearer sk_live_not a key"),
            ("x-api-key", "sk_live_AnotherKey000000000001"),
        ],
    );
    assert_eq!(action, Action::Continue);
    assert!(worker.host.request_values("authorization").is_empty());
    assert!(worker.host.request_values("x-api-key").is_empty());

    // Another scheme is the backend's business, not a key.
    send(
        &worker,
        &[(":path", "/docs/a"), ("authorization", "Basic dXNlcjpw")],
    );
    assert_eq!(
        worker.host.request_values("authorization"),
        ["Basic dXNlcjpw"]
    );

    let keeps = synced_worker(r#"{"public_paths":["/docs/*"],"forward_credential":true}"#);
    send(
        &keeps,
        &[
            (":path", "/docs/a"),
            ("x-api-key", "sk_live_AnotherKey000000000001"),
        ],
    );
    assert_eq!(keeps.host.request_values("x-api-key").len(), 1);
}

#[test]
fn fail_open_forwards_without_identity_only_when_nobody_can_tell() {
    let worker = worker(r#"{"failure_mode":"open","miss_lookup":{"enabled":false}}"#);
    let (_, action) = send(
        &worker,
        &[
            ("authorization", &format!("Bearer {KEY}") as &str),
            ("x-org-id", "forged"),
        ],
    );
    assert_eq!(
        action,
        Action::Continue,
        "never synced: cannot tell, fail open"
    );
    assert!(worker.host.request_values(ORG_ID_HEADER).is_empty());
    assert!(
        worker.host.request_values("authorization").is_empty(),
        "nor its credential"
    );

    send(&worker, &[(":path", "/orders")]);
    assert_eq!(
        status(&worker),
        Some(401),
        "a missing key is never failed open"
    );
    send(&worker, &[("authorization", "Bearer sk_live_x")]);
    assert_eq!(status(&worker), Some(403), "nor a malformed one");
}

#[test]
fn a_failed_header_write_is_never_forwarded() {
    let worker = synced_worker("{}");
    store(&worker, record(KEY));
    worker.host.fail_header_writes.set(true);
    let (_, action) = send(
        &worker,
        &[
            ("authorization", &format!("Bearer {KEY}") as &str),
            ("x-org-id", "forged"),
        ],
    );
    assert_eq!(action, Action::Pause);
    assert_eq!(status(&worker), Some(503));
    assert_eq!(
        worker.host.request_values(ORG_ID_HEADER),
        ["forged"],
        "the client's value could not be replaced, so the request stops here"
    );
}

#[test]
fn request_counters_reach_envoy_on_the_tick() {
    let worker = synced_worker("{}");
    store(&worker, record(KEY));
    send_key(&worker, KEY);
    send(&worker, &[(":path", "/")]);
    assert_eq!(worker.host.metric("keysync.allowed"), Some(0));
    worker.on_tick();
    assert_eq!(worker.host.metric("keysync.allowed"), Some(1));
    assert_eq!(worker.host.metric("keysync.missing"), Some(1));
}
