//! Key creation through the operator HTTP API (`POST /v1/keys` on keysync's API listener):
//! keys a second, with and without an `Idempotency-Key`, against a real keysync and
//! PostgreSQL (no Envoy: the gateway's request path never touches the API). wrk drives
//! keep-alive connections with a real admin token; every key it was answered about must
//! be in the database afterwards.

use std::time::Duration;

use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::postgres::{database_of, TestPostgres};
use keysync_e2e::ScratchDir;

use crate::wrk;

/// A wrk script that creates a key per request for `org_id` with `token`; with
/// `idempotent`, each request carries an Idempotency-Key of its own.
fn create_script(token: &str, org_id: &str, idempotent: bool, run: usize) -> String {
    format!(
        r#"local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local n = 0
request = function()
  n = n + 1
  local headers = {{["Authorization"] = "Bearer {token}", ["Content-Type"] = "application/json"}}
  if {idempotent} then
    headers["Idempotency-Key"] = "bench-run-{run}-thread-" .. id .. "-request-" .. n
  end
  return wrk.format("POST", "/v1/keys", headers, '{{"org_id":"{org_id}","name":"bench key"}}')
end
"#
    )
}

pub fn run(rounds: usize, seconds: u64, connections: u32) {
    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    ks::migrate(&database_url);
    let keysync = Keysync::start(&database_url, &[]);
    let token = ks::cli_json(
        &database_url,
        &["admin-tokens", "create", "--name", "bench"],
    );
    let token = token["token"].as_str().expect("token").to_owned();
    let org_id = ks::create_org(&database_url, "bench");
    let scratch = ScratchDir::new("api-create").expect("scratch dir");
    let count = || -> u64 {
        postgres
            .psql(database_of(&database_url), "SELECT count(*) FROM api_keys")
            .trim()
            .parse()
            .expect("a count")
    };

    let mut figures: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (variant, idempotent) in [false, true].into_iter().enumerate() {
            let script = scratch.path().join(format!("create-{round}-{variant}.lua"));
            let text = create_script(&token, &org_id, idempotent, round * 2 + variant);
            std::fs::write(&script, text).expect("write the wrk script");
            let before = count();
            let report = wrk::run_with(
                keysync.api(),
                connections,
                Duration::from_secs(seconds),
                &[],
                Some(&script),
            );
            let made = count() - before;
            assert_eq!(report.non_2xx, 0, "some creates failed: {report:?}");
            // wrk stops with requests in flight: the database may hold a few more.
            assert!(
                made >= report.requests && made <= report.requests + u64::from(connections),
                "wrk counted {} creates, the database has {made} new keys",
                report.requests
            );
            println!(
                "round {round}, {}: {:.0} keys/s ({} keys in {seconds}s), p50 {:.1} ms, \
                 p99 {:.1} ms",
                if idempotent {
                    "with Idempotency-Key"
                } else {
                    "no Idempotency-Key"
                },
                report.requests_per_sec,
                report.requests,
                report.p50_us / 1000.0,
                report.p99_us / 1000.0,
            );
            figures[variant].push(report.requests_per_sec);
        }
    }
    for (variant, name) in ["no Idempotency-Key", "with Idempotency-Key"]
        .iter()
        .enumerate()
    {
        let mut rates = figures[variant].clone();
        let median = crate::median::median(&mut rates).unwrap_or(0.0);
        println!(
            "key creation through the API, {name}: median {median:.0} keys/s over {rounds} \
             round(s) of {seconds}s, {connections} connections (target: at least 500)"
        );
    }
    println!("keys in the database: {}", count());
}
