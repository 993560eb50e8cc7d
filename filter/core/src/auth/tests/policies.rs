//! Key policies: a key's allowlist and the route's required scopes.

use super::*;
use crate::host::fake_log::logged_line;
use keysync_contract::key_policy::ROUTE_SCOPES_HEADER;
use keysync_contract::{RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_SUBJECT_HEADER};

#[test]
fn a_key_without_policy_reads_neither_its_address_nor_any_policy() {
    let worker = synced_worker("{}");
    store(&worker, record(KEY));
    let (_, action) = send_key(&worker, KEY);
    assert_forwarded_with_identity(&worker, action);
    // The store read (the worker's copy was empty: the bucket and the organization
    // table), and nothing else new.
    assert_eq!(*worker.host.property_reads.borrow(), [ROUTE_SCOPES]);
    assert_eq!(worker.host.host_calls.get(), 9);
    assert_eq!(
        worker
            .store()
            .find(&record(KEY).hash)
            .unwrap()
            .unwrap()
            .policy,
        None
    );
}

#[test]
fn an_allowlisted_key_is_admitted_from_inside_its_networks_only() {
    let worker = synced_worker("{}");
    store(
        &worker,
        with_policy(KEY, &[], &["203.0.113.0/24", "2001:db8::/32"]),
    );
    for inside in [
        "203.0.113.77:5000",
        "[::ffff:203.0.113.77]:5000",
        "[2001:db8::1]:443",
    ] {
        from_address(&worker, Some(inside));
        let (_, action) = send_key(&worker, KEY);
        assert_forwarded_with_identity(&worker, action);
        assert_eq!(
            *worker.host.property_reads.borrow(),
            ["source.address", ROUTE_SCOPES],
            "{inside}"
        );
    }
    for outside in [
        Some("198.51.100.1:5000"),
        Some("[2001:db9::1]:443"),
        Some("/var/run/envoy.sock"),
        Some(""),
        None,
    ] {
        from_address(&worker, outside);
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Pause, "{outside:?}");
        refused_with(&worker, "ip_not_allowed");
        assert_eq!(
            *worker.host.property_reads.borrow(),
            ["source.address"],
            "refused before the route is asked"
        );
    }
    worker.on_tick();
    assert_eq!(worker.host.metric("keysync.ip_not_allowed"), Some(5));
    assert_eq!(worker.host.metric("keysync.allowed"), Some(3));
}

#[test]
fn a_scoped_route_admits_only_keys_that_grant_every_scope() {
    let worker = synced_worker("{}");
    store(
        &worker,
        with_policy(KEY, &["orders:read", "orders:write"], &[]),
    );
    store(&worker, with_policy(OTHER_KEY, &["orders:read"], &[]));
    let bare = checksummed("0123456789abcdefghijABCDEFGHIJkl");
    store(&worker, record(&bare));

    route_requires(&worker, Some("orders:write orders:read"));
    let (_, action) = send_key(&worker, KEY);
    assert_forwarded_with_identity(&worker, action);
    assert_eq!(
        *worker.host.property_reads.borrow(),
        [ROUTE_SCOPES],
        "a key with scopes only has no address to check"
    );
    for short in [OTHER_KEY, &bare] {
        send_key(&worker, short);
        refused_with(&worker, "insufficient_scope");
        assert_eq!(
            worker.host.reply().unwrap().header("www-authenticate"),
            Some("Bearer error=\"insufficient_scope\"")
        );
    }

    route_requires(&worker, None);
    for any in [KEY, OTHER_KEY, &bare] {
        let (_, action) = send_key(&worker, any);
        assert_eq!(action, Action::Continue, "a route without scopes");
    }
    route_requires(&worker, Some(""));
    let (_, action) = send_key(&worker, &bare);
    assert_eq!(action, Action::Continue, "an empty requirement");

    route_requires(&worker, Some("orders:Read"));
    send_key(&worker, KEY);
    refused_with(&worker, "insufficient_scope");
    *worker.host.route_scopes.borrow_mut() = Err(crate::host::HostError(7));
    send_key(&worker, KEY);
    refused_with(&worker, "insufficient_scope");

    worker.on_tick();
    assert_eq!(worker.host.metric("keysync.insufficient_scope"), Some(4));
}

