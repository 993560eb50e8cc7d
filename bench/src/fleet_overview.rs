//! What the web console's overview costs at scale: `orgs` organizations with `months`
//! months of hourly usage (answered requests and rate-limit refusals every hour) in a
//! real PostgreSQL, and `GET /v1/usage` (the fleet's series by hour and outcome and both
//! rankings) asked of a real `keysync serve` over HTTP for the last 24 hours, 7 and 30
//! days, once keysync has rolled up the final hours (which it does when it starts): the
//! whole answer, as the console's browser waits for it.

use std::time::{Duration, Instant};

use keysync_e2e::http;
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::poll;
use keysync_e2e::postgres::TestPostgres;

use crate::anomaly_cost::{self, ROWS};
use crate::median::median;

pub fn run(orgs: usize, months: u32, runs: usize) {
    let postgres = TestPostgres::start();
    // An organization's hour: its first key's answered requests, and some refused.
    let (url, database) =
        anomaly_cost::seeded_database(&postgres, orgs, months, &[ROWS[0], ROWS[3]]);

    let token = ks::cli_json(&url, &["admin-tokens", "create", "--name", "bench"])["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let keysync = Keysync::start(&url, &[]);
    // keysync rolls the final hours up when it starts, a month a step: the overview is
    // measured once that is done, as it runs from then on.
    let began = Instant::now();
    poll::eventually(
        "the fleet rollup of the seeded months",
        Duration::from_secs(3600),
        || {
            postgres.psql(
                &database,
                "SELECT rolled_until >= date_trunc('hour', now() - interval '65 minutes') \
                 FROM usage_fleet_rollup",
            )
        },
        |done| done.trim() == "t",
    );
    println!(
        "keysync rolled up the final hours of {months} months + this one in {:.0}s ({} \
         hourly rows, {} daily rows)",
        began.elapsed().as_secs_f64(),
        postgres
            .psql(&database, "SELECT count(*) FROM usage_fleet_hourly")
            .trim(),
        postgres
            .psql(&database, "SELECT count(*) FROM usage_org_daily")
            .trim(),
    );
    let bearer = format!("Bearer {token}");
    for since in ["24h", "7d", "30d"] {
        let path = format!("/v1/usage?since={since}");
        let mut times = Vec::with_capacity(runs);
        let mut answer = None;
        // The first answer warms PostgreSQL's cache; the runs measured follow it.
        for run in 0..=runs.max(1) {
            let began = Instant::now();
            let response = http::get(
                keysync.api(),
                &path,
                &[("authorization", bearer.as_bytes())],
            )
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
            let elapsed = began.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(response.status, 200, "{}", response.text());
            if run > 0 {
                times.push(elapsed);
            }
            answer = Some(response);
        }
        let body = answer.map(|response| response.json()).unwrap_or_default();
        let max = times.iter().copied().fold(0.0, f64::max);
        println!(
            "GET /v1/usage?since={since}: {:.0} ms median, {max:.0} ms max of {} runs \
             ({} points, {} requests, top organization {})",
            median(&mut times).unwrap_or(0.0),
            runs.max(1),
            body["series"].as_array().map_or(0, Vec::len),
            body["total_requests"],
            body["top_by_requests"][0]["name"],
        );
    }
}
