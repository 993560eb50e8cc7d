//! `echo-backend`: the demo and test upstream. Answers every HTTP request with 200 and a
//! JSON description of it (see `keysync_e2e::echo`).
//!
//! Prints exactly one line, `echo-backend listening on 127.0.0.1:PORT`, once bound
//! (`--listen 127.0.0.1:0` picks a free port), and exits on SIGTERM or SIGINT.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(about = "HTTP server that answers every request with a JSON echo of it")]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "ECHO_LISTEN", default_value = "127.0.0.1:3000")]
    listen: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let (mut terminate, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("echo-backend: cannot handle signals: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(&args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("echo-backend: cannot listen on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let address = match listener.local_addr() {
        Ok(address) => address,
        Err(error) => {
            eprintln!("echo-backend: cannot read the listening address: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("echo-backend listening on {address}");
    // Tests wait for that line in a log file, so it must not sit in a buffer.
    let _ = std::io::stdout().flush();

    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    match keysync_e2e::echo::serve_until(listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("echo-backend: {error}");
            ExitCode::FAILURE
        }
    }
}
