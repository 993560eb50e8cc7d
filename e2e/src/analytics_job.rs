//! The Flink job of `analytics/` for one test: `python -m keysync_analytics` in PyFlink's
//! virtualenv, a local Flink mini-cluster on the JVM in its process group, stopped with
//! it when dropped. Its temporary files (Flink's RPC jar, 21 MB a start, its caches,
//! the Python workers') go to a scratch directory of its own, removed with it: a job
//! stopped by a signal leaves them behind.
//!
//! The interpreter is `KEYSYNC_PYFLINK_PYTHON` and the Kafka connector's jars
//! `KEYSYNC_FLINK_JARS` (`;`-separated) when set (the Makefile's `analytics-deps`
//! installs both and exports them), else the same places under
//! `~/.cache/keysync/pyflink-<version>/`.

use std::path::PathBuf;
use std::process::Command;

use crate::paths::workspace_root;
use crate::process::Process;
use crate::scratch::ScratchDir;

/// The PyFlink version the Makefile installs.
pub const FLINK_VERSION: &str = "2.0.2";
/// What the job prints once its pipeline is built and handed to Flink.
pub const SUBMITTED_LINE: &str = "keysync-analytics: reading";

/// A running job.
pub struct AnalyticsJob {
    // Declared first: stopped before its scratch directory goes.
    process: Process,
    _scratch: ScratchDir,
}

impl AnalyticsJob {
    /// Starts the job against `brokers` with `settings` (its `KEYSYNC_ANALYTICS_*` and
    /// `KEYSYNC_ANOMALY_*`). Panics when PyFlink is not installed.
    pub fn start(brokers: &str, settings: &[(&str, &str)]) -> AnalyticsJob {
        let python = python();
        let jars = jars();
        let scratch = ScratchDir::new("flink-job")
            .unwrap_or_else(|error| panic!("flink-job: no scratch directory: {error}"));
        let tmp = scratch.path().display().to_string();
        let mut command = Command::new(&python);
        command
            // PyFlink's launcher passes JVM_ARGS to the JVM; Python takes TMPDIR.
            .env("JVM_ARGS", format!("-Djava.io.tmpdir={tmp}"))
            .env("TMPDIR", &tmp)
            .args(["-m", "keysync_analytics"])
            .current_dir(workspace_root().join("analytics"))
            .env("KEYSYNC_ANALYTICS_BROKERS", brokers)
            .env("KEYSYNC_FLINK_JARS", jars)
            // Flink's own logs stay in its log directory; the job's lines come through.
            .env("PYTHONUNBUFFERED", "1");
        for (name, value) in settings {
            command.env(name, value);
        }
        AnalyticsJob {
            process: Process::spawn("flink-job", command),
            _scratch: scratch,
        }
    }

    /// The job's output so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Whether it still runs (a job that fails ends the process).
    pub fn is_running(&self) -> bool {
        self.process.exit_status().is_none()
    }
}

fn cache() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(format!(".cache/keysync/pyflink-{FLINK_VERSION}")))
}

fn python() -> PathBuf {
    let path = std::env::var_os("KEYSYNC_PYFLINK_PYTHON")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .or_else(|| cache().map(|dir| dir.join("bin/python")))
        .unwrap_or_default();
    if !path.is_file() {
        panic!(
            "PyFlink's python not found at {} (set KEYSYNC_PYFLINK_PYTHON): \
             `make analytics-deps` installs it",
            path.display()
        );
    }
    path
}

fn jars() -> String {
    if let Some(jars) = std::env::var("KEYSYNC_FLINK_JARS")
        .ok()
        .filter(|jars| !jars.is_empty())
    {
        return jars;
    }
    let dir = cache().unwrap_or_default().join("connector-jars");
    let jars: Vec<String> = ["flink-connector-kafka.jar", "kafka-clients.jar"]
        .iter()
        .map(|jar| dir.join(jar))
        .inspect(|path| {
            if !path.is_file() {
                panic!(
                    "{} not found (set KEYSYNC_FLINK_JARS): `make analytics-deps` installs it",
                    path.display()
                )
            }
        })
        .map(|path| path.display().to_string())
        .collect();
    jars.join(";")
}
