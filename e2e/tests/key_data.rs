//! What keysync keeps about keys beyond authentication, through real Envoy, keysync and
//! PostgreSQL (issue 25, sections 2 and 4): a key's last use comes from the usage
//! flushes of the traffic the gateway served, and `keys list --unused-since` finds the
//! keys nobody used; keys imported from another system (by hash or by text) are
//! admitted through the gateway where legacy keys are accepted (the filter, and
//! ext_authz mode), listed as imported, and refused where they are not; a bad import
//! file writes nothing. With
//! `KEYSYNC_E2E_GATEWAY=native` the same runs through the native filter.

// Tests: an answer without the expected field fails the test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use keysync_e2e::keysync;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::postgres::database_of;
use keysync_e2e::scratch::ScratchDir;
use keysync_e2e::stack::Stack;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The sync service's configuration: usage reported every second.
const SYNC_WITH_USAGE: &str = r#"{"role":"sync","refresh_interval":"2s","max_retry_interval":"1s","usage_flush_interval":"1s"}"#;

/// `keysync keys get KEY_ID --json`.
fn key(stack: &Stack, key_id: &str) -> Value {
    keysync::cli_json(&stack.database_url, &["keys", "get", key_id])
}

/// The ids `keys list --org-id ORG <extra> --json` lists, sorted.
fn listed_ids(stack: &Stack, org: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["keys", "list", "--org-id", org];
    args.extend_from_slice(extra);
    let listed = keysync::cli_json(&stack.database_url, &args);
    let mut ids: Vec<String> = listed
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {listed}"))
        .iter()
        .map(|key| key["key_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
    ids.sort();
    ids
}

#[test]
fn last_use_comes_from_the_traffic_the_gateway_served() {
    let stack = Stack::start(|options| options.sync_config = SYNC_WITH_USAGE.into());
    let org = stack.create_org("used");
    let used = stack.create_key(&org, &[]);
    let idle = stack.create_key(&org, &[]);
    let before = chrono::Utc::now();
    stack.gateway.wait_for_status("/", &used.key, 200, DEADLINE);
    for _ in 0..5 {
        let response = stack.gateway.get_with_key("/orders", &used.key);
        assert_eq!(response.status, 200, "{}", response.text());
    }

    // Once a flush has passed: the used key has the minute of its use, the idle one none.
    let last_used = poll::within(Duration::from_secs(20), poll::INTERVAL, || {
        let answer = key(&stack, &used.key_id);
        match answer["last_used_at"].as_str() {
            Some(at) => Ok(at.to_owned()),
            None => Err(answer),
        }
    })
    .unwrap_or_else(|last| panic!("the used key never got a last use: {last}"));
    let at = chrono::DateTime::parse_from_rfc3339(&last_used).unwrap();
    assert_eq!(at.timestamp() % 60, 0, "minute resolution: {last_used}");
    let minute_before = before.timestamp() - before.timestamp() % 60;
    assert!(
        at.timestamp() >= minute_before && at.timestamp() <= chrono::Utc::now().timestamp(),
        "{last_used} is not the minute of the traffic (sent after {before})"
    );
    assert_eq!(key(&stack, &idle.key_id)["last_used_at"], Value::Null);
    let listed = keysync::cli_json(&stack.database_url, &["keys", "list", "--org-id", &org]);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key_id"] == used.key_id.as_str())
        .unwrap();
    assert_eq!(row["last_used_at"], last_used.as_str());
    let text = keysync::cli(&stack.database_url, &["keys", "list", "--org-id", &org]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines().next().unwrap().ends_with("LAST_USED"),
        "{text}"
    );
    assert!(text.contains(&last_used), "{text}");

    // --unused-since: a key that existed for the whole period and was not used in it.
    // Keys created since are left out; age them all, and give one a use long ago.
    let database = database_of(&stack.database_url);
    let stale = stack.create_key(&org, &[]);
    stack.postgres.psql(
        database,
        &format!(
            "UPDATE api_keys SET created_at = now() - interval '90 days' WHERE org_id = '{org}';\
             UPDATE api_key_last_used SET last_used_at = date_trunc('minute', now()) - interval '40 days' \
             WHERE key_id = '{}';\
             INSERT INTO api_key_last_used VALUES ('{}', date_trunc('minute', now()) - interval '40 days')",
            used.key_id, stale.key_id
        ),
    );
    // `used` now looks last used 40 days ago too: use it again and wait for the flush.
    let response = stack.gateway.get_with_key("/orders", &used.key);
    assert_eq!(response.status, 200);
    poll::within(Duration::from_secs(20), poll::INTERVAL, || {
        let answer = key(&stack, &used.key_id);
        if answer["last_used_at"].as_str() >= Some(minute_text(minute_before).as_str()) {
            Ok(())
        } else {
            Err(answer)
        }
    })
    .unwrap_or_else(|last| panic!("the new use never moved last_used_at: {last}"));
    let fresh = stack.create_key(&org, &[]);
    assert_eq!(
        listed_ids(&stack, &org, &["--unused-since", "30d"]),
        sorted(&[&idle.key_id, &stale.key_id]),
        "never used and used 40 days ago; not the key used now, nor {} created now",
        fresh.key_id
    );
    assert_eq!(
        listed_ids(&stack, &org, &["--unused-since", "60d"]),
        sorted(&[&idle.key_id]),
    );
    assert_eq!(listed_ids(&stack, &org, &[]).len(), 4);
    let refused = keysync::cli(
        &stack.database_url,
        &["keys", "list", "--org-id", &org, "--unused-since", "soon"],
    );
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("invalid --unused-since 'soon'"), "{error}");
}

fn minute_text(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The hex SHA-256 of a key: what the old gateway stored.
fn hex_sha256(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn imported_keys_are_admitted_where_legacy_keys_are_and_listed_as_imported() {
    let stack = Stack::start(|_| {});
    let org = stack.create_org("imported");
    let issued = stack.create_key(&org, &[]);
    // Keys of the old gateway: 32 characters after the marker, no checksum.
    let by_text = "sk_live_OldGatewayKey0000000000000001";
    let by_hash = "sk_test_OldGatewayKey0000000000000002";
    let expired = "sk_live_OldGatewayKey0000000000000003";
    let scratch = ScratchDir::new("key-import").unwrap();
    let file = scratch.path().join("keys.jsonl");
    std::fs::write(
        &file,
        format!(
            "{{\"key\": \"{by_text}\", \"name\": \"billing\", \"created_at\": \"2024-03-01T00:00:00Z\", \"metadata\": {{\"old_id\": 7,  \"team\": \"billing\"}}}}\n\
             \n\
             {{\"key_hash\": \"{}\", \"name\": \"ci\", \"prefix\": \"sk_test_OldG\", \"expires_at\": null}}\n\
             {{\"key_hash\": \"{}\", \"expires_at\": \"2020-01-01T00:00:00Z\"}}\n",
            hex_sha256(by_hash),
            hex_sha256(expired).to_uppercase()
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let imported = keysync::cli_json(
        &stack.database_url,
        &["keys", "import", "--org-id", &org, "--file", path],
    );
    assert_eq!(imported["imported"], 3, "{imported}");
    let lines: Vec<u64> = imported["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [1, 3, 4]);
    let printed = imported.to_string();
    assert!(
        !printed.contains(by_text),
        "the key is never printed: {printed}"
    );

    // Through the gateway: both live imports work, the expired one does not.
    stack
        .gateway
        .wait_for_status("/", &issued.key, 200, DEADLINE);
    for key in [by_text, by_hash] {
        stack.gateway.wait_for_status("/orders", key, 200, DEADLINE);
    }
    let response = stack.gateway.get_with_key("/orders", expired);
    assert_eq!(response.status, 403, "{}", response.text());

    // Listed as imported, with the prefix, the name, the creation time and the metadata
    // as given.
    let listed = keysync::cli_json(&stack.database_url, &["keys", "list", "--org-id", &org]);
    let rows = listed.as_array().unwrap();
    let row = |key_id: &str| {
        rows.iter()
            .find(|row| row["key_id"] == key_id)
            .unwrap_or_else(|| panic!("{key_id} not listed: {listed}"))
            .clone()
    };
    let first = row(imported["keys"][0]["key_id"].as_str().unwrap());
    assert_eq!(first["imported"], true);
    assert_eq!(first["prefix"], &by_text[..12]);
    assert_eq!(first["name"], "billing");
    assert_eq!(first["created_at"], "2024-03-01T00:00:00Z");
    assert_eq!(first["status"], "active");
    let text = keysync::cli(&stack.database_url, &["keys", "list", "--org-id", &org]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.matches("(imported)").count(), 3, "{text}");
    let one = keysync::cli(
        &stack.database_url,
        &[
            "keys",
            "get",
            imported["keys"][0]["key_id"].as_str().unwrap(),
        ],
    );
    let one = String::from_utf8_lossy(&one.stdout);
    assert!(
        one.contains("metadata: {\"old_id\": 7,  \"team\": \"billing\"}"),
        "{one}"
    );
    let second = row(imported["keys"][1]["key_id"].as_str().unwrap());
    assert_eq!(second["prefix"], "sk_test_OldG");
    assert_eq!(second["name"], "ci");
    assert_eq!(row(&issued.key_id)["imported"], false);
    assert_eq!(
        row(imported["keys"][2]["key_id"].as_str().unwrap())["status"],
        "expired"
    );

    // A gateway that refuses legacy keys refuses imported ones, without a lookup.
    let strict = stack.start_another_gateway(|options| {
        options.auth_config = r#"{"role":"auth","accept_legacy_keys":false}"#.into();
    });
    strict.wait_for_status("/", &issued.key, 200, DEADLINE);
    for key in [by_text, by_hash] {
        let response = strict.get_with_key("/orders", key);
        assert_eq!(response.status, 403, "{}", response.text());
    }

    // The audit trail has the import, once, with the count and no hash.
    let audit = keysync::cli_json(&stack.database_url, &["audit", "--org-id", &org]);
    let records: Vec<&Value> = audit
        .as_array()
        .map(|records| records.iter().collect())
        .unwrap_or_else(|| audit["items"].as_array().unwrap().iter().collect());
    let import = records
        .iter()
        .find(|record| record["action"] == "org.keys_imported")
        .unwrap_or_else(|| panic!("no org.keys_imported: {audit}"));
    assert_eq!(import["new_value"]["imported"], 3);
    assert!(!audit.to_string().contains(&hex_sha256(by_hash)), "{audit}");
}

#[test]
fn a_bad_import_file_names_its_line_and_writes_nothing() {
    let stack = Stack::start(|_| {});
    let org = stack.create_org("careful");
    let present = stack.create_key(&org, &[]);
    let scratch = ScratchDir::new("key-import-bad").unwrap();
    let good = "sk_live_GoodOldKey000000000000000000001";
    let good_line = format!("{{\"key\": \"{good}\"}}");
    let present_line = format!("{{\"key\": \"{}\"}}", present.key);
    let hash = hex_sha256("sk_live_Whatever0000000000000000000000");
    let cases = [
        (
            format!("{good_line}\n{{\"key_hash\": \"{}\"}}\n", &hash[..63]),
            "line 2: key_hash has 63 characters, expected 64 hex digits",
        ),
        (
            format!("{good_line}\n{{\"key_hash\": \"{}zz\"}}\n", &hash[..62]),
            "line 2: key_hash is not hex",
        ),
        (
            format!("{good_line}\n\n{good_line}\n"),
            "line 3: the same key as line 1",
        ),
        (
            format!("{good_line}\n{present_line}\n"),
            "line 2: this key is already stored, as key ",
        ),
        (
            format!("{good_line}\n{{\"key_hash\": \"{hash}\", \"expires\": null}}\n"),
            "line 2: not a key object (unknown field `expires`",
        ),
    ];
    for (index, (text, expected)) in cases.iter().enumerate() {
        let file = scratch.path().join(format!("bad-{index}.jsonl"));
        std::fs::write(&file, text).unwrap();
        let output = keysync::cli(
            &stack.database_url,
            &[
                "keys",
                "import",
                "--org-id",
                &org,
                "--file",
                file.to_str().unwrap(),
            ],
        );
        assert!(!output.status.success(), "{text}");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains(expected), "{text}: {error}");
        assert!(error.contains("nothing was imported"), "{error}");
        assert!(
            !error.contains(good) && !error.contains(&present.key),
            "{error}"
        );
    }
    // Nothing was written: the one key there was, and the good key is unknown.
    assert_eq!(listed_ids(&stack, &org, &[]), sorted(&[&present.key_id]));
    stack
        .gateway
        .wait_for_status("/", &present.key, 200, DEADLINE);
    let response = stack.gateway.get_with_key("/orders", good);
    assert_eq!(response.status, 403, "{}", response.text());
    let good_file = scratch.path().join("good.jsonl");
    std::fs::write(&good_file, format!("{good_line}\n")).unwrap();
    let unknown = "7d2c4a3e-0000-4000-8000-00000000ffff";
    let unknown_org = keysync::cli(
        &stack.database_url,
        &[
            "keys",
            "import",
            "--org-id",
            unknown,
            "--file",
            good_file.to_str().unwrap(),
        ],
    );
    assert!(!unknown_org.status.success());
    let error = String::from_utf8_lossy(&unknown_org.stderr);
    assert!(
        error.contains(&format!("organization {unknown} not found")),
        "{error}"
    );
}

/// Imports `keys` (by text) into `org` of `stack`'s database; panics when it fails.
fn import_keys(stack: &Stack, org: &str, keys: &[&str]) {
    let scratch = ScratchDir::new("key-import-ext-authz").unwrap();
    let file = scratch.path().join("keys.jsonl");
    let lines: Vec<String> = keys
        .iter()
        .map(|key| format!("{{\"key\": \"{key}\"}}"))
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let imported = keysync::cli_json(
        &stack.database_url,
        &[
            "keys",
            "import",
            "--org-id",
            org,
            "--file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(imported["imported"], keys.len(), "{imported}");
}

#[test]
fn imported_keys_work_in_ext_authz_mode_until_legacy_keys_are_refused() {
    let key = "sk_live_OldGatewayKeyExtAuthz000000001";
    for (accept, status) in [("true", 200), ("false", 403)] {
        let stack = Stack::start_with(&[("KEYSYNC_ACCEPT_LEGACY_KEYS", accept)], |options| {
            options.template = "ext-authz.yaml".into();
        });
        let org = stack.create_org("imported, ext_authz");
        let issued = stack.create_key(&org, &[]);
        import_keys(&stack, &org, &[key]);
        stack
            .gateway
            .wait_for_status("/", &issued.key, 200, DEADLINE);
        if status == 200 {
            stack.gateway.wait_for_status("/orders", key, 200, DEADLINE);
        } else {
            let response = stack.gateway.get_with_key("/orders", key);
            assert_eq!(response.status, 403, "{}", response.text());
        }
    }
}
