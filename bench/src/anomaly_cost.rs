//! What one anomaly evaluation costs at scale: `orgs` organizations, each with `months`
//! months of hourly rows in the usage rollup (`rows` a row per organization and hour:
//! keys and outcomes), in a real PostgreSQL, judged by a real `keysync serve` every
//! second. The figures are keysync's own (the evaluations' duration histogram: lock,
//! the one statement, judging, commit) and, with `pg_stat_statements` loaded
//! (`KEYSYNC_TEST_PG_STAT_STATEMENTS=1`), the statement's time and the buffers it read.

use std::time::{Duration, Instant};

use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::poll;
use keysync_e2e::postgres::{database_of, TestPostgres};

use crate::pg_activity;

/// The (key, outcome, share of the organization's hour) of the rows of one organization
/// and hour, up to 6: two keys' answered requests, a few 5xx, a few refused.
pub(crate) const ROWS: [(&str, i16, i64); 6] = [
    ("00000000-0000-0000-0000-00000000000a", 2, 60),
    ("00000000-0000-0000-0000-00000000000b", 2, 30),
    ("00000000-0000-0000-0000-00000000000a", 5, 1),
    ("00000000-0000-0000-0000-00000000000a", 6, 2),
    ("00000000-0000-0000-0000-00000000000b", 4, 5),
    ("00000000-0000-0000-0000-00000000000b", 8, 2),
];

pub fn run(orgs: usize, months: u32, rows: usize, evaluations: u64) {
    let rows = rows.clamp(1, ROWS.len());
    let postgres = TestPostgres::start();
    let (url, database) = seeded_database(&postgres, orgs, months, &ROWS[..rows]);

    let keysync = Keysync::start(&url, &[("KEYSYNC_ANOMALY_INTERVAL", "1s")]);
    let metric = |name: &str| keysync.metric(name, &[]);
    let ok = || keysync.metric("keysync_anomaly_evaluations_total", &["result=\"ok\""]);
    // The first evaluations warm the cache; the ones measured start after them.
    poll::eventually("warm-up evaluations", Duration::from_secs(120), ok, |n| {
        *n >= 3.0
    });
    let statements = pg_activity::statements_enabled();
    if statements {
        pg_activity::reset_statements(&postgres, &database);
    }
    let (sum_before, count_before) = (
        metric("keysync_anomaly_evaluation_duration_seconds_sum"),
        metric("keysync_anomaly_evaluation_duration_seconds_count"),
    );
    poll::eventually(
        "the evaluations measured",
        Duration::from_secs(evaluations * 10 + 60),
        || metric("keysync_anomaly_evaluation_duration_seconds_count"),
        |n| *n >= count_before + evaluations as f64,
    );
    let sum = metric("keysync_anomaly_evaluation_duration_seconds_sum") - sum_before;
    let count = metric("keysync_anomaly_evaluation_duration_seconds_count") - count_before;
    println!(
        "{count} evaluations: {:.1} ms each on average (lock, statement, judging, commit); \
         failed {}, skipped {}",
        sum / count * 1000.0,
        keysync.metric("keysync_anomaly_evaluations_total", &["result=\"failed\""]),
        keysync.metric("keysync_anomaly_evaluations_total", &["result=\"skipped\""]),
    );
    if statements {
        let line = postgres.psql(
            &database,
            "SELECT calls || ' calls, ' || round(mean_exec_time::numeric, 1) || ' ms mean, ' \
                 || round(max_exec_time::numeric, 1) || ' ms max, ' \
                 || (shared_blks_hit / calls) || ' buffers hit and ' \
                 || (shared_blks_read / calls) || ' read a call, ' || (rows / calls) \
                 || ' rows a call' \
             FROM pg_stat_statements WHERE query LIKE '%FROM usage_hourly e WHERE%'",
        );
        println!("the statement: {}", line.trim());
    } else {
        println!(
            "(set {}=1 for the statement's own time and buffers)",
            keysync_e2e::postgres::STAT_STATEMENTS_ENV
        );
    }
}

/// A migrated database of its own with `orgs` organizations' hourly usage over `months`
/// (`rows` an organization and hour), its size printed: its URL and name.
pub(crate) fn seeded_database(
    postgres: &TestPostgres,
    orgs: usize,
    months: u32,
    rows: &[(&str, i16, i64)],
) -> (String, String) {
    let url = postgres.create_database();
    let database = database_of(&url).to_owned();
    ks::migrate(&url);
    let started = Instant::now();
    seed(postgres, &database, orgs, months, rows);
    let count = postgres.psql(&database, "SELECT count(*) FROM usage_hourly");
    let size = postgres.psql(
        &database,
        "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'usage_hourly'::regclass",
    );
    println!(
        "seeded {orgs} organizations x {months} months + this one x {} rows an hour: \
         {} rows, {} with indexes, in {:.0}s",
        rows.len(),
        count.trim(),
        size.trim(),
        started.elapsed().as_secs_f64()
    );
    (url, database)
}

/// The organizations, the months' partitions, and their rows, a month at a time:
/// every hour from the first of the month `months` before this one until now, each
/// organization's hour about 1,000 requests, shared by `rows` (some of [`ROWS`]).
pub(crate) fn seed(
    postgres: &TestPostgres,
    database: &str,
    orgs: usize,
    months: u32,
    rows: &[(&str, i16, i64)],
) {
    postgres.psql(
        database,
        &format!(
            "DO $$ DECLARE m date := date_trunc('month', now() AT TIME ZONE 'UTC')::date \
                 - interval '{months} months'; \
             BEGIN WHILE m < date_trunc('month', now() AT TIME ZONE 'UTC')::date LOOP \
                 EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF usage_hourly \
                     FOR VALUES FROM (%L) TO (%L)', 'usage_hourly_p' || to_char(m, 'YYYYMM'), \
                     (m::timestamp AT TIME ZONE 'UTC'), \
                     ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC')); \
                 m := (m + interval '1 month')::date; END LOOP; END $$"
        ),
    );
    postgres.psql(
        database,
        &format!(
            "INSERT INTO organizations (id, name) \
             SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, \
                    'org ' || n FROM generate_series(1, {orgs}) n"
        ),
    );
    let values: Vec<String> = rows
        .iter()
        .map(|(key, outcome, share)| format!("('{key}'::uuid, {outcome}::smallint, {share})"))
        .collect();
    for back in (0..=months).rev() {
        postgres.psql(
            database,
            &format!(
                "WITH month AS ( \
                     SELECT start AT TIME ZONE 'UTC' AS start, \
                            (start + interval '1 month') AT TIME ZONE 'UTC' AS next \
                     FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') \
                                  - interval '{back} months' AS start) utc) \
                 INSERT INTO usage_hourly (hour, org_id, key_id, outcome, requests, \
                     duration_us, le_10ms, le_100ms, le_1s, over_1s, request_bytes, \
                     response_bytes) \
                 SELECT h, o.id, r.key_id, r.outcome, \
                        (900 + o.n % 200 + extract(hour FROM h)::int) * r.share / 100, \
                        0, 0, 0, 0, 0, 0, 0 \
                 FROM month, generate_series(month.start, \
                     LEAST(month.next - interval '1 hour', date_trunc('hour', now())), \
                     interval '1 hour') h \
                 CROSS JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n \
                             FROM organizations) o \
                 CROSS JOIN (VALUES {}) r (key_id, outcome, share)",
                values.join(", ")
            ),
        );
    }
    postgres.psql(database, "VACUUM ANALYZE usage_hourly");
}
