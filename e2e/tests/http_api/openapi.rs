//! The OpenAPI document keysync serves: the checked-in one, and valid OpenAPI 3.1.

use std::path::PathBuf;
use std::process::Command;

use keysync_e2e::paths;
use keysync_e2e::ScratchDir;

use super::{Api, Service};

/// The `openapi-spec-validator` that `make deps` installs into `.venv` (PyPI, pinned),
/// or `OPENAPI_SPEC_VALIDATOR`.
fn spec_validator() -> PathBuf {
    if let Some(path) = std::env::var_os("OPENAPI_SPEC_VALIDATOR") {
        return PathBuf::from(path);
    }
    let path = paths::workspace_root()
        .join(".venv")
        .join("bin")
        .join("openapi-spec-validator");
    assert!(
        path.is_file(),
        "{} is missing: `make deps` installs it (or set OPENAPI_SPEC_VALIDATOR)",
        path.display()
    );
    path
}

#[test]
fn the_served_openapi_document_is_the_checked_in_one_and_valid_openapi_3_1() {
    let service = Service::start();
    let checked_in =
        std::fs::read_to_string(paths::workspace_root().join("keysync").join("openapi.json"))
            .unwrap();
    // Served without a token.
    let served = Api::anonymous(&service.keysync).get("/v1/openapi.json");
    assert_eq!(served.status, 200);
    assert_eq!(
        served.text(),
        checked_in,
        "served and checked-in documents differ"
    );
    let document = served.json();
    assert_eq!(document["openapi"], "3.1.0");

    let scratch = ScratchDir::new("openapi").unwrap();
    let file = scratch.path().join("openapi.json");
    std::fs::write(&file, served.text()).unwrap();
    let output = Command::new(spec_validator()).arg(&file).output().unwrap();
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Every documented operation answers (401 without a token, not 404 or 405).
    let anonymous = Api::anonymous(&service.keysync);
    let id = "7d2c4a3e-0000-4000-8000-00000000ffff";
    for (path, methods) in document["paths"].as_object().unwrap() {
        let path = path.replace("{org_id}", id).replace("{key_id}", id);
        for method in methods.as_object().unwrap().keys() {
            let status = anonymous
                .send(&method.to_uppercase(), &path, &[], "")
                .status;
            let expected = if path == "/v1/openapi.json" { 200 } else { 401 };
            assert_eq!(status, expected, "{method} {path}");
        }
    }
}
