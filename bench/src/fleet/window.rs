//! What keysync and PostgreSQL did over one measuring window of the fleet benchmark:
//! keysync's CPU (from /proc/<pid>/stat) and resident memory, this process's CPU (the
//! fleet's own cost, on the same cores), PostgreSQL's transactions, statements and
//! keysync's connections, and the machine's load average at both ends.

use std::time::Instant;

use keysync_e2e::postgres::TestPostgres;

use crate::cpu_time::process_cpu_seconds;
use crate::machine_load::load_average;
use crate::pg_activity::{self, Statements};
use crate::proc_status::status_kib;

/// Where the figures come from.
pub struct Probe<'a> {
    pub postgres: &'a TestPostgres,
    pub database: &'a str,
    pub keysync_pid: u32,
}

/// A window being measured.
pub struct Started {
    at: Instant,
    keysync_cpu: f64,
    own_cpu: f64,
    transactions: u64,
    load: String,
}

/// A measured window.
pub struct Measured {
    pub seconds: f64,
    /// keysync's CPU over the window, in percent of one core.
    pub keysync_cpu_percent: f64,
    /// This process's (the simulated gateways').
    pub own_cpu_percent: f64,
    pub keysync_rss_kib: u64,
    /// keysync's peak resident memory since it started (`VmHWM`).
    pub keysync_peak_kib: u64,
    /// Transactions a second in the database (every client's, autovacuum's).
    pub transactions_per_second: f64,
    /// The statements of the window, when `pg_stat_statements` is loaded.
    pub statements: Option<Statements>,
    /// keysync's PostgreSQL connections at the end.
    pub keysync_connections: u64,
    pub load_before: String,
    pub load_after: String,
}

impl Probe<'_> {
    pub fn start(&self) -> Started {
        if pg_activity::statements_enabled() {
            pg_activity::reset_statements(self.postgres, self.database);
        }
        Started {
            load: load_average(),
            transactions: pg_activity::transactions(self.postgres, self.database),
            keysync_cpu: process_cpu_seconds(self.keysync_pid),
            own_cpu: process_cpu_seconds(std::process::id()),
            at: Instant::now(),
        }
    }

    pub fn finish(&self, started: Started) -> Measured {
        let seconds = started.at.elapsed().as_secs_f64();
        let keysync_cpu = process_cpu_seconds(self.keysync_pid) - started.keysync_cpu;
        let own_cpu = process_cpu_seconds(std::process::id()) - started.own_cpu;
        let load_after = load_average();
        // The read that started the window is one transaction of the count.
        let transactions = pg_activity::transactions(self.postgres, self.database)
            .saturating_sub(started.transactions)
            .saturating_sub(1);
        let statements = pg_activity::statements_enabled()
            .then(|| pg_activity::statements(self.postgres, self.database, 10));
        Measured {
            seconds,
            keysync_cpu_percent: 100.0 * keysync_cpu / seconds,
            own_cpu_percent: 100.0 * own_cpu / seconds,
            keysync_rss_kib: status_kib(self.keysync_pid, "VmRSS"),
            keysync_peak_kib: status_kib(self.keysync_pid, "VmHWM"),
            transactions_per_second: transactions as f64 / seconds,
            statements,
            keysync_connections: pg_activity::connections(self.postgres, self.database, "keysync"),
            load_before: started.load,
            load_after,
        }
    }
}

impl Measured {
    /// The window's figures as `(name, value)` rows, each name prefixed with `phase`.
    pub fn rows(&self, phase: &str) -> Vec<(String, String)> {
        let mut rows = vec![
            (
                format!("{phase}: keysync CPU (% of one core)"),
                format!("{:.1}", self.keysync_cpu_percent),
            ),
            (
                format!("{phase}: keysync RSS / peak so far"),
                format!(
                    "{:.1} MiB / {:.1} MiB",
                    mib(self.keysync_rss_kib),
                    mib(self.keysync_peak_kib)
                ),
            ),
            (
                format!("{phase}: PostgreSQL transactions a second (pg_stat_database)"),
                format!("{:.1}", self.transactions_per_second),
            ),
        ];
        if let Some(statements) = &self.statements {
            rows.push((
                format!("{phase}: statements a second / COMMITs a second (pg_stat_statements)"),
                format!(
                    "{:.1} / {:.1}",
                    statements.total as f64 / self.seconds,
                    statements.commits as f64 / self.seconds
                ),
            ));
            rows.push((
                format!("{phase}: most frequent statements (calls in the window)"),
                statements
                    .top
                    .iter()
                    .take(10)
                    .map(|(calls, query)| format!("{calls} `{}`", query.replace('|', "/")))
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
        rows.push((
            format!("{phase}: keysync's PostgreSQL connections at the end"),
            self.keysync_connections.to_string(),
        ));
        rows.push((
            format!("{phase}: this process's CPU (the simulated gateways, % of one core)"),
            format!("{:.1}", self.own_cpu_percent),
        ));
        rows.push((
            format!("{phase}: load average before / after (1, 5, 15 min)"),
            format!("{} / {}", self.load_before, self.load_after),
        ));
        rows.push((format!("{phase}: window"), format!("{:.1} s", self.seconds)));
        rows
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
