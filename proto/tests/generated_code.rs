//! Regenerates the checked-in Rust code from `keysync/v1/keysync.proto` and fails on any
//! difference, so neither a build nor a user ever needs `protoc`.
//!
//! After editing the `.proto`, run `KEYSYNC_BLESS=1 cargo test -p keysync-proto` to rewrite
//! the files under `src/gen/`.
#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};

const PROTO: &str = "keysync/v1/keysync.proto";
const MESSAGES: &str = "src/gen/keysync.v1.rs";
const SERVICES: &str = "src/gen/keysync.v1.tonic.rs";

fn generate(service: bool, out_dir: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile([PROTO], [root]).expect("parse the .proto");
    let mut config = prost_build::Config::new();
    config.out_dir(out_dir);
    if service {
        let builder = tonic_prost_build::configure()
            .build_client(false)
            .build_server(true)
            .build_transport(false);
        config.service_generator(builder.service_generator());
    }
    config.compile_fds(fds).expect("generate Rust code");
    std::fs::read_to_string(out_dir.join("keysync.v1.rs")).expect("read generated code")
}

fn check(path: &str, expected: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("KEYSYNC_BLESS").is_some() {
        std::fs::write(&path, expected).expect("write generated code");
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is out of date with {PROTO}; run `KEYSYNC_BLESS=1 cargo test -p keysync-proto`",
        path.display()
    );
}

#[test]
fn checked_in_code_matches_the_proto() {
    let tmp = std::env::temp_dir().join(format!("keysync-proto-{}", std::process::id()));
    let messages_dir = tmp.join("messages");
    let services_dir = tmp.join("services");
    std::fs::create_dir_all(&messages_dir).unwrap();
    std::fs::create_dir_all(&services_dir).unwrap();

    let messages = generate(false, &messages_dir);
    let with_services = generate(true, &services_dir);
    // prost writes the messages first and the service generator appends after them.
    let services = with_services
        .strip_prefix(&messages)
        .expect("service code follows the messages");
    std::fs::remove_dir_all(&tmp).ok();

    check(MESSAGES, &messages);
    check(SERVICES, services);
}
