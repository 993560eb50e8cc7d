//! A real Envoy running one of the configurations shipped in `envoy/`, rendered by
//! `envoy/render.py` exactly as `make run` renders it, with the built filter: the `.wasm`
//! (`gateway.yaml`), the native module (`native.yaml`), or none (`ext-authz.yaml`).
//!
//! `KEYSYNC_E2E_GATEWAY=native` makes the native filter every test's default, so that a
//! suite written for the wasm filter runs against the native one unchanged.

use crate::http::{self, Response};
use crate::paths;
use crate::poll;
use crate::process::Process;
use crate::scratch::ScratchDir;
use keysync_contract::limit::Limit;
use keysync_contract::subject::Subject;
use keysync_contract::{RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_SUBJECT_HEADER};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// How long Envoy may take to serve on its gateway listener after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The variable that picks the default template of [`GatewayOptions::new`].
const DEFAULT_GATEWAY_VARIABLE: &str = "KEYSYNC_E2E_GATEWAY";

/// What enforces the contract in a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKind {
    /// The wasm filter (`gateway.yaml`).
    Wasm,
    /// The native filter, an Envoy dynamic module (`native.yaml`).
    Native,
    /// Envoy's ext_authz filter asking keysync (`ext-authz.yaml`), or no keysync filter.
    None,
}

impl FilterKind {
    pub fn of_template(template: &str) -> FilterKind {
        match template {
            "native.yaml" => FilterKind::Native,
            "gateway.yaml" => FilterKind::Wasm,
            _ => FilterKind::None,
        }
    }

    /// The template under `envoy/` that runs this kind of filter.
    pub fn template(self) -> &'static str {
        match self {
            FilterKind::Wasm => "gateway.yaml",
            FilterKind::Native => "native.yaml",
            FilterKind::None => "ext-authz.yaml",
        }
    }

    /// Where Envoy shows the filter's stats (`keysync.*`).
    pub fn stats_prefix(self) -> &'static str {
        match self {
            FilterKind::Native => "dynamicmodulescustom.keysync.",
            FilterKind::Wasm | FilterKind::None => "wasmcustom.keysync.",
        }
    }

    /// Environment the Envoy process needs for this kind of filter.
    pub fn process_env(self) -> Vec<(String, String)> {
        match self {
            FilterKind::Native => vec![(
                "ENVOY_DYNAMIC_MODULES_SEARCH_PATH".into(),
                paths::native_filter_dir().display().to_string(),
            )],
            FilterKind::Wasm | FilterKind::None => Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// A template under `envoy/`.
    pub template: String,
    pub keysync_grpc: SocketAddr,
    /// `BACKEND_URLS`.
    pub backends: String,
    /// The auth filter's plugin configuration (JSON); empty: `envoy/render.py`'s default
    /// for the template (the route's scopes and name read from the headers the routes set
    /// for the wasm filter, from Envoy itself by the native one).
    pub auth_config: String,
    /// The sync service's plugin configuration (JSON).
    pub sync_config: String,
    /// Envoy worker threads.
    pub concurrency: u32,
    /// Extra environment for the renderer (other templates' fields).
    pub env: Vec<(String, String)>,
    /// The gateway listener's port; 0 lets the OS pick one. A hot restart needs a fixed
    /// port, since the new Envoy asks the old one for the socket bound to it.
    pub port: u16,
    /// Environment of the Envoy process itself (such as libfaketime's).
    pub process_env: Vec<(String, String)>,
    /// Changes to the rendered configuration, applied in order: what an operator adds
    /// to a shipped configuration (another endpoint, an exempt route).
    pub config_edits: Vec<ConfigEdit>,
    /// Hot restart arguments; `None` runs Envoy with `--disable-hot-restart`.
    pub hot_restart: Option<HotRestart>,
    /// Another build of the filter (the crash-test build); `None`: the usual one.
    pub filter_wasm: Option<PathBuf>,
    /// A configuration made already, run as it is instead of [`GatewayOptions::rendered`].
    /// Envoy picks its parser by the file's extension: a configuration of a million
    /// api_key_auth credentials loads in seconds as `.json`, in minutes and gigabytes as
    /// YAML.
    pub config_file: Option<PathBuf>,
    /// Return only once Envoy says it is ready (`/ready` 200); otherwise as soon as the
    /// gateway listener is bound (a test of readiness itself).
    pub wait_ready: bool,
}

/// Replaces the one occurrence of `find` in the rendered configuration with `replace`;
/// the start panics when `find` is not there exactly once (the template changed).
#[derive(Clone, Debug)]
pub struct ConfigEdit {
    pub find: String,
    pub replace: String,
}

/// One generation of a hot-restarting Envoy: `--restart-epoch` and the shared-memory
/// `--base-id` of its family (see `crate::hot_restart`).
#[derive(Clone, Debug)]
pub struct HotRestart {
    pub epoch: u32,
    /// `None` for the first generation: Envoy picks a free base id and writes it to
    /// `base_id_path`, where the next generations read it.
    pub base_id: Option<u32>,
    pub base_id_path: PathBuf,
    /// How long the old generation drains its connections.
    pub drain_time: Duration,
    /// When the new generation tells the old one to exit.
    pub parent_shutdown_time: Duration,
}

impl HotRestart {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--restart-epoch".to_string(), self.epoch.to_string()];
        match self.base_id {
            Some(id) => args.extend(["--base-id".to_string(), id.to_string()]),
            None => args.push("--use-dynamic-base-id".to_string()),
        }
        args.extend([
            "--base-id-path".to_string(),
            self.base_id_path.display().to_string(),
            "--drain-time-s".to_string(),
            self.drain_time.as_secs().to_string(),
            "--parent-shutdown-time-s".to_string(),
            self.parent_shutdown_time.as_secs().to_string(),
        ]);
        args
    }
}

