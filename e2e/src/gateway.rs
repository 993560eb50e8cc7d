//! A real Envoy running one of the configurations shipped in `envoy/`, rendered by
//! `envoy/render.py` exactly as `make run` renders it, with the built filter `.wasm`.

use crate::http::{self, Response};
use crate::paths;
use crate::process::Process;
use crate::scratch::ScratchDir;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct GatewayOptions {
    /// A template under `envoy/`.
    pub template: String,
    pub keysync_grpc: SocketAddr,
    /// `BACKEND_URLS`.
    pub backends: String,
    /// The auth filter's plugin configuration (JSON).
    pub auth_config: String,
    /// The sync service's plugin configuration (JSON).
    pub sync_config: String,
    /// Envoy worker threads.
    pub concurrency: u32,
    /// Extra environment for the renderer (other templates' fields).
    pub env: Vec<(String, String)>,
}

impl GatewayOptions {
    pub fn new(keysync_grpc: SocketAddr, backends: impl Into<String>) -> Self {
        GatewayOptions {
            template: "gateway.yaml".into(),
            keysync_grpc,
            backends: backends.into(),
            auth_config: r#"{"role":"auth"}"#.into(),
            sync_config: r#"{"role":"sync","refresh_interval":"2s","max_retry_interval":"1s"}"#
                .into(),
            concurrency: 2,
            env: Vec::new(),
        }
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

impl Gateway {
    pub fn start(options: GatewayOptions) -> Gateway {
        let dir = ScratchDir::new("envoy").expect("temp dir for envoy");
        let mut env = vec![
            ("GATEWAY_ADDRESS".to_string(), "127.0.0.1".to_string()),
            ("GATEWAY_PORT".into(), "0".into()),
            ("ENVOY_ADMIN_PORT".into(), "0".into()),
            ("KEYSYNC_GRPC_ADDR".into(), options.keysync_grpc.to_string()),
            ("BACKEND_URLS".into(), options.backends.clone()),
            ("KEYSYNC_AUTH_CONFIG".into(), options.auth_config.clone()),
            ("KEYSYNC_SYNC_CONFIG".into(), options.sync_config.clone()),
            (
                "KEYSYNC_FILTER_WASM".into(),
                paths::filter_wasm().display().to_string(),
            ),
        ];
        env.extend(options.env.iter().cloned());
        let config = render(&options.template, &env);
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, config).expect("write envoy config");
        let admin_path = dir.path().join("admin-address");

        let mut command = Command::new(paths::envoy_bin());
        command
            .arg("-c")
            .arg(&config_path)
            .arg("--concurrency")
            .arg(options.concurrency.to_string())
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-level")
            .arg("info");
        let process = Process::spawn("envoy", command);

        let deadline = Instant::now() + Duration::from_secs(60);
        let admin = loop {
            if let Ok(text) = std::fs::read_to_string(&admin_path) {
                if let Ok(addr) = text.trim().parse::<SocketAddr>() {
                    break addr;
                }
            }
            if let Some(status) = process.exit_status() {
                panic!("envoy exited ({status}) before serving:\n{}", process.log());
            }
            assert!(
                Instant::now() < deadline,
                "envoy wrote no admin address:\n{}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let addr = loop {
            if let Some(addr) = listener_addr(admin, "gateway") {
                if http::get(admin, "/ready", &[]).is_ok_and(|r| r.status == 200) {
                    break addr;
                }
            }
            if let Some(status) = process.exit_status() {
                panic!("envoy exited ({status}) before serving:\n{}", process.log());
            }
            assert!(
                Instant::now() < deadline,
                "envoy's gateway listener did not come up:\n{}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Gateway {
            process,
            addr,
            admin,
            config_path,
            _dir: dir,
        }
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

    /// Polls `GET path` with `key` until the status is `status`; returns that response.
    pub fn wait_for_status(
        &self,
        path: &str,
        key: &str,
        status: u16,
        timeout: Duration,
    ) -> Response {
        let deadline = Instant::now() + timeout;
        loop {
            let response = self.get_with_key(path, key);
            if response.status == status {
                return response;
            }
            assert!(
                Instant::now() < deadline,
                "expected {status} for GET {path} within {timeout:?}, still {}: {}\nenvoy log tail:\n{}",
                response.status,
                response.text(),
                tail(&self.process.log(), 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The filter's stats (`wasmcustom.keysync.*`), by short name (`allowed`, ...).
    pub fn stats(&self) -> HashMap<String, u64> {
        let response = http::get(
            self.admin,
            "/stats?filter=%5Ewasmcustom%5C.keysync%5C.",
            &[],
        )
        .expect("read envoy stats");
        response
            .text()
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter_map(|(name, value)| {
                let name = name.strip_prefix("wasmcustom.keysync.")?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats().get(name).copied().unwrap_or(0)
    }

    /// Polls until `stat(name)` satisfies `ok` (stats are flushed about once a second).
    pub fn wait_for_stat(&self, name: &str, timeout: Duration, ok: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.stat(name);
            if ok(value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "stat {name} still {value} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the sync service's next completed refresh after log offset `offset`.
    pub fn wait_for_refresh_after(&self, offset: usize, timeout: Duration) -> String {
        self.process
            .wait_for_log_after(offset, "cache refresh complete", timeout)
    }
}

fn listener_addr(admin: SocketAddr, name: &str) -> Option<SocketAddr> {
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

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