#[test]
fn with_route_scopes_from_the_header_no_property_is_read() {
    let worker = synced_worker(r#"{"route_scopes":"header"}"#);
    store(&worker, with_policy(KEY, &["orders:read"], &[]));
    let bare = checksummed("0123456789abcdefghijABCDEFGHIJkl");
    store(&worker, record(&bare));
    let send_with = |key: &str, route_scopes: Option<&str>| {
        let mut headers = with_key(key);
        if let Some(value) = route_scopes {
            headers.push((ROUTE_SCOPES_HEADER, value.to_string()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        send(&worker, &headers)
    };
    // A route without the header (Envoy sets it only on routes that require scopes)
    // requires none, whatever its metadata would say.
    route_requires(&worker, Some("orders:write"));
    for key in [KEY, bare.as_str()] {
        let (_, action) = send_with(key, None);
        assert_forwarded_with_identity(&worker, action);
    }
    let (_, action) = send_with(KEY, Some("orders:read"));
    assert_forwarded_with_identity(&worker, action);
    send_with(&bare, Some("orders:read"));
    refused_with(&worker, "insufficient_scope");
    send_with(KEY, Some("orders:read orders:write"));
    refused_with(&worker, "insufficient_scope");
    send_with(KEY, Some("Orders:Read"));
    refused_with(&worker, "insufficient_scope");
    assert!(
        worker.host.property_reads.borrow().is_empty(),
        "{:?}",
        worker.host.property_reads.borrow()
    );
}

#[test]
fn a_key_with_both_is_checked_for_both() {
    let worker = synced_worker("{}");
    store(
        &worker,
        with_policy(KEY, &["orders:read"], &["203.0.113.0/24"]),
    );
    route_requires(&worker, Some("orders:read"));
    let (_, action) = send_key(&worker, KEY);
    assert_forwarded_with_identity(&worker, action);
    route_requires(&worker, Some("orders:write"));
    send_key(&worker, KEY);
    refused_with(&worker, "insufficient_scope");
    from_address(&worker, Some("198.51.100.1:1"));
    send_key(&worker, KEY);
    refused_with(&worker, "ip_not_allowed");
}

#[test]
fn a_refused_request_does_not_use_the_rate_limit() {
    for global in [false, true] {
        let config = if global {
            r#"{"rate_limit":"global"}"#
        } else {
            "{}"
        };
        let worker = synced_worker(config);
        store(
            &worker,
            KeyRecord {
                rate_limit: limited(KEY, 1).rate_limit,
                ..with_policy(KEY, &["orders:read"], &["203.0.113.0/24"])
            },
        );
        from_address(&worker, Some("198.51.100.1:1"));
        for _ in 0..3 {
            send_key(&worker, KEY);
            refused_with(&worker, "ip_not_allowed");
            assert!(worker
                .host
                .request_values(RATE_LIMIT_SUBJECT_HEADER)
                .is_empty());
        }
        from_address(&worker, Some("203.0.113.1:1"));
        route_requires(&worker, Some("billing:read"));
        for _ in 0..3 {
            send_key(&worker, KEY);
            refused_with(&worker, "insufficient_scope");
        }
        route_requires(&worker, Some("orders:read"));
        let (_, action) = send_key(&worker, KEY);
        assert_eq!(action, Action::Continue, "the one request of the minute");
        if global {
            assert_eq!(worker.host.request_values(RATE_LIMIT_LIMIT_HEADER), ["1+0"]);
        } else {
            send_key(&worker, KEY);
            assert_eq!(status(&worker), Some(429), "and only then the limit");
        }
    }
}

#[test]
fn a_key_found_by_keysync_carries_its_policy_into_the_store() {
    let worker = synced_worker("{}");
    let restricted = with_policy(KEY, &["orders:read"], &["203.0.113.0/24"]);
    from_address(&worker, Some("198.51.100.1:1"));
    let (mut request, action) = send_key(&worker, KEY);
    assert_eq!(action, Action::Pause);
    answer(&mut request, &worker, found(&restricted, STORE_REVISION));
    refused_with(&worker, "ip_not_allowed");
    assert_eq!(worker.host.resumed.get(), 0);
    assert_eq!(
        worker.store().find(&restricted.hash),
        Ok(Some(restricted.clone())),
        "cached with its policy"
    );

    // The next request is judged from the store, with the policy.
    from_address(&worker, Some("203.0.113.9:1"));
    route_requires(&worker, Some("orders:read"));
    let (_, action) = send_key(&worker, KEY);
    assert_forwarded_with_identity(&worker, action);
    route_requires(&worker, Some("orders:write"));
    send_key(&worker, KEY);
    refused_with(&worker, "insufficient_scope");
}

#[test]
fn a_bad_policy_from_keysync_admits_nobody_and_is_counted() {
    let worker = synced_worker("{}");
    let mut bad = proto_record(&record(KEY));
    bad.allowed_networks = vec![proto::Network {
        address: vec![203, 0, 113],
        prefix_len: 24,
    }];
    bad.scopes = vec!["Orders".into()];
    let (mut request, _) = send_key(&worker, KEY);
    let reply = Ok(prost::Message::encode_to_vec(&proto::LookupKeyResponse {
        key: Some(bad),
        revision: STORE_REVISION,
        provenance: provenance(EPOCH, 200),
    }));
    answer(&mut request, &worker, reply);
    refused_with(&worker, "ip_not_allowed");
    worker.on_tick();
    assert_eq!(worker.host.metric("keysync.bad_policies"), Some(2));
    assert!(logged_line("keysync sent a bad key policy").is_some());
}
