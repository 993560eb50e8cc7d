//! The command line: `install [--hooks DIR] [--wasm DIR] [--native DIR]` and
//! `drain --admin HOST:PORT --wait-seconds N`, parsed into [`Command`] and run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::drain::{self, DrainError};
use crate::install::{self, Destinations, InstallError};

pub const USAGE: &str = "\
usage: keysync-pod-hooks install [--hooks DIR] [--wasm DIR] [--native DIR]
         copies this program into DIR (--hooks), the plugin.wasm beside it into
         DIR (--wasm) and the libkeysync_filter_native.so beside it into DIR
         (--native)
       keysync-pod-hooks drain --admin HOST:PORT --wait-seconds N
         starts the graceful drain of the Envoy whose admin interface is HOST:PORT,
         then waits N seconds";

/// How long the admin call may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Install(Destinations),
    Drain { admin: SocketAddr, wait: Duration },
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}\n{USAGE}")]
    Usage(String),
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("cannot tell where this program is: {0}")]
    OwnPath(std::io::Error),
    /// The drain could not start; the hook still waited.
    #[error(transparent)]
    Drain(#[from] DrainError),
}

/// Parses the arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, CommandError> {
    let usage = |message: String| CommandError::Usage(message);
    let (name, rest) = args
        .split_first()
        .ok_or_else(|| usage("no command".to_owned()))?;
    let mut options = rest.chunks(2);
    match name.as_str() {
        "install" => {
            let mut to = Destinations::default();
            for pair in options.by_ref() {
                match pair {
                    [flag, value] if flag == "--hooks" => to.hooks = Some(PathBuf::from(value)),
                    [flag, value] if flag == "--wasm" => to.wasm = Some(PathBuf::from(value)),
                    [flag, value] if flag == "--native" => to.native = Some(PathBuf::from(value)),
                    other => return Err(usage(format!("install: unexpected {other:?}"))),
                }
            }
            if to == Destinations::default() {
                return Err(usage("install: nothing to install".to_owned()));
            }
            Ok(Command::Install(to))
        }
        "drain" => {
            let (mut admin, mut wait) = (None, None);
            for pair in options.by_ref() {
                match pair {
                    [flag, value] if flag == "--admin" => {
                        admin = Some(value.parse().map_err(|_| {
                            usage(format!(
                                "drain: --admin {value:?} is not HOST:PORT (an IP address)"
                            ))
                        })?)
                    }
                    [flag, value] if flag == "--wait-seconds" => {
                        wait = Some(Duration::from_secs(value.parse().map_err(|_| {
                            usage(format!(
                                "drain: --wait-seconds {value:?} is not a whole number"
                            ))
                        })?))
                    }
                    other => return Err(usage(format!("drain: unexpected {other:?}"))),
                }
            }
            match (admin, wait) {
                (Some(admin), Some(wait)) => Ok(Command::Drain { admin, wait }),
                _ => Err(usage(
                    "drain: --admin and --wait-seconds are required".to_owned(),
                )),
            }
        }
        other => Err(usage(format!("unknown command {other:?}"))),
    }
}

/// Parses and runs a command, printing what it did.
pub fn run(args: &[String]) -> Result<(), CommandError> {
    match parse(args)? {
        Command::Install(to) => {
            let program = std::env::current_exe().map_err(CommandError::OwnPath)?;
            for installed in install::install(&program, &to)? {
                println!(
                    "installed {} ({} bytes)",
                    installed.path.display(),
                    installed.bytes
                );
            }
            Ok(())
        }
        Command::Drain { admin, wait } => {
            // Whether or not Envoy heard, the wait lets the Service and the load
            // balancers stop sending this pod new connections before SIGTERM.
            let started = drain::start_drain(admin, ADMIN_TIMEOUT);
            match &started {
                Ok(()) => println!(
                    "envoy at {admin} is draining; stopping in {}s",
                    wait.as_secs()
                ),
                Err(_) => eprintln!(
                    "envoy did not start draining; stopping in {}s anyway",
                    wait.as_secs()
                ),
            }
            std::thread::sleep(wait);
            Ok(started?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn install_takes_any_of_its_destinations() {
        assert_eq!(
            parse(&args("install --hooks /h --wasm /w")).unwrap(),
            Command::Install(Destinations {
                hooks: Some("/h".into()),
                wasm: Some("/w".into()),
                native: None,
            })
        );
        assert_eq!(
            parse(&args("install --hooks /h")).unwrap(),
            Command::Install(Destinations {
                hooks: Some("/h".into()),
                ..Destinations::default()
            })
        );
        assert_eq!(
            parse(&args("install --hooks /h --native /n")).unwrap(),
            Command::Install(Destinations {
                hooks: Some("/h".into()),
                wasm: None,
                native: Some("/n".into()),
            })
        );
    }

    #[test]
    fn drain_takes_the_admin_address_and_the_wait() {
        assert_eq!(
            parse(&args("drain --admin 127.0.0.1:9901 --wait-seconds 18")).unwrap(),
            Command::Drain {
                admin: "127.0.0.1:9901".parse().unwrap(),
                wait: Duration::from_secs(18)
            }
        );
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong_and_print_the_usage() {
        for (line, expected) in [
            ("", "no command"),
            ("install", "install: nothing to install"),
            ("install --hooks", "install: unexpected [\"--hooks\"]"),
            (
                "drain --admin localhost:9901 --wait-seconds 3",
                "is not HOST:PORT",
            ),
            (
                "drain --admin 127.0.0.1:9901 --wait-seconds soon",
                "is not a whole number",
            ),
            (
                "drain --admin 127.0.0.1:9901",
                "--admin and --wait-seconds are required",
            ),
            ("stop", "unknown command \"stop\""),
        ] {
            let error = parse(&args(line)).unwrap_err().to_string();
            assert!(error.contains(expected), "{line:?}: {error}");
            assert!(error.ends_with(USAGE), "{line:?}: {error}");
        }
    }
}
