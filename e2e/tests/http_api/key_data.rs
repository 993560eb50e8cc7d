//! What keysync keeps about keys and organizations beyond authentication, through the
//! HTTP API and the CLI alike: an organization's external id (unique: a clash is a 409
//! naming it) and metadata, set at creation and changed later (`PATCH`, `orgs
//! update`); a key's metadata (`PUT`/`DELETE .../metadata`, `keys set-metadata`),
//! returned byte for byte as given; every change in the audit trail; keys listed
//! unused since a time; and keys imported as JSON Lines, all or nothing.

use keysync_e2e::keysync as ks;
use serde_json::{json, Value};

use super::{ok, refused, Service};

/// Metadata with an order and spacing of its own, to see it come back as given.
const METADATA: &str = r#"{"plan": "gold",  "crm": {"id": 42}, "a": [1, 2]}"#;

#[test]
fn organizations_take_a_unique_external_id_and_metadata() {
    let service = Service::start();
    let api = service.api();

    let body = format!(r#"{{"name": "billed", "external_id": "cus_001", "metadata": {METADATA}}}"#);
    let created = api.send("POST", "/v1/orgs", &[], &body);
    assert_eq!(created.status, 201, "{}", created.text());
    // As given: the object's own text, in the answer as it was in the request.
    assert!(created.text().contains(METADATA), "{}", created.text());
    let org = created.json()["org_id"].as_str().unwrap().to_owned();
    assert_eq!(created.json()["external_id"], "cus_001");
    let got = api.get(&format!("/v1/orgs/{org}"));
    assert!(got.text().contains(METADATA), "{}", got.text());
    let got = ok(got, 200);
    assert_eq!(got["external_id"], "cus_001");
    assert_eq!(got["metadata"]["crm"]["id"], 42);

    // Unique: a second organization with the id is a 409 that names it, and no row.
    let message = refused(
        api.post(
            "/v1/orgs",
            json!({"name": "twin", "external_id": "cus_001"}),
        ),
        409,
        "external_id_taken",
    );
    assert!(message.contains("'cus_001'"), "{message}");
    let cli = ks::cli(
        &service.database_url,
        &[
            "orgs",
            "create",
            "--name",
            "twin",
            "--external-id",
            "cus_001",
        ],
    );
    assert!(!cli.status.success());
    let error = String::from_utf8_lossy(&cli.stderr);
    assert!(
        error.contains("external id 'cus_001' already belongs to another organization"),
        "{error}"
    );
    assert_eq!(
        service.sql("SELECT count(*) FROM organizations WHERE name = 'twin'"),
        "0"
    );

    // Bad values are refused before anything is written.
    for bad in [
        json!({"name": "x", "metadata": [1]}),
        json!({"name": "x", "metadata": "text"}),
        json!({"name": "x", "external_id": "has space"}),
        json!({"name": "x", "metadata": {"a": "y".repeat(1100)}}),
    ] {
        let message = refused(api.post("/v1/orgs", bad.clone()), 400, "invalid_request");
        assert!(
            message.contains("invalid metadata") || message.contains("invalid external id"),
            "{bad}: {message}"
        );
    }

    // Changed later: a field left out stays, null clears, a clash is a 409.
    let other = api.create_org("other");
    let path = format!("/v1/orgs/{other}");
    let updated = ok(
        api.send("PATCH", &path, &[], r#"{"external_id": "cus_002"}"#),
        200,
    );
    assert_eq!(updated["external_id"], "cus_002");
    assert_eq!(updated["metadata"], Value::Null);
    assert_eq!(updated["changed"], true);
    let again = ok(
        api.send("PATCH", &path, &[], r#"{"external_id": "cus_002"}"#),
        200,
    );
    assert_eq!(again["changed"], false);
    let with_metadata = api.send(
        "PATCH",
        &path,
        &[],
        &format!(r#"{{"metadata": {METADATA}}}"#),
    );
    assert!(
        with_metadata.text().contains(METADATA),
        "{}",
        with_metadata.text()
    );
    assert_eq!(with_metadata.json()["external_id"], "cus_002");
    let message = refused(
        api.send("PATCH", &path, &[], r#"{"external_id": "cus_001"}"#),
        409,
        "external_id_taken",
    );
    assert!(message.contains("'cus_001'"), "{message}");
    let cleared = ok(
        api.send("PATCH", &path, &[], r#"{"external_id": null}"#),
        200,
    );
    assert_eq!(cleared["external_id"], Value::Null);
    assert!(cleared["metadata"].is_object(), "{cleared}");
    refused(
        api.send("PATCH", &path, &[], r#"{"externalid": "x"}"#),
        400,
        "invalid_request",
    );

    // The CLI: the freed id is taken by `orgs update`; a clash names the id.
    let cli = ks::cli_json(
        &service.database_url,
        &[
            "orgs",
            "update",
            &other,
            "--external-id",
            "cus_003",
            "--clear-metadata",
        ],
    );
    assert_eq!(cli["external_id"], "cus_003");
    assert_eq!(cli["metadata"], Value::Null);
    let clash = ks::cli(
        &service.database_url,
        &["orgs", "update", &other, "--external-id", "cus_001"],
    );
    assert!(!clash.status.success());
    assert!(String::from_utf8_lossy(&clash.stderr).contains("'cus_001'"));
    let listed = ks::cli(&service.database_url, &["orgs", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("EXTERNAL_ID") && listed.contains("cus_003"),
        "{listed}"
    );

    // Every change is in the audit trail, before and after.
    let audit = ok(api.get(&format!("/v1/audit?org_id={other}")), 200);
    let updates: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["action"] == "org.updated")
        .collect();
    // Newest first: the CLI's change, the clear, the metadata, the first id.
    assert_eq!(updates.len(), 4, "{audit}");
    assert_eq!(updates[0]["actor"], "cli");
    assert_eq!(updates[0]["old_value"]["external_id"], Value::Null);
    assert_eq!(updates[0]["new_value"]["external_id"], "cus_003");
    assert_eq!(updates[3]["old_value"]["external_id"], Value::Null);
    assert_eq!(updates[3]["new_value"]["external_id"], "cus_002");
}

#[test]
fn keys_carry_metadata_as_given_and_list_unused() {
    let service = Service::start();
    let api = service.api();
    let org = api.create_org("keys with metadata");
    let body = format!(r#"{{"org_id": "{org}", "name": "tagged", "metadata": {METADATA}}}"#);
    let created = api.send("POST", "/v1/keys", &[], &body);
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(created.text().contains(METADATA), "{}", created.text());
    let key_id = created.json()["key_id"].as_str().unwrap().to_owned();
    let got = api.get(&format!("/v1/keys/{key_id}"));
    assert!(got.text().contains(METADATA), "{}", got.text());
    let got = ok(got, 200);
    assert_eq!(got["last_used_at"], Value::Null);
    assert_eq!(got["imported"], false);

    // Replaced, then cleared; each change audited.
    let path = format!("/v1/keys/{key_id}/metadata");
    let set = ok(api.put(&path, json!({"metadata": {"team": "ops"}})), 200);
    assert_eq!(set["metadata"], json!({"team": "ops"}));
    assert_eq!(set["changed"], true);
    refused(
        api.put(&path, json!({"metadata": 5})),
        400,
        "invalid_request",
    );
    let cleared = ok(api.delete(&path), 200);
    assert_eq!(cleared["metadata"], Value::Null);
    assert_eq!(ok(api.delete(&path), 200)["changed"], false);
    let cli = ks::cli_json(
        &service.database_url,
        &[
            "keys",
            "set-metadata",
            &key_id,
            "--metadata",
            r#"{"b": 1,  "a": 2}"#,
        ],
    );
    assert_eq!(cli["changed"], true);
    let text = ks::cli(&service.database_url, &["keys", "get", &key_id]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("\nmetadata: {\"b\": 1,  \"a\": 2}\n"),
        "{text}"
    );
    let audit = ok(api.get(&format!("/v1/audit?org_id={org}")), 200);
    let changes: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["action"] == "key.metadata_set")
        .collect();
    assert_eq!(changes.len(), 3, "{audit}");
    assert_eq!(changes[1]["old_value"], json!({"team": "ops"}));
    assert_eq!(changes[1]["new_value"], Value::Null);

    // Unused since 30 days: keys created since are left out, the others listed.
    let listed = |query: &str| -> Vec<String> {
        let page = ok(api.get(&format!("/v1/orgs/{org}/keys{query}")), 200);
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["key_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed("?unused_since=30d"), Vec::<String>::new());
    service.sql(&format!(
        "UPDATE api_keys SET created_at = now() - interval '40 days' WHERE id = '{key_id}'"
    ));
    let recent = api.create_key(&org);
    assert_eq!(listed("?unused_since=30d"), std::slice::from_ref(&key_id));
    assert_eq!(listed("").len(), 2, "{recent}");
    let message = refused(
        api.get(&format!("/v1/orgs/{org}/keys?unused_since=soon")),
        422,
        "invalid_value",
    );
    assert!(
        message.starts_with("invalid unused_since 'soon'"),
        "{message}"
    );
}

#[test]
fn keys_are_imported_as_json_lines_all_or_nothing() {
    let service = Service::start();
    let api = service.api();
    let org = api.create_org("importer");
    let path = format!("/v1/orgs/{org}/keys:import");
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let body = format!(
        "{{\"key_hash\": \"{hash}\", \"name\": \"old\", \"prefix\": \"sk_live_Abc\"}}\n\
         {{\"key\": \"sk_live_ImportedOverTheApi00000001\", \"created_at\": \"2023-05-01T00:00:00Z\"}}\n"
    );
    let imported = api.send("POST", &path, &[], &body);
    assert!(
        !imported.text().contains("ImportedOverTheApi"),
        "{}",
        imported.text()
    );
    let imported = ok(imported, 201);
    assert_eq!(imported["imported"], 2, "{imported}");
    assert_eq!(imported["keys"][1]["line"], 2);
    assert_eq!(imported["keys"][1]["prefix"], "sk_live_Impo");
    let page = ok(api.get(&format!("/v1/orgs/{org}/keys")), 200);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|key| key["imported"] == true), "{page}");
    let first = items
        .iter()
        .find(|key| key["key_id"] == imported["keys"][1]["key_id"])
        .unwrap();
    assert_eq!(first["created_at"], "2023-05-01T00:00:00Z");

    // A bad line: 422 naming it, and nothing written (the good line before it either).
    let good = "{\"key\": \"sk_live_NotWrittenEither000000001\"}";
    for (bad, expected) in [
        (
            format!("{good}\n{{\"key_hash\": \"{hash}\"}}"),
            "line 2: this key is already stored",
        ),
        (
            format!("{good}\n{{\"key_hash\": \"abc\"}}"),
            "line 2: key_hash has 3 characters",
        ),
        (format!("{good}\n{good}"), "line 2: the same key as line 1"),
        (
            format!("{good}\n{{\"key\": \"x\", \"owner\": 1}}"),
            "line 2: not a key object (unknown field `owner`",
        ),
    ] {
        let message = refused(api.send("POST", &path, &[], &bad), 422, "invalid_import");
        assert!(message.starts_with(expected), "{bad}: {message}");
        assert!(!message.contains("NotWrittenEither"), "{message}");
    }
    assert_eq!(
        ok(api.get(&format!("/v1/orgs/{org}/keys")), 200)["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    refused(
        api.send(
            "POST",
            "/v1/orgs/7d2c4a3e-0000-4000-8000-00000000ffff/keys:import",
            &[],
            good,
        ),
        404,
        "org_not_found",
    );
    let audit = ok(api.get(&format!("/v1/audit?org_id={org}")), 200);
    let imports: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["action"] == "org.keys_imported")
        .collect();
    assert_eq!(imports.len(), 1, "{audit}");
    assert_eq!(imports[0]["new_value"], json!({"imported": 2}));
}

/// A file over the API's limit for other bodies (64 KiB) is still one import: its own
/// limit, `KEYSYNC_API_MAX_IMPORT_BYTES`, is 16 MiB.
#[test]
fn an_import_larger_than_other_bodies_is_one_request() {
    let service = Service::start();
    let api = service.api();
    let org = api.create_org("large-import");
    let body: String = (1..=2_000u32)
        .map(|n| format!("{{\"key_hash\": \"{n:064x}\", \"name\": \"legacy {n}\"}}\n"))
        .collect();
    assert!(body.len() > 64 * 1024, "{} bytes", body.len());
    let imported = ok(
        api.send("POST", &format!("/v1/orgs/{org}/keys:import"), &[], &body),
        201,
    );
    assert_eq!(imported["imported"], 2_000, "{}", imported["imported"]);
    assert_eq!(imported["keys"][1_999]["line"], 2_000);
}
