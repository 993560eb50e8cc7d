//! The configuration of Envoy's api_key_auth with as many keys as keysync's filters hold
//! (a million): written once as JSON, which Envoy loads in seconds, where the same
//! configuration as YAML (`envoy/bench.yaml` rendered with a million credentials) took it
//! 67 s and a 4.3 GB peak on this machine, longer than the harness waits for a start.
//!
//! `envoy/bench.yaml` is rendered with one placeholder key, turned into JSON by PyYAML
//! (in the virtualenv, beside the validators), and its credential list replaced.

use crate::bench_keys::secret;
use crate::gateways::baseline_options;
use keysync_e2e::gateway::GatewayOptions;
use keysync_e2e::keysync::Keysync;
use keysync_e2e::paths;
use serde_json::{json, Value};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// YAML in on stdin, the same document as JSON out on stdout.
const YAML_TO_JSON: &str =
    "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)";

/// The two configurations of api_key_auth a run races.
pub struct BuiltIn {
    /// As it comes: the key checked, nothing else done.
    pub plain: GatewayOptions,
    /// Doing the contract's job: the client to the backend in a header, the key taken off.
    pub forwarding: GatewayOptions,
}

/// Writes both configurations of api_key_auth with bench keys `1..=keys`.
pub fn write_both(keysync: &Keysync, keys: usize, dir: &Path) -> BuiltIn {
    BuiltIn {
        plain: write(keysync, keys, dir, false),
        forwarding: write(keysync, keys, dir, true),
    }
}

/// Writes `dir/api-key-auth.json` (`-forwarding.json` with `forwarding`), api_key_auth with
/// bench keys `1..=keys` (clients `client0`, ...), and returns the options that start an
/// Envoy from it.
pub fn write(keysync: &Keysync, keys: usize, dir: &Path, forwarding: bool) -> GatewayOptions {
    let placeholder = dir.join("api-key-placeholder.txt");
    std::fs::write(&placeholder, secret(1)).expect("write the placeholder key file");
    let mut options = baseline_options(keysync, "api-key-auth", Some(&placeholder));
    if forwarding {
        options
            .env
            .push(("BENCH_API_KEY_FORWARDING".into(), "1".into()));
    }
    let mut config = yaml_to_json(&options.rendered());
    let credentials: Vec<Value> = (1..=keys)
        .map(|i| json!({"key": secret(i), "client": format!("client{}", i - 1)}))
        .collect();
    let replaced = replace_credentials(&mut config, credentials);
    assert_eq!(
        replaced, 1,
        "envoy/bench.yaml: one api_key_auth credential list"
    );
    let name = if forwarding {
        "api-key-auth-forwarding.json"
    } else {
        "api-key-auth.json"
    };
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(&config).expect("JSON")).expect("write config");
    options.config_file = Some(path);
    options
}

fn yaml_to_json(yaml: &str) -> Value {
    let python = paths::workspace_root()
        .join(".venv")
        .join("bin")
        .join("python3");
    let mut child = Command::new(&python)
        .args(["-c", YAML_TO_JSON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {} (make deps makes it): {e}", python.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("hand the configuration to PyYAML");
    let output = child.wait_with_output().expect("PyYAML's JSON");
    assert!(
        output.status.success(),
        "PyYAML could not read the configuration"
    );
    serde_json::from_slice(&output.stdout).expect("PyYAML wrote JSON")
}

/// Puts `credentials` in place of every `credentials` list in `value`; returns how many
/// lists it replaced.
fn replace_credentials(value: &mut Value, credentials: Vec<Value>) -> usize {
    let mut credentials = Some(credentials);
    let mut replaced = 0;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (name, child) in map.iter_mut() {
                    if name == "credentials" && child.is_array() {
                        *child = Value::Array(credentials.take().unwrap_or_default());
                        replaced += 1;
                    } else {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
    replaced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_list_is_replaced_where_it_is() {
        let mut config = json!({"http_filters": [
            {"name": "envoy.filters.http.api_key_auth",
             "typed_config": {"credentials": [{"key": "placeholder", "client": "c"}]}},
            {"name": "envoy.filters.http.router"}
        ]});
        let replaced = replace_credentials(
            &mut config,
            vec![json!({"key": "k1"}), json!({"key": "k2"})],
        );
        assert_eq!(replaced, 1);
        assert_eq!(
            config["http_filters"][0]["typed_config"]["credentials"],
            json!([{"key": "k1"}, {"key": "k2"}])
        );
        assert_eq!(
            config["http_filters"][1],
            json!({"name": "envoy.filters.http.router"})
        );
    }
}
