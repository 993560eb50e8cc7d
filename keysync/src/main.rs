//! The `keysync` binary: parse the command line, set up logging, run the command, and
//! report a failure as one `error: ...` line with exit status 1.
#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Parser;
use keysync::cli::Cli;
use tracing_subscriber::EnvFilter;

/// `info`, minus PostgreSQL notices ("relation already exists, skipping" on a second
/// `migrate`), which would break the promise of quiet CLI commands.
const DEFAULT_LOG_FILTER: &str = "info,sqlx::postgres::notice=warn";

fn main() -> ExitCode {
    // Usage errors exit here with clap's own message and status 2.
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Every message already carries its cause, so only the outer one is shown;
            // kept to one line, whatever the cause contains, so scripts can grep it.
            let message = error.to_string().replace(['\n', '\r'], " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| anyhow!("cannot start the async runtime: {error}"))?;
    // Buffered so that a command which fails half-way prints nothing but its error.
    let mut output = Vec::new();
    runtime.block_on(keysync::cli::run(cli, &mut output))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&output)
        .and_then(|()| stdout.flush())
        .map_err(|error| anyhow!("cannot write output: {error}"))?;
    Ok(())
}