impl GatewayOptions {
    pub fn new(keysync_grpc: SocketAddr, backends: impl Into<String>) -> Self {
        let template = match std::env::var(DEFAULT_GATEWAY_VARIABLE).as_deref() {
            Ok("native") => "native.yaml",
            _ => "gateway.yaml",
        };
        GatewayOptions {
            template: template.into(),
            keysync_grpc,
            backends: backends.into(),
            // As envoy/render.py renders it by default for the template.
            auth_config: String::new(),
            sync_config: r#"{"role":"sync","refresh_interval":"2s","max_retry_interval":"1s"}"#
                .into(),
            concurrency: 2,
            env: Vec::new(),
            port: 0,
            process_env: Vec::new(),
            config_edits: Vec::new(),
            hot_restart: None,
            filter_wasm: None,
            config_file: None,
            wait_ready: true,
        }
    }

    /// Routes named `names` (`BACKEND_URLS`' `name=url` pairs: the route's name is the
    /// usage endpoint), each to the first backend, in place of the backends.
    pub fn name_routes(&mut self, names: &[&str]) {
        let url = self
            .backends
            .split(',')
            .next()
            .map(|backend| backend.split_once('=').map_or(backend, |(_, url)| url))
            .unwrap_or_default()
            .to_string();
        self.backends = names
            .iter()
            .map(|name| format!("{name}={url}"))
            .collect::<Vec<_>>()
            .join(",");
    }

    /// Turns on the probe listener (`ENVOY_PROBE_PORT`) on a free port, with the admin
    /// interface on a fixed free port for it to reach (Envoy's own would be chosen at
    /// start); returns the probe listener's address.
    pub fn probe_listener(&mut self) -> SocketAddr {
        let probe_port = paths::free_port();
        self.env
            .push(("ENVOY_PROBE_PORT".into(), probe_port.to_string()));
        self.env
            .push(("ENVOY_ADMIN_PORT".into(), paths::free_port().to_string()));
        SocketAddr::from(([127, 0, 0, 1], probe_port))
    }

