//! What the credential sources cost a request whose key is in a header: the extraction
//! the filter's core (and keysync's ext_authz) runs on every request, timed with the
//! contract's default sources and with query and cookie sources added after the headers,
//! alternating in rounds on the same request (`Authorization: Bearer <key>`, a `:path`
//! with a query string and a `Cookie` the extraction could read). Each read stands for a
//! host call and is counted. Also, for scale, a key in the query parameter.
//!
//! `cargo run --release -p keysync-contract --example credential_extraction [ROUNDS]`

use std::cell::Cell;
use std::hint::black_box;
use std::time::Instant;

use keysync_contract::credential_sources::{CredentialSources, Offered, RawSource};

const KEY: &str = "sk_live_0123456789abcdefABCDEF0123456789abcd";
const PER_ROUND: u32 = 1_000_000;

fn sources(json: &str) -> CredentialSources {
    let raw: Vec<RawSource> = serde_json::from_str(json).unwrap_or_else(|e| panic!("sources: {e}"));
    CredentialSources::new(&raw).unwrap_or_else(|e| panic!("sources: {e}"))
}

/// Nanoseconds an extraction over `headers`, and the reads (host calls) each made.
fn time(sources: &CredentialSources, headers: &[(&str, Vec<u8>)]) -> (f64, u32) {
    let reads = Cell::new(0u32);
    let started = Instant::now();
    for _ in 0..PER_ROUND {
        let extraction = sources.extract(|name| {
            reads.set(reads.get() + 1);
            headers
                .iter()
                .find(|(header, _)| *header == name)
                .map(|(_, value)| value.clone())
        });
        assert!(matches!(extraction.offered, Offered::Key(_)));
        black_box(extraction);
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(PER_ROUND);
    (ns, reads.get() / PER_ROUND)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(15, |n| n.parse().unwrap_or_else(|e| panic!("ROUNDS: {e}")));
    let default = CredentialSources::default();
    let with_query_and_cookie = sources(
        r#"[{"header":"authorization","scheme":"Bearer"},{"header":"x-api-key"},
            {"query":"api_key"},{"cookie":"session"}]"#,
    );
    let keyed_in_header = [
        ("authorization", format!("Bearer {KEY}").into_bytes()),
        (":path", b"/orders?page=2&sort=desc".to_vec()),
        ("cookie", b"theme=dark; lang=en".to_vec()),
    ];
    let keyed_in_query = [
        (
            ":path",
            format!("/orders?page=2&api_key={KEY}&sort=desc").into_bytes(),
        ),
        ("cookie", b"theme=dark; lang=en".to_vec()),
    ];
    let (mut plain, mut added, mut query) = (Vec::new(), Vec::new(), Vec::new());
    let mut reads = (0, 0, 0);
    for _ in 0..rounds {
        let (ns, n) = time(&default, &keyed_in_header);
        plain.push(ns);
        reads.0 = n;
        let (ns, n) = time(&with_query_and_cookie, &keyed_in_header);
        added.push(ns);
        reads.1 = n;
        let (ns, n) = time(&with_query_and_cookie, &keyed_in_query);
        query.push(ns);
        reads.2 = n;
    }
    let ratios: Vec<f64> = added.iter().zip(&plain).map(|(a, p)| a / p).collect();
    let (mut low, mut high) = (f64::MAX, f64::MIN);
    for ratio in &ratios {
        low = low.min(*ratio);
        high = high.max(*ratio);
    }
    println!("{rounds} rounds of {PER_ROUND} extractions each, medians:");
    println!(
        "key in Authorization, default sources:        {:7.1} ns, {} reads",
        median(&mut plain),
        reads.0
    );
    println!(
        "key in Authorization, + query and cookie:     {:7.1} ns, {} reads",
        median(&mut added),
        reads.1
    );
    println!(
        "key in the query parameter (for scale):       {:7.1} ns, {} reads",
        median(&mut query),
        reads.2
    );
    println!(
        "(+ query and cookie) / (default), same round: median {:.3} [{low:.3}, {high:.3}]",
        median(&mut ratios.clone())
    );
}
