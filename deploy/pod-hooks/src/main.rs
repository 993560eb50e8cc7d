//! `keysync-pod-hooks install ...` and `keysync-pod-hooks drain ...`: see [`command`].

use std::process::ExitCode;

use keysync_pod_hooks::command;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match command::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
