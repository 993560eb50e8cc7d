//! PostgreSQL's activity in one database, read with `psql`: the transactions that ended
//! (`pg_stat_database`, which counts every client's, autovacuum's and these reads' own,
//! and so varies by tens a minute on its own), the statements that ran (with
//! `pg_stat_statements` loaded: what the clients asked for, by statement), and the
//! connections an application holds.

use keysync_e2e::postgres::{TestPostgres, STAT_STATEMENTS_ENV};

/// Transactions committed or rolled back in `database` so far. Each read is a
/// transaction itself, counted by the next read. Other backends' statistics reach the
/// view within about a second.
pub fn transactions(postgres: &TestPostgres, database: &str) -> u64 {
    postgres
        .psql(
            database,
            "SELECT xact_commit + xact_rollback FROM pg_stat_database \
             WHERE datname = current_database()",
        )
        .trim()
        .parse()
        .expect("xact_commit + xact_rollback is a number")
}

/// Whether the servers the harness starts load `pg_stat_statements`.
pub fn statements_enabled() -> bool {
    std::env::var_os(STAT_STATEMENTS_ENV).is_some()
}

/// Starts counting statements in `database` from zero (creating the extension).
pub fn reset_statements(postgres: &TestPostgres, database: &str) {
    postgres.psql(
        database,
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
    );
    postgres.psql(database, "SELECT pg_stat_statements_reset()");
}

/// The statements counted since the last reset, these reads' own left out.
pub struct Statements {
    /// Calls of every statement.
    pub total: u64,
    /// `COMMIT`s: the transactions clients opened with `BEGIN`.
    pub commits: u64,
    /// The most frequent statements: calls and the statement's first 80 characters.
    pub top: Vec<(u64, String)>,
}

/// What ran since [`reset_statements`]; `most` statements listed.
pub fn statements(postgres: &TestPostgres, database: &str, most: usize) -> Statements {
    let mine = "query NOT LIKE '%pg_stat%'";
    let number = |sql: &str| -> u64 { postgres.psql(database, sql).trim().parse().unwrap_or(0) };
    let total = number(&format!(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE {mine}"
    ));
    let commits = number(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE upper(query) = 'COMMIT'",
    );
    let top = postgres
        .psql(
            database,
            &format!(
                "SELECT calls || ' ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 80) \
                 FROM pg_stat_statements WHERE {mine} ORDER BY calls DESC, query LIMIT {most}"
            ),
        )
        .lines()
        .filter_map(|line| {
            let (calls, query) = line.split_once(' ')?;
            Some((calls.parse().ok()?, query.to_string()))
        })
        .collect();
    Statements {
        total,
        commits,
        top,
    }
}

/// Connections to `database` whose `application_name` is `application`.
pub fn connections(postgres: &TestPostgres, database: &str, application: &str) -> u64 {
    postgres
        .psql(
            database,
            &format!(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name = '{application}'"
            ),
        )
        .trim()
        .parse()
        .expect("a count")
}
