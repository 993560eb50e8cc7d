//! `keysync-bench`: measures the system as users run it (real PostgreSQL, keysync,
//! Envoy with the filter), each figure against a baseline taken in the same run.
//! See bench/README.md for what each benchmark does and bench/RESULTS.md for figures.

mod latency;
mod memory;
mod propagation;
mod rss;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "keysync benchmarks (see bench/README.md)")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Time from `keysync keys revoke` (or `create`) returning to Envoy's first 403
    /// (or 200), through the watch stream alone.
    Propagation {
        #[arg(long, default_value_t = 200)]
        keys: usize,
        /// Pause between one key's measurement and the next change. keysync runs at
        /// most one catch-up per 50 ms, so back-to-back changes (0) measure that floor.
        #[arg(long, default_value_t = 100)]
        spacing_ms: u64,
    },
    /// Envoy's resident memory after keys come and go, against an Envoy that only ever
    /// saw the surviving keys.
    Churn {
        /// Keys created and then revoked, in rounds.
        #[arg(long, default_value_t = 100_000)]
        churn: usize,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Keys that stay active throughout.
        #[arg(long, default_value_t = 1_000)]
        active: usize,
    },
}

fn main() {
    match Cli::parse().bench {
        Bench::Propagation { keys, spacing_ms } => {
            propagation::run(keys, std::time::Duration::from_millis(spacing_ms))
        }
        Bench::Churn {
            churn,
            rounds,
            active,
        } => memory::run(churn, rounds, active),
    }
}
