//! The `keysync` binary: parse the command line, set up logging, run the command, and
//! report a failure as one `error: ...` line with exit status 1 (3 for `keys revoke
//! --wait` when some gateway did not confirm).
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
        Err((code, error)) => {
            // Every message already carries its cause, so only the outer one is shown;
            // kept to one line, whatever the cause contains, so scripts can grep it.
            let message = error.to_string().replace(['\n', '\r'], " ");
            eprintln!("error: {message}");
            ExitCode::from(code)
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

/// Runs the command; on failure, the exit status and the error.
fn run(cli: Cli) -> Result<(), (u8, anyhow::Error)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| (1, anyhow!("cannot start the async runtime: {error}")))?;
    // Buffered so that a command which fails half-way prints nothing but its error
    // (unless the error says what it printed stands, like a receipt with gateways missing).
    let mut output = Vec::new();
    let result = runtime.block_on(keysync::cli::run(cli, &mut output));
    let shown = match &result {
        Ok(()) => true,
        Err(error) => error.keeps_output(),
    };
    if shown {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(&output)
            .and_then(|()| stdout.flush())
            .map_err(|error| (1, anyhow!("cannot write output: {error}")))?;
    }
    result.map_err(|error| (error.exit_code(), error.into()))
}
