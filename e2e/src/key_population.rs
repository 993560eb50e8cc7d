//! Many keys at once, for loads: inserted by SQL with secrets derived from a label and a
//! number, so PostgreSQL hashes them itself (the CLI takes tens of milliseconds a key)
//! and the load generator can still send them. Revoked by SQL too, the way a script or a
//! console working directly in the database would.

use crate::postgres::TestPostgres;

/// Keys per inserting transaction: each reaches keysync as one catch-up.
const BATCH: usize = 50_000;

/// Keys `sk_live_<label><n>` of one organization in one database.
pub struct KeyPopulation<'a> {
    postgres: &'a TestPostgres,
    database: String,
    org: String,
    label: String,
}

impl<'a> KeyPopulation<'a> {
    /// Keys of `org` (an existing organization id) in `database`; `label` (letters and
    /// digits) keeps them apart from other populations.
    pub fn new(postgres: &'a TestPostgres, database: &str, org: &str, label: &str) -> Self {
        assert!(
            label.bytes().all(|b| b.is_ascii_alphanumeric()),
            "a population label is letters and digits: {label:?}"
        );
        KeyPopulation {
            postgres,
            database: database.to_string(),
            org: org.to_string(),
            label: label.to_string(),
        }
    }

    /// The secret of key `n`.
    pub fn secret(&self, n: usize) -> String {
        format!("sk_live_{}{n:012}", self.label)
    }

    /// The SQL expression that hashes key `n`'s secret (`n` may be a column).
    fn hash_sql(&self, n: &str) -> String {
        format!(
            "sha256(convert_to('sk_live_{}' || lpad(({n})::text, 12, '0'), 'UTF8'))",
            self.label
        )
    }

    /// Inserts keys `range` (active, no expiry, no limit of their own).
    pub fn insert(&self, range: std::ops::Range<usize>) {
        let mut from = range.start;
        while from < range.end {
            let to = (from + BATCH).min(range.end);
            self.postgres.psql(
                &self.database,
                &format!(
                    "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix) \
                     SELECT gen_random_uuid(), '{org}', 'population {label}', {hash}, 'sk_live_' \
                     FROM generate_series({from}, {last}) AS i",
                    org = self.org,
                    label = self.label,
                    hash = self.hash_sql("i"),
                    last = to - 1,
                ),
            );
            from = to;
        }
    }

    /// The ids keysync gave keys `range`, in order (one query).
    pub fn ids(&self, range: std::ops::Range<usize>) -> Vec<String> {
        let rows = self.postgres.psql(
            &self.database,
            &format!(
                "SELECT k.id FROM generate_series({}, {}) AS i \
                 JOIN api_keys k ON k.key_hash = {} ORDER BY i",
                range.start,
                range.end.saturating_sub(1),
                self.hash_sql("i")
            ),
        );
        rows.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Revokes key `n` in one transaction, as `keysync keys revoke` does.
    pub fn revoke(&self, n: usize) {
        self.revoke_all(n..n + 1);
    }

    /// Revokes keys `range` in one transaction.
    pub fn revoke_all(&self, range: std::ops::Range<usize>) {
        self.postgres.psql(&self.database, &self.revoke_sql(range));
    }

    /// Revokes key `n` as [`KeyPopulation::revoke`] does, and returns the database's
    /// clock when the statement had changed the row (its commit follows at once): a
    /// revocation timed from the database's side, not from when `psql` exited.
    pub fn revoke_timed(&self, n: usize) -> std::time::SystemTime {
        let sql = format!(
            "{} RETURNING extract(epoch FROM clock_timestamp())",
            self.revoke_sql(n..n + 1)
        );
        let seconds: f64 = self
            .postgres
            .psql(&self.database, &sql)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("key {n} of population {} is not active", self.label));
        std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(seconds)
    }

    /// The statement revoking keys `range`.
    fn revoke_sql(&self, range: std::ops::Range<usize>) -> String {
        format!(
            "UPDATE api_keys SET active = false, revoked_at = now() \
             WHERE key_hash IN (SELECT {} FROM generate_series({}, {}) AS i)",
            self.hash_sql("i"),
            range.start,
            range.end.saturating_sub(1)
        )
    }

    /// Gives keys `range` a limit of their own (`rpm` a minute, no burst).
    pub fn set_own_limit(&self, range: std::ops::Range<usize>, rpm: u32) {
        self.postgres.psql(
            &self.database,
            &format!(
                "UPDATE api_keys SET rate_limit_rpm = {rpm}, rate_limit_burst = 0 \
                 WHERE key_hash IN (SELECT {} FROM generate_series({}, {}) AS i)",
                self.hash_sql("i"),
                range.start,
                range.end.saturating_sub(1)
            ),
        );
    }
}