    /// The configuration [`Gateway::start`] runs: `template` rendered with these options
    /// (listener and admin on ports Envoy picks), with `config_edits` applied.
    pub fn rendered(&self) -> String {
        let mut env = vec![
            ("GATEWAY_ADDRESS".to_string(), "127.0.0.1".to_string()),
            ("GATEWAY_PORT".into(), self.port.to_string()),
            ("ENVOY_ADMIN_PORT".into(), "0".into()),
            ("KEYSYNC_GRPC_ADDR".into(), self.keysync_grpc.to_string()),
            ("BACKEND_URLS".into(), self.backends.clone()),
            ("KEYSYNC_AUTH_CONFIG".into(), self.auth_config.clone()),
            ("KEYSYNC_SYNC_CONFIG".into(), self.sync_config.clone()),
            (
                "KEYSYNC_FILTER_WASM".into(),
                self.filter_wasm
                    .clone()
                    .unwrap_or_else(paths::filter_wasm)
                    .display()
                    .to_string(),
            ),
        ];
        env.extend(self.env.iter().cloned());
        let mut config = render(&self.template, &env);
        for edit in &self.config_edits {
            let found = config.matches(edit.find.as_str()).count();
            assert_eq!(
                found, 1,
                "config edit: {:?} occurs {found} times in the rendered {}",
                edit.find, self.template
            );
            config = config.replace(&edit.find, &edit.replace);
        }
        config
    }

    /// Where the template's filter reads a route's required scopes and its name (the usage
    /// endpoint), as `render.py`'s default plugin configuration says: a JSON object's
    /// members, to write beside others.
    pub fn route_facts(&self) -> &'static str {
        match FilterKind::of_template(&self.template) {
            FilterKind::Native => r#""route_scopes":"metadata","usage_endpoints":"route_name""#,
            FilterKind::Wasm | FilterKind::None => {
                r#""route_scopes":"header","usage_endpoints":"header""#
            }
        }
    }

    /// The native filter (`envoy/native.yaml`) in place of the wasm one.
    pub fn native(&mut self) {
        self.template = "native.yaml".into();
    }

    /// Global rate limiting: the filter hands limits to Envoy's rate-limit filter,
    /// which asks keysync (started with `REDIS_URL`).
    pub fn global_rate_limits(&mut self) {
        self.auth_config = r#"{"role":"auth","rate_limit":"global"}"#.into();
        self.env.push(("RATE_LIMIT_MODE".into(), "global".into()));
    }
}

pub struct Gateway {
    pub process: Process,
    /// What enforces the contract in it.
    pub filter: FilterKind,
    /// The gateway listener.
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    _dir: ScratchDir,
}

