//! The host seam is the compiler's to keep: the logic crate cannot call proxy-wasm if
//! proxy-wasm is nowhere in its dependency tree. `cargo tree` says so for the core, and
//! (so that this test can fail) says the opposite for the proxy-wasm adapter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

/// The packages `cargo tree` lists for `package`, every kind of dependency included
/// (normal, build and dev), as `cargo tree -p <package>` prints them.
fn tree(package: &str) -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--locked",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(workspace)
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_core_has_no_proxy_wasm_anywhere_in_its_dependency_tree() {
    let core = tree("keysync-filter-core");
    assert!(
        core.contains("keysync-contract"),
        "the tree was read: {core}"
    );
    assert!(!core.contains("proxy-wasm"), "{core}");
}

#[test]
fn the_wasm_adapter_is_where_proxy_wasm_comes_in() {
    let adapter = tree("keysync-filter");
    assert!(adapter.contains("proxy-wasm"), "{adapter}");
    assert!(adapter.contains("keysync-filter-core"), "{adapter}");
}
