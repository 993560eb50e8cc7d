//! A database put back to an earlier state, as an operator restoring a backup would:
//! `pg_dump` of one test database now, `pg_restore --clean` of it later, with the client
//! programs of the installation the test cluster runs from (so their versions match).
//!
//! Everything the dump holds comes back, including the revision counter, which then
//! stands lower than the revisions keysync and the gateways have already seen.

use std::path::PathBuf;
use std::process::Command;

use crate::postgres::TestPostgres;
use crate::scratch::ScratchDir;

/// A dump file (custom format) of one database, removed when dropped.
pub struct Dump {
    database: String,
    path: PathBuf,
    _dir: ScratchDir,
}

impl Dump {
    /// `pg_dump --format=custom` of `database` now.
    pub fn take(postgres: &TestPostgres, database: &str) -> Dump {
        let dir = ScratchDir::new("pg-dump")
            .unwrap_or_else(|error| panic!("pg_dump: cannot create a temp dir: {error}"));
        let path = dir.path().join(format!("{database}.dump"));
        run(
            postgres,
            "pg_dump",
            &[
                "--format=custom",
                "--no-owner",
                // The monthly partitions of the usage rollup stay out: PostgreSQL 15's
                // `pg_restore --clean` drops a partition's primary key before its
                // parent's and fails ("cannot drop inherited constraint"). What this
                // fault is about, the keys' history going back, is all in the dump.
                "--exclude-table=public.usage_hourly*",
                "--file",
                &path.display().to_string(),
                database,
            ],
        );
        Dump {
            database: database.to_string(),
            path,
            _dir: dir,
        }
    }

    /// Puts the dumped database back in place of what it holds now: every table is
    /// dropped and recreated from the dump, in one transaction (clients see the old
    /// state or the restored one, never half of it). A restore under live readers
    /// (keysync) can be chosen as a deadlock's victim: its transaction then changed
    /// nothing, and it is run again, as an operator would.
    pub fn restore(&self, postgres: &TestPostgres) {
        let path = self.path.display().to_string();
        let args = [
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--no-owner",
            "--exit-on-error",
            "--dbname",
            &self.database,
            &path,
        ];
        for _ in 1..RESTORE_ATTEMPTS {
            let output = output_of(postgres, "pg_restore", &args);
            if output.status.success() {
                return;
            }
            if !String::from_utf8_lossy(&output.stderr).contains("deadlock detected") {
                fail("pg_restore", &args, &output);
            }
        }
        run(postgres, "pg_restore", &args);
    }
}

/// How often a restore that lost a deadlock is tried in all.
const RESTORE_ATTEMPTS: usize = 3;

/// Runs a client program against the test cluster; panics with its output on failure.
fn run(postgres: &TestPostgres, program: &str, args: &[&str]) {
    let output = output_of(postgres, program, args);
    if !output.status.success() {
        fail(program, args, &output);
    }
}

fn fail(program: &str, args: &[&str], output: &std::process::Output) -> ! {
    panic!(
        "{program} {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs a client program against the test cluster.
fn output_of(postgres: &TestPostgres, program: &str, args: &[&str]) -> std::process::Output {
    let binary = postgres.client_program(program);
    Command::new(&binary)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &postgres.port().to_string(),
        ])
        .args(["--username", postgres.user(), "--no-password"])
        .args(args)
        .env("PGCONNECT_TIMEOUT", "30")
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()))
}