/// Renders `envoy/<template>` with `env` (plus listener and admin on free ports).
pub fn render(template: &str, env: &[(String, String)]) -> String {
    let root = paths::workspace_root();
    let output = Command::new("python3")
        .arg(root.join("envoy").join("render.py"))
        .arg(root.join("envoy").join(template))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run python3 envoy/render.py");
    assert!(
        output.status.success(),
        "envoy/render.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("rendered config is UTF-8")
}

/// Renders `envoy/<template>` like [`render`] with the built filter module, and runs
/// `envoy --mode validate` on the result; returns what Envoy said.
pub fn validate(template: &str, env: &[(String, String)]) -> Output {
    let mut all = vec![(
        "KEYSYNC_FILTER_WASM".to_string(),
        paths::filter_wasm().display().to_string(),
    )];
    all.extend_from_slice(env);
    let config = render(template, &all);
    let dir = ScratchDir::new("validate").expect("temp dir for a rendered config");
    let path = dir.path().join(template);
    std::fs::write(&path, config).expect("write the rendered config");
    Command::new(paths::envoy_bin())
        .args(["--mode", "validate", "-c"])
        .arg(&path)
        .envs(FilterKind::of_template(template).process_env())
        .output()
        .expect("run envoy --mode validate")
}

impl Gateway {
    pub fn start(options: GatewayOptions) -> Gateway {
        let dir = ScratchDir::new("envoy").expect("temp dir for envoy");
        let config_path = match &options.config_file {
            Some(path) => path.clone(),
            None => {
                let path = dir.path().join("envoy.yaml");
                std::fs::write(&path, options.rendered()).expect("write envoy config");
                path
            }
        };
        let admin_path = dir.path().join("admin-address");

        let filter = FilterKind::of_template(&options.template);
        let mut command = Command::new(paths::envoy_bin());
        command
            .envs(filter.process_env())
            .arg("-c")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-level")
            .arg("info")
            .envs(options.process_env.iter().map(|(k, v)| (k, v)));
        let name = match &options.hot_restart {
            Some(hot_restart) => {
                command.args(hot_restart.args());
                format!("envoy-epoch-{}", hot_restart.epoch)
            }
            None => {
                command.arg("--disable-hot-restart");
                "envoy".to_string()
            }
        };
        let process = Process::spawn(&name, command);

        // Both waits share one deadline: they are one start.
        let deadline = Instant::now() + START_TIMEOUT;
        let exited = |process: &Process| {
            if let Some(status) = process.exit_status() {
                panic!("envoy exited ({status}) before serving:\n{}", process.log());
            }
        };
        let admin = poll::until(deadline, poll::INTERVAL, || {
            let written = std::fs::read_to_string(&admin_path).ok();
            if let Some(addr) = written.as_deref().and_then(|text| text.trim().parse().ok()) {
                return Ok(addr);
            }
            exited(&process);
            Err(())
        })
        .unwrap_or_else(|()| panic!("envoy wrote no admin address:\n{}", process.log()));
        let addr = poll::until(deadline, poll::INTERVAL, || {
            if let Some(addr) = listener_addr(admin, "gateway") {
                if !options.wait_ready
                    || http::get(admin, "/ready", &[]).is_ok_and(|r| r.status == 200)
                {
                    return Ok(addr);
                }
            }
            exited(&process);
            Err(())
        })
        .unwrap_or_else(|()| {
            panic!(
                "envoy's gateway listener did not come up:\n{}",
                process.log()
            )
        });
        Gateway {
            process,
            filter,
            addr,
            admin,
            config_path,
            _dir: dir,
        }
    }

    /// Envoy's `/ready` status (None when its admin does not answer).
    pub fn ready_status(&self) -> Option<u16> {
        http::get(self.admin, "/ready", &[]).ok().map(|r| r.status)
    }

    /// `GET path` through the gateway; panics on a transport error.
    pub fn get(&self, path: &str, headers: &[(&str, &[u8])]) -> Response {
        http::get(self.addr, path, headers)
            .unwrap_or_else(|e| panic!("GET {path} through envoy failed: {e}"))
    }

    /// `GET path` with `Authorization: Bearer <key>`.
    pub fn get_with_key(&self, path: &str, key: &str) -> Response {
        let value = format!("Bearer {key}");
        self.get(path, &[("authorization", value.as_bytes())])
    }

    /// `GET path` with `key` and the global rate-limit descriptor headers, claiming
    /// `subject`'s budget at `limit`: what a client trying to spend someone else's budget
    /// sends. The gateway must drop them.
    pub fn get_with_forged_descriptor(
        &self,
        path: &str,
        key: &str,
        subject: Subject,
        limit: Limit,
    ) -> Response {
        let bearer = format!("Bearer {key}");
        let subject = subject.to_string();
        let limit = limit.to_string();
        self.get(
            path,
            &[
                ("authorization", bearer.as_bytes()),
                (RATE_LIMIT_SUBJECT_HEADER, subject.as_bytes()),
                (RATE_LIMIT_LIMIT_HEADER, limit.as_bytes()),
            ],
        )
    }

    /// Polls `GET path` with `key` until the status is `status`; returns that response.
    pub fn wait_for_status(
        &self,
        path: &str,
        key: &str,
        status: u16,
        timeout: Duration,
    ) -> Response {
        let bearer = format!("Bearer {key}");
        self.wait_for_status_with(
            path,
            &[("authorization", bearer.as_bytes())],
            status,
            timeout,
        )
    }

    /// Polls `GET path` with `headers` until the status is `status`; returns that
    /// response.
    pub fn wait_for_status_with(
        &self,
        path: &str,
        headers: &[(&str, &[u8])],
        status: u16,
        timeout: Duration,
    ) -> Response {
        poll::within(timeout, poll::INTERVAL, || {
            let response = self.get(path, headers);
            if response.status == status {
                Ok(response)
            } else {
                Err(response)
            }
        })
        .unwrap_or_else(|last| {
            panic!(
                "expected {status} for GET {path} within {timeout:?}, still {}: {}\nenvoy log tail:\n{}",
                last.status,
                last.text(),
                self.process.log_tail(30)
            )
        })
    }

    /// The filter's stats (`wasmcustom.keysync.*`, `dynamicmodulescustom.keysync.*`), by
    /// short name (`allowed`, ...).
    pub fn stats(&self) -> HashMap<String, u64> {
        stats_under(self.admin, self.filter.stats_prefix())
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats().get(name).copied().unwrap_or(0)
    }

    /// Polls until `stat(name)` satisfies `ok` (stats are flushed about once a second).
    pub fn wait_for_stat(&self, name: &str, timeout: Duration, ok: impl Fn(u64) -> bool) -> u64 {
        poll::eventually(
            &format!("stat {name}"),
            timeout,
            || self.stat(name),
            |&value| ok(value),
        )
    }

    /// Waits until the sync service has loaded the whole key set and holds its watch
    /// stream open, and the workers have had a tick to see it: the steady state in which
    /// the store decides alone. Fault tests start from there.
    pub fn wait_until_synced(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.process.wait_for_log("cache refresh complete", timeout);
        poll::until(deadline, poll::INTERVAL, || {
            let stats = self.stats();
            let stat = |name: &str| stats.get(name).copied().unwrap_or(0);
            if stat("refresh_ok") >= 1 && stat("stream_connected") == 1 {
                Ok(())
            } else {
                Err(stats)
            }
        })
        .unwrap_or_else(|stats| {
            panic!(
                "the gateway never synced: {stats:?}\n{}",
                self.process.log_tail(30)
            )
        });
        // The workers look at the store's state on their ticks (every 250 ms).
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Waits for the sync service's next completed refresh after log offset `offset`.
    pub fn wait_for_refresh_after(&self, offset: usize, timeout: Duration) -> String {
        self.process
            .wait_for_log_after(offset, "cache refresh complete", timeout)
    }
}

/// The counters and gauges of the Envoy with admin port `admin` whose names start with
/// `prefix` (letters, digits, `_` and `.`), by the rest of their name.
pub fn stats_under(admin: SocketAddr, prefix: &str) -> HashMap<String, u64> {
    // An anchored regex with the dots escaped, percent-encoded: `^a\.b\.`.
    let filter = format!("%5E{}", prefix.replace('.', "%5C."));
    let response =
        http::get(admin, &format!("/stats?filter={filter}"), &[]).expect("read envoy stats");
    response
        .text()
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter_map(|(name, value)| {
            let name = name.strip_prefix(prefix)?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The address of Envoy's listener `name`, once it is bound (asked on the admin port).
pub fn listener_addr(admin: SocketAddr, name: &str) -> Option<SocketAddr> {
    let response = http::get(admin, "/listeners?format=json", &[]).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&response.body).ok()?;
    let listener = json["listener_statuses"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)?;
    let socket = &listener["local_address"]["socket_address"];
    let port = u16::try_from(socket["port_value"].as_u64()?).ok()?;
    (port != 0).then(|| SocketAddr::from(([127, 0, 0, 1], port)))
}
