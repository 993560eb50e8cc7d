//! The fleet overview (`GET /v1/usage`) over months of usage: the hours that are final
//! come from keysync's rollup (by hour, and by day for the rankings), the rest from the
//! usage rollup itself, and the answer is the same sums either way, to the hour at the
//! edges of the range.

use std::time::Duration;

use keysync_e2e::keysync::Keysync;
use keysync_e2e::poll;
use serde_json::Value;

use super::{ok, Api, Service};

/// Requests of `outcome` in the answer's series.
fn outcome_sum(fleet: &Value, outcome: &str) -> u64 {
    fleet["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|point| point["outcome"] == outcome)
        .map(|point| point["requests"].as_u64().unwrap())
        .sum()
}

fn ranked(fleet: &Value, list: &str) -> Vec<(String, u64, u64)> {
    fleet[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|org| {
            (
                org["name"].as_str().unwrap().to_owned(),
                org["requests"].as_u64().unwrap(),
                org["refused"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_overview_adds_the_rolled_up_days_and_the_last_hours_exactly() {
    let service = Service::start();
    let api = service.api();
    let old = api.create_org("old traffic");
    let new = api.create_org("new traffic");
    // Rows as flushes would have left them, in the partitions of the months they fall in
    // (keysync's names, as it creates them); hours back from the current one.
    service.sql(
        "DO $$ DECLARE m date := date_trunc('month', now() AT TIME ZONE 'UTC')::date \
             - interval '3 months'; \
         BEGIN WHILE m < date_trunc('month', now() AT TIME ZONE 'UTC')::date LOOP \
             EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF usage_hourly \
                 FOR VALUES FROM (%L) TO (%L)', 'usage_hourly_p' || to_char(m, 'YYYYMM'), \
                 (m::timestamp AT TIME ZONE 'UTC'), \
                 ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC')); \
             m := (m + interval '1 month')::date; END LOOP; END $$",
    );
    let row = |org: &str, hours_back: i64, outcome: i16, requests: u64| {
        format!(
            "(date_trunc('hour', now()) - interval '{hours_back} hours', '{org}', \
              '00000000-0000-0000-0000-00000000000a', {outcome}, {requests}, 0, 0, 0, 0, 0, 0, 0)"
        )
    };
    let rows = [
        row(&old, 24 * 30 + 2, 2, 9), // before the 30 days: not counted
        row(&old, 24 * 30 - 2, 2, 5), // the first, partial day of the 30: counted
        row(&old, 24 * 10, 2, 50),    // a whole rolled day
        row(&old, 24 * 3, 2, 100),    // another
        row(&old, 24 * 3, 6, 7),      // refused the same hour
        row(&new, 1, 2, 20),          // the last hour, never final yet: from the hours
        row(&new, 0, 2, 30),          // this hour
        row(&new, 24 * 45, 8, 1000),  // long before
    ];
    service.sql(&format!(
        "INSERT INTO usage_hourly (hour, org_id, key_id, outcome, requests, duration_us, \
             le_10ms, le_100ms, le_1s, over_1s, request_bytes, response_bytes) VALUES {}",
        rows.join(", ")
    ));
    // The running keysync has rolled up the (then empty) final hours already: as if
    // these rows had been there, start over. A keysync started now rolls them up first.
    service.sql("UPDATE usage_fleet_rollup SET rolled_until = NULL");
    let keysync = Keysync::start(&service.database_url, &[]);
    poll::eventually(
        "the rollup of every final hour",
        Duration::from_secs(60),
        || {
            service.sql(
                "SELECT rolled_until >= date_trunc('hour', now() - interval '65 minutes') \
                 FROM usage_fleet_rollup",
            )
        },
        |done| done.trim() == "t",
    );
    let rolled_days = service.sql("SELECT count(*) FROM usage_org_daily");
    assert!(
        rolled_days.trim().parse::<u64>().unwrap() >= 4,
        "{rolled_days}"
    );

    let reader = Api {
        addr: keysync.api(),
        token: api.token.clone(),
    };
    let month = ok(reader.get("/v1/usage?since=30d"), 200);
    assert_eq!(
        outcome_sum(&month, "2xx"),
        5 + 50 + 100 + 20 + 30,
        "{month:#}"
    );
    assert_eq!(outcome_sum(&month, "rate_limited"), 7, "{month:#}");
    assert_eq!(month["total_requests"], 5 + 50 + 100 + 7 + 20 + 30);
    assert_eq!(
        ranked(&month, "top_by_requests"),
        [
            ("old traffic".to_owned(), 5 + 50 + 100 + 7, 7),
            ("new traffic".to_owned(), 50, 0)
        ],
        "{month:#}"
    );
    assert_eq!(
        ranked(&month, "top_by_refusals"),
        [("old traffic".to_owned(), 162, 7)]
    );
    let day = ok(reader.get("/v1/usage?since=24h"), 200);
    assert_eq!(
        ranked(&day, "top_by_requests"),
        [("new traffic".to_owned(), 50, 0)],
        "{day:#}"
    );
    let year = ok(reader.get("/v1/usage?since=400d&top=1"), 200);
    assert_eq!(
        ranked(&year, "top_by_requests"),
        [("new traffic".to_owned(), 1050, 1000)],
        "{year:#}"
    );
    assert_eq!(
        year["total_requests"],
        5 + 9 + 50 + 100 + 7 + 20 + 30 + 1000
    );
}
