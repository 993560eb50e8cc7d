//! The benchmarks' key population: a PostgreSQL with one org whose keys have
//! deterministic secrets, so PostgreSQL hashes them itself (the CLI would take minutes
//! for a million) and the load generator can still send them.

use keysync_e2e::keysync::{self as ks, Keysync};
use keysync_e2e::poll;
use keysync_e2e::postgres::{database_of, TestPostgres};
use std::time::Duration;

/// Keys per inserting transaction: each reaches keysync as one catch-up.
const BATCH: usize = 100_000;
/// How often keysync's metrics are read while it loads: rarely enough not to weigh on
/// the load being measured.
const METRICS_INTERVAL: Duration = Duration::from_millis(200);

/// The secret of bench key `i` (counting from 1).
pub fn secret(i: usize) -> String {
    format!("sk_live_bench{i:020}")
}

pub struct BenchKeys {
    pub postgres: TestPostgres,
    pub database_url: String,
    pub database: String,
    pub org: String,
    /// Keys `1..=loaded` exist.
    loaded: usize,
}

impl BenchKeys {
    /// A fresh PostgreSQL with the migrations applied and an org, but no keys yet.
    pub fn start() -> BenchKeys {
        let postgres = TestPostgres::start();
        let database_url = postgres.create_database();
        let database = database_of(&database_url).to_string();
        ks::migrate(&database_url);
        let org = ks::create_org(&database_url, "bench");
        BenchKeys {
            postgres,
            database_url,
            database,
            org,
            loaded: 0,
        }
    }

    /// Inserts keys until `count` exist, `BATCH` per transaction, then vacuums: left to
    /// autovacuum, that work would land on a CPU the measurements after it need (it
    /// showed as p99 outliers and as extra transactions in the query counts).
    pub fn fill_to(&mut self, count: usize) {
        if self.loaded >= count {
            return;
        }
        while self.loaded < count {
            let from = self.loaded + 1;
            let to = (self.loaded + BATCH).min(count);
            self.postgres.psql(
                &self.database,
                &format!(
                    "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix) \
                     SELECT gen_random_uuid(), '{org}', 'bench', \
                            sha256(convert_to('sk_live_bench' || lpad(i::text, 20, '0'), 'UTF8')), 'sk_live_benc' \
                     FROM generate_series({from}, {to}) AS i",
                    org = self.org
                ),
            );
            self.loaded = to;
        }
        self.postgres
            .psql(&self.database, "VACUUM (ANALYZE) api_keys");
    }
}

/// Polls keysync's metrics until its store holds `count` keys.
pub fn wait_for_keysync(keysync: &Keysync, count: usize, timeout: Duration) {
    poll::within(timeout, METRICS_INTERVAL, || {
        let held = keysync.metric("keysync_snapshot_keys", &[]) as usize;
        if held >= count {
            Ok(())
        } else {
            Err(held)
        }
    })
    .unwrap_or_else(|held| panic!("keysync never held {count} keys: {held} after {timeout:?}"));
}
