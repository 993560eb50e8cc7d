//! What pricing costs at scale: `orgs` organizations on a plan with endpoint weights,
//! each with last month's hourly rows on `endpoints` endpoints in a real PostgreSQL.
//! Measured: `keysync usage --cost` for one organization (the whole command: start,
//! connect, read, price, print), and the close of the month by a real `keysync serve`
//! (every organization's invoice priced, stored and published on a real
//! Kafka-protocol broker), from its log line.

use std::time::{Duration, Instant};

use keysync_e2e::kafka::TestKafka;
use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::postgres::{database_of, TestPostgres};

use crate::median::median;

pub fn run(orgs: usize, endpoints: usize, runs: usize) {
    let endpoints = endpoints.max(1);
    let postgres = TestPostgres::start();
    let url = postgres.create_database();
    let database = database_of(&url).to_owned();
    ks::migrate(&url);
    let started = Instant::now();
    seed(&postgres, &database, orgs, endpoints);
    let count = postgres.psql(&database, "SELECT count(*) FROM usage_hourly");
    let month = postgres.psql(
        &database,
        "SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month', \
                'YYYY-MM')",
    );
    let month = month.trim().to_owned();
    println!(
        "seeded {orgs} organizations x {endpoints} endpoints x every hour of {month}: {} \
         rows, in {:.0}s",
        count.trim(),
        started.elapsed().as_secs_f64()
    );

    let org = "00000000-0000-4000-8000-000000000001";
    let org_rows = postgres.psql(
        &database,
        &format!("SELECT count(*) FROM usage_hourly WHERE org_id = '{org}'"),
    );
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let began = Instant::now();
        let invoice = ks::cli_json(
            &url,
            &["usage", "--org-id", org, "--cost", "--period", &month],
        );
        times.push(began.elapsed().as_secs_f64() * 1000.0);
        assert!(
            invoice["total_minor"].as_i64().unwrap_or(0) > 0,
            "{invoice}"
        );
    }
    println!(
        "keysync usage --cost --period {month} (one organization, {} rows): {:.1} ms median \
         of {} runs (the whole command)",
        org_rows.trim(),
        median(&mut times).unwrap_or(0.0),
        times.len()
    );

    let kafka = TestKafka::start();
    kafka.create_topic("keysync.usage", 1);
    let keysync = Keysync::start(
        &url,
        &[("KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS", &kafka.brokers())],
    );
    let line = keysync.process.wait_for_log(
        &format!("invoices issued for {month}: "),
        Duration::from_secs(600),
    );
    println!(
        "the close of {month} by keysync serve: {}",
        line.split(&format!("invoices issued for {month}: "))
            .nth(1)
            .unwrap_or(&line)
            .trim()
    );
}

/// The organizations, on one plan since the month before last, and last month's rows:
/// every hour, each endpoint about 1,000 requests answered 2xx and 20 refused.
fn seed(postgres: &TestPostgres, database: &str, orgs: usize, endpoints: usize) {
    postgres.psql(
        database,
        "DO $$ DECLARE m date := date_trunc('month', now() AT TIME ZONE 'UTC')::date \
             - interval '1 month'; \
         BEGIN EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF usage_hourly \
             FOR VALUES FROM (%L) TO (%L)', 'usage_hourly_p' || to_char(m, 'YYYYMM'), \
             (m::timestamp AT TIME ZONE 'UTC'), \
             ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC')); END $$",
    );
    postgres.psql(
        database,
        "INSERT INTO price_plans (id, name, currency, base_fee_minor, included_requests, \
             tiers, weights) \
         VALUES ('00000000-0000-4000-8000-00000000beef', 'bench', 'EUR', 4900, 1000000, \
             '[{\"up_to\": 10000000, \"price_per_1000_minor\": 50}, \
               {\"up_to\": null, \"price_per_1000_minor\": 30}]', \
             '{\"e1\": 5, \"e2\": 0}')",
    );
    postgres.psql(
        database,
        &format!(
            "INSERT INTO organizations (id, name) \
             SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, \
                    'org ' || n FROM generate_series(1, {orgs}) n; \
             INSERT INTO org_plans (org_id, effective_from, plan_id) \
             SELECT id, (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '2 months') \
                        AT TIME ZONE 'UTC', '00000000-0000-4000-8000-00000000beef' \
             FROM organizations"
        ),
    );
    postgres.psql(
        database,
        &format!(
            "WITH month AS ( \
                 SELECT start AT TIME ZONE 'UTC' AS start, \
                        (start + interval '1 month') AT TIME ZONE 'UTC' AS next \
                 FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') \
                              - interval '1 month' AS start) utc) \
             INSERT INTO usage_hourly (hour, org_id, key_id, endpoint, outcome, requests, \
                 duration_us, le_10ms, le_100ms, le_1s, over_1s, request_bytes, response_bytes) \
             SELECT h, o.id, '00000000-0000-0000-0000-00000000000a', 'e' || e, r.outcome, \
                    r.requests, 0, 0, 0, 0, 0, 0, 0 \
             FROM month, generate_series(month.start, month.next - interval '1 hour', \
                                         interval '1 hour') h \
             CROSS JOIN organizations o \
             CROSS JOIN generate_series(1, {endpoints}) e \
             CROSS JOIN (VALUES (2::smallint, 1000), (6::smallint, 20)) r (outcome, requests)"
        ),
    );
    postgres.psql(database, "VACUUM ANALYZE usage_hourly");
}
