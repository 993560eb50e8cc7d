use super::*;
use std::cell::RefCell;
use std::collections::HashMap;

const KEY: &str = "sk_live_0123456789abcdefABCDEF0123456789";
const OTHER: &str = "sk_live_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";

fn sources(json: &str) -> CredentialSources {
    let raw: Vec<RawSource> = serde_json::from_str(json).unwrap();
    CredentialSources::new(&raw).unwrap()
}

fn all_four() -> CredentialSources {
    sources(
        r#"[{"header":"authorization","scheme":"Bearer"},{"header":"x-api-key"},
            {"query":"api_key"},{"cookie":"session"}]"#,
    )
}

/// Runs `extract` on a request of `headers`, and says which carriers it read.
fn extract(sources: &CredentialSources, headers: &[(&str, &str)]) -> (Extraction, Vec<String>) {
    let map: HashMap<&str, &str> = headers.iter().copied().collect();
    let reads = RefCell::new(Vec::new());
    let extraction = sources.extract(|name| {
        reads.borrow_mut().push(name.to_owned());
        map.get(name).map(|value| value.as_bytes().to_vec())
    });
    (extraction, reads.into_inner())
}

fn key(value: &str) -> Offered {
    Offered::Key(value.as_bytes().to_vec())
}

#[test]
fn the_default_is_the_contracts_two_headers() {
    let default = CredentialSources::default();
    assert_eq!(
        default,
        sources(r#"[{"header":"Authorization","scheme":"bearer"},{"header":"x-api-key"}]"#)
    );
    assert!(!default.beyond_headers());
    let (bearer, reads) = extract(&default, &[("authorization", &format!("Bearer {KEY}"))]);
    assert_eq!(bearer.offered, key(KEY));
    assert_eq!(
        reads,
        ["authorization"],
        "x-api-key is not read after a Bearer key"
    );
    let removed: Vec<_> = default.headers_to_remove(&bearer.strip).collect();
    assert_eq!(removed, ["authorization", "x-api-key"]);

    let (api_key, reads) = extract(
        &default,
        &[("authorization", "Basic dXNlcjpw"), ("x-api-key", KEY)],
    );
    assert_eq!(api_key.offered, key(KEY));
    assert_eq!(reads, ["authorization", "x-api-key"]);
    let removed: Vec<_> = default.headers_to_remove(&api_key.strip).collect();
    assert_eq!(
        removed,
        ["x-api-key"],
        "another scheme is the backend's business"
    );

    assert_eq!(extract(&default, &[]).0.offered, Offered::Missing);
    let (junk, _) = extract(
        &default,
        &[
            ("authorization", "Bearer sk_live_short"),
            ("x-api-key", KEY),
        ],
    );
    assert_eq!(
        junk.offered,
        Offered::Malformed,
        "the first present source decides"
    );
}

#[test]
fn a_key_in_a_header_reads_nothing_for_query_or_cookie_sources() {
    let (found, reads) = extract(
        &all_four(),
        &[
            ("authorization", &format!("Bearer {KEY}")),
            (PATH, "/p?api_key=whatever"),
            (COOKIE, "session=whatever"),
        ],
    );
    assert_eq!(found.offered, key(KEY));
    assert_eq!(reads, ["authorization"]);
    assert_eq!(found.strip.path(), None);
    assert_eq!(found.strip.cookie(), None);
}

#[test]
fn a_query_key_is_taken_and_removed_from_the_path() {
    let (found, reads) = extract(
        &all_four(),
        &[(PATH, &format!("/v1/x?b=2&api_key={KEY}&a=%20"))],
    );
    assert_eq!(found.offered, key(KEY));
    assert_eq!(reads, ["authorization", "x-api-key", PATH, COOKIE]);
    assert_eq!(found.strip.path(), Some("/v1/x?b=2&a=%20"));
    assert_eq!(found.strip.cookie(), None);
}

#[test]
fn a_cookie_key_is_taken_and_removed_with_the_other_cookies_kept() {
    let (found, _) = extract(
        &all_four(),
        &[(COOKIE, &format!("theme=dark; session={KEY}; lang=en"))],
    );
    assert_eq!(found.offered, key(KEY));
    assert_eq!(found.strip.cookie(), Some(Some("theme=dark; lang=en")));
    let (alone, _) = extract(&all_four(), &[(COOKIE, &format!("session={KEY}"))]);
    assert_eq!(
        alone.strip.cookie(),
        Some(None),
        "no cookie left: the header goes"
    );
}

#[test]
fn sources_that_disagree_are_refused_and_agreeing_ones_all_stripped() {
    let query_first =
        sources(r#"[{"query":"api_key"},{"cookie":"session"},{"header":"x-api-key"}]"#);
    let path = format!("/p?api_key={KEY}");
    let cases: [(&[(&str, &str)], Offered); 5] = [
        (
            &[(PATH, &path), (COOKIE, &format!("session={OTHER}"))],
            Offered::Disagreeing,
        ),
        (&[(PATH, &path), ("x-api-key", OTHER)], Offered::Disagreeing),
        (
            &[(PATH, &format!("/p?api_key={KEY}&api_key={OTHER}"))],
            Offered::Disagreeing,
        ),
        (
            &[
                (PATH, &path),
                (COOKIE, &format!("session={KEY}")),
                ("x-api-key", KEY),
            ],
            key(KEY),
        ),
        (&[(PATH, "/p?api_key="), ("x-api-key", KEY)], key(KEY)),
    ];
    for (headers, expected) in cases {
        let (found, _) = extract(&query_first, headers);
        assert_eq!(found.offered, expected, "{headers:?}");
    }
    let (found, _) = extract(
        &query_first,
        &[
            (PATH, &path),
            (COOKIE, &format!("a=1; session={KEY}")),
            ("x-api-key", KEY),
        ],
    );
    assert_eq!(found.strip.path(), Some("/p"));
    assert_eq!(found.strip.cookie(), Some(Some("a=1")));
    assert_eq!(
        query_first
            .headers_to_remove(&found.strip)
            .collect::<Vec<_>>(),
        ["x-api-key"]
    );
}

#[test]
fn a_percent_encoded_key_is_decoded_once() {
    let query = sources(r#"[{"query":"api_key"}]"#);
    let encoded = KEY.replace('_', "%5F");
    let (found, _) = extract(&query, &[(PATH, &format!("/p?api_key={encoded}"))]);
    assert_eq!(found.offered, key(KEY));
    let twice = KEY.replace('_', "%255F");
    let (found, _) = extract(&query, &[(PATH, &format!("/p?api_key={twice}"))]);
    assert_eq!(found.offered, Offered::Malformed);
    let (found, _) = extract(&query, &[(PATH, "/p?api_key=sk_live_%zz0123456789")]);
    assert_eq!(found.offered, Offered::Malformed);
    assert_eq!(found.strip.path(), Some("/p"), "stripped even when refused");
}

#[test]
fn over_long_carriers_are_refused_not_trouble() {
    let both = sources(r#"[{"query":"api_key"},{"cookie":"session"}]"#);
    let long_key = format!("sk_live_{}", "a".repeat(300_000));
    let path = format!("/p?{}api_key={long_key}", "x=1&".repeat(50_000));
    let cookie = format!("{}session={KEY}", "c=1; ".repeat(50_000));
    let (found, _) = extract(&both, &[(PATH, &path), (COOKIE, &cookie)]);
    assert_eq!(found.offered, Offered::Disagreeing);
    let (found, _) = extract(&both, &[(PATH, &path)]);
    assert_eq!(found.offered, Offered::Malformed);
}

#[test]
fn a_rewritten_path_that_is_not_utf8_cannot_be_stripped() {
    let query = sources(r#"[{"query":"api_key"}]"#);
    let found = query.extract(|name| {
        (name == PATH).then(|| [b"/p?x=\xff&api_key=".as_slice(), KEY.as_bytes()].concat())
    });
    assert_eq!(found.offered, Offered::Malformed);
    assert_eq!(
        found.strip.path(),
        Some("/p?x=\u{fffd}"),
        "taken out all the same"
    );
}

#[test]
fn bad_configurations_are_refused_with_a_reason() {
    let cases = [
        ("[]", "between 1 and 8"),
        (r#"[{"header":"x","query":"y"}]"#, "exactly one of"),
        (r#"[{}]"#, "exactly one of"),
        (r#"[{"query":"k","scheme":"Bearer"}]"#, "header only"),
        (
            r#"[{"header":"authorization","scheme":"Basic"}]"#,
            "must be \"Bearer\"",
        ),
        (r#"[{"header":""}]"#, "1 to 64"),
        (r#"[{"header":":path"}]"#, "[A-Za-z0-9._-]"),
        (r#"[{"query":"a b"}]"#, "[A-Za-z0-9._-]"),
        (r#"[{"cookie":"a;b"}]"#, "[A-Za-z0-9._-]"),
        (r#"[{"query":"k"},{"query":"k"}]"#, "listed twice"),
        (
            r#"[{"header":"X"},{"header":"x","scheme":"Bearer"}]"#,
            "listed twice",
        ),
    ];
    for (json, reason) in cases {
        let raw: Vec<RawSource> = serde_json::from_str(json).unwrap();
        let error = CredentialSources::new(&raw).unwrap_err();
        assert!(error.contains(reason), "{json}: {error}");
    }
    let nine = format!("[{}]", [r#"{"query":"k"}"#; 9].join(","));
    let raw: Vec<RawSource> = serde_json::from_str(&nine).unwrap();
    assert!(CredentialSources::new(&raw).is_err());
    assert!(serde_json::from_str::<Vec<RawSource>>(r#"[{"header":"x","extra":1}]"#).is_err());
}

#[test]
fn a_schemed_header_after_the_key_is_read_to_know_whether_it_goes() {
    let api_key_first = sources(
        r#"[{"header":"x-api-key"},{"header":"authorization","scheme":"Bearer"},{"query":"k"}]"#,
    );
    let smuggled = format!("Basic {OTHER}");
    let (found, reads) = extract(
        &api_key_first,
        &[("x-api-key", KEY), ("authorization", &smuggled)],
    );
    assert_eq!(found.offered, key(KEY));
    assert_eq!(
        reads,
        ["x-api-key", "authorization"],
        "the query is not read"
    );
    let removed: Vec<_> = api_key_first.headers_to_remove(&found.strip).collect();
    assert_eq!(removed, ["x-api-key", "authorization"]);
    let (found, _) = extract(
        &api_key_first,
        &[("x-api-key", KEY), ("authorization", "Basic dXNlcjpw")],
    );
    let removed: Vec<_> = api_key_first.headers_to_remove(&found.strip).collect();
    assert_eq!(removed, ["x-api-key"]);
}
