//! The real `keysync` binary: `serve` as a process on free ports, and the operator CLI.

use crate::paths;
use crate::process::Process;
use std::net::SocketAddr;
use std::ops::Not;
use std::process::{Command, Output};
use std::time::Duration;

pub struct Keysync {
    pub process: Process,
    pub grpc: SocketAddr,
    /// Probes and `/metrics`.
    pub http: SocketAddr,
    /// The operator API (`/v1/`, leak reports); `None` with `KEYSYNC_API_ADDR=off`.
    pub api: Option<SocketAddr>,
}

impl Keysync {
    /// `keysync serve` on ports chosen by the OS; returns once its snapshot is loaded.
    pub fn start(database_url: &str, env: &[(&str, &str)]) -> Keysync {
        Keysync::start_on(database_url, "127.0.0.1:0", env)
    }

    /// Same, on a given gRPC address (to come back on the port Envoy knows).
    pub fn start_on(database_url: &str, grpc_addr: &str, env: &[(&str, &str)]) -> Keysync {
        let mut command = Command::new(paths::keysync_bin());
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("KEYSYNC_GRPC_ADDR", grpc_addr)
            .env("KEYSYNC_HTTP_ADDR", "127.0.0.1:0")
            .env("KEYSYNC_API_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        let process = Process::spawn("keysync", command);
        let line = process.wait_for_log("keysync listening:", Duration::from_secs(30));
        let grpc = field(&line, "grpc=");
        let http = field(&line, "http=");
        let api = line
            .contains(" api=off")
            .not()
            .then(|| field(&line, "api="));
        process.wait_for_log("snapshot loaded", Duration::from_secs(60));
        Keysync {
            process,
            grpc,
            http,
            api,
        }
    }

    /// The operator API's address; panics when keysync serves none.
    pub fn api(&self) -> SocketAddr {
        self.api
            .expect("keysync serves the operator API (KEYSYNC_API_ADDR)")
    }
}

fn field(line: &str, name: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no {name}ADDR in {line:?}"))
}

/// Runs `keysync <args>` against `database_url`.
pub fn cli(database_url: &str, args: &[&str]) -> Output {
    cli_with_env(database_url, args, &[])
}

/// Same, with more environment (`PGSSLMODE`, `HOME`...).
pub fn cli_with_env(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(paths::keysync_bin())
        .args(args)
        .env("DATABASE_URL", database_url)
        .envs(env.iter().copied())
        .output()
        .expect("run keysync")
}

/// Runs `keysync <args>` against `database_url`; panics with its stderr when it fails.
fn cli_ok(database_url: &str, args: &[&str]) -> Output {
    let output = cli(database_url, args);
    assert!(
        output.status.success(),
        "keysync {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `keysync <args> --json` and returns its JSON output; panics on failure.
pub fn cli_json(database_url: &str, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = cli_ok(database_url, &all);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "keysync {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

pub fn migrate(database_url: &str) {
    cli_ok(database_url, &["migrate"]);
}

pub fn create_org(database_url: &str, name: &str) -> String {
    let json = cli_json(database_url, &["orgs", "create", "--name", name]);
    json["org_id"].as_str().expect("org_id").to_string()
}

#[derive(Clone, Debug)]
pub struct CreatedKey {
    pub key: String,
    pub key_id: String,
    pub org_id: String,
}

/// `keys create` for `org_id`, with extra arguments such as `--expires-in 2s`.
pub fn create_key(database_url: &str, org_id: &str, name: &str, extra: &[&str]) -> CreatedKey {
    let mut args = vec!["keys", "create", "--org-id", org_id, "--name", name];
    args.extend_from_slice(extra);
    let json = cli_json(database_url, &args);
    CreatedKey {
        key: json["key"].as_str().expect("key").to_string(),
        key_id: json["key_id"].as_str().expect("key_id").to_string(),
        org_id: json["org_id"].as_str().expect("org_id").to_string(),
    }
}

pub fn revoke_key(database_url: &str, key_id: &str) {
    cli_ok(database_url, &["keys", "revoke", key_id]);
}

/// `keysync orgs set-limit <org_id> <args>`, such as `--rpm 100 --burst 20` or `--clear`.
pub fn set_org_limit(database_url: &str, org_id: &str, args: &[&str]) {
    cli_ok(
        database_url,
        &[&["orgs", "set-limit", org_id], args].concat(),
    );
}

/// `keysync keys set-limit <key_id> <args>`: a limit of the key's own.
pub fn set_key_limit(database_url: &str, key_id: &str, args: &[&str]) {
    cli_ok(
        database_url,
        &[&["keys", "set-limit", key_id], args].concat(),
    );
}

impl Keysync {
    /// A value from keysync's `/metrics`: the first sample whose line starts with `name`
    /// and contains every one of `labels` (such as `result="found"`); 0 when absent.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let text = crate::http::get(self.http, "/metrics", &[])
            .expect("read keysync /metrics")
            .text();
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|line| {
                line.split(['{', ' ']).next() == Some(name)
                    && labels.iter().all(|label| line.contains(label))
            })
            .find_map(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }
}
