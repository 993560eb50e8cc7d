//! `make run`'s script (`demo/run.sh`, what `make run` runs once it has built
//! everything), run as a user would, but from a checkout of its own: a copy of the script
//! beside a link to the workspace's `envoy/`, so that its `.run/` (logs, Envoy's
//! configuration) never lands in the developer's checkout, whose own `make run` may be
//! running. Every port is a free one; the built binaries are named by the variables the
//! script reads.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::paths;
use crate::poll::DEADLINE;
use crate::process::Process;
use crate::scratch::ScratchDir;
use crate::stack::Backend;

/// How long the demo may take to print its curl lines: its PostgreSQL, the migrations,
/// keysync, Envoy and the first sync, on a busy machine.
const START_DEADLINE: Duration = Duration::from_secs(300);

/// A checkout holding `demo/run.sh` (a copy) and `envoy/` (a link), in the system's
/// temp folder.
pub fn checkout() -> ScratchDir {
    checkout_in(&std::env::temp_dir())
}

/// A checkout holding `demo/run.sh` (a copy) and `envoy/` (a link), in `parent`.
pub fn checkout_in(parent: &Path) -> ScratchDir {
    let checkout = ScratchDir::new_in(parent, "demo-checkout").expect("scratch dir");
    let root = paths::workspace_root();
    fs::create_dir(checkout.path().join("demo")).expect("mkdir demo");
    fs::copy(
        root.join("demo").join("run.sh"),
        checkout.path().join("demo").join("run.sh"),
    )
    .expect("copy demo/run.sh");
    std::os::unix::fs::symlink(root.join("envoy"), checkout.path().join("envoy"))
        .expect("link envoy/");
    checkout
}

/// The demo, running.
pub struct Demo {
    pub process: Process,
    /// The gateway's listener (`GATEWAY_PORT`).
    pub gateway: SocketAddr,
}

/// What the demo printed once the gateway was up.
pub struct Printed {
    pub key: String,
    pub key_id: String,
    pub org_id: String,
    /// The web console's address and the admin token printed for it.
    pub console: String,
    pub admin_token: String,
    /// Everything the demo printed so far, curl lines and all.
    pub message: String,
}

impl Demo {
    /// Starts `bash demo/run.sh` in `checkout`: on `database_url`, or without
    /// `DATABASE_URL` (the script's throwaway PostgreSQL, on a free port); `backend` as
    /// `BACKEND_URLS`. `echo_backend` is the built `echo-backend` (the script wants it to
    /// exist even when it does not start it).
    pub fn start(
        checkout: &ScratchDir,
        database_url: Option<&str>,
        backend: &Backend,
        echo_backend: &Path,
    ) -> Demo {
        Demo::start_with_backends(
            checkout,
            database_url,
            &backend.backend_urls(),
            echo_backend,
        )
    }

    /// [`Demo::start`] with `backend_urls` as `BACKEND_URLS` (several backends).
    pub fn start_with_backends(
        checkout: &ScratchDir,
        database_url: Option<&str>,
        backend_urls: &str,
        echo_backend: &Path,
    ) -> Demo {
        let gateway_port = paths::free_port();
        let local = |port: u16| format!("127.0.0.1:{port}");
        let mut command = Command::new("bash");
        command
            .arg(checkout.path().join("demo").join("run.sh"))
            .env("GATEWAY_PORT", gateway_port.to_string())
            .env("ENVOY_ADMIN_PORT", paths::free_port().to_string())
            .env("KEYSYNC_GRPC_ADDR", local(paths::free_port()))
            .env("KEYSYNC_HTTP_ADDR", local(paths::free_port()))
            .env("KEYSYNC_API_ADDR", local(paths::free_port()))
            .env("DEMO_POSTGRES_PORT", paths::free_port().to_string())
            .env("BACKEND_URLS", backend_urls)
            .env("KEYSYNC_BIN", paths::keysync_bin())
            .env("ECHO_BACKEND_BIN", echo_backend)
            .env("ENVOY_BIN", paths::envoy_bin())
            .env("KEYSYNC_FILTER_WASM", paths::filter_wasm())
            .env_remove("GATEWAY_FILTER")
            .env_remove("DATABASE_URL");
        if let Some(url) = database_url {
            command.env("DATABASE_URL", url);
        }
        Demo {
            process: Process::spawn("make run", command),
            gateway: SocketAddr::from(([127, 0, 0, 1], gateway_port)),
        }
    }

    /// Waits for the curl lines, printed once the gateway is up, and reads the demo
    /// key, its id and its organization from them.
    pub fn printed(&self) -> Printed {
        let curl = self
            .process
            .wait_for_log("Authorization: Bearer ", START_DEADLINE);
        let ids = self.process.wait_for_log("Demo org ", DEADLINE);
        let console = self.process.wait_for_log("Web console: ", DEADLINE);
        self.process.wait_for_log("Logs: .run/", DEADLINE);
        Printed {
            key: between(&curl, "Authorization: Bearer ", '\'').to_owned(),
            key_id: between(&ids, "key id ", '.').to_owned(),
            org_id: between(&ids, "Demo org ", ',').to_owned(),
            console: between(&console, "Web console: ", ' ').to_owned(),
            admin_token: between(&console, "(sign in with the admin token ", ')').to_owned(),
            message: self.process.log(),
        }
    }
}

/// The text of `line` between `start` and the next `end`.
fn between<'a>(line: &'a str, start: &str, end: char) -> &'a str {
    let (_, rest) = line
        .split_once(start)
        .unwrap_or_else(|| panic!("{start:?} not in {line:?}"));
    rest.split(end).next().unwrap_or_default()
}
