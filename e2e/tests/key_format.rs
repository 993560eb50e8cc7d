//! Checksummed keys through real Envoy in both modes: keysync issues them, a key whose
//! checksum does not match is refused without reaching keysync's lookups, and keys
//! issued before checksums keep working until the setting turns them off.

use keysync_e2e::key_population::KeyPopulation;
use keysync_e2e::keysync::Keysync;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::postgres::database_of;
use keysync_e2e::stack::Stack;

const MODES: [&str; 2] = ["gateway.yaml", "ext-authz.yaml"];

/// Lookups of keys keysync's memory did not hold, whichever mode asked (the filter's
/// `LookupKey`, ext_authz's `Check`).
fn lookups(keysync: &Keysync) -> f64 {
    ["store", "catch_up"]
        .iter()
        .map(|answered_by| {
            keysync.metric(
                "keysync_misses_total",
                &[&format!("answered_by=\"{answered_by}\"")],
            )
        })
        .sum()
}

/// `key` with one character of its random part changed: the checksum no longer matches.
fn mistyped(key: &str) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    chars[15] = if chars[15] == 'Q' { 'R' } else { 'Q' };
    chars.into_iter().collect()
}

#[test]
fn a_mistyped_key_is_refused_without_a_lookup_in_both_modes() {
    for template in MODES {
        let stack = Stack::start(|options| options.template = template.into());
        let org = stack.create_org("checksums");
        let key = stack.create_key(&org, &[]);
        assert_eq!(
            key.key.len(),
            46,
            "sk_live_, 32 random characters, checksum"
        );
        stack.gateway.wait_for_status("/", &key.key, 200, DEADLINE);

        let before = lookups(&stack.keysync);
        for _ in 0..20 {
            let response = stack.gateway.get_with_key("/orders", &mistyped(&key.key));
            assert_eq!(response.status, 403, "{template}: {}", response.text());
            assert!(
                response.text().contains("invalid_api_key"),
                "{}",
                response.text()
            );
        }
        // A never-issued legacy-form key does reach the lookups, so the figure can move.
        let unknown = stack
            .gateway
            .get_with_key("/orders", "sk_live_NeverIssued000000000001");
        assert_eq!(unknown.status, 403);
        let after = poll::eventually(
            "the unknown key's lookup",
            DEADLINE,
            || lookups(&stack.keysync),
            |&after| after > before,
        );
        assert_eq!(
            after - before,
            1.0,
            "{template}: only the legacy-form unknown key was looked up"
        );
        if template == "gateway.yaml" {
            stack
                .gateway
                .wait_for_stat("bad_checksum", DEADLINE, |count| count == 20);
        }
    }
}

#[test]
fn legacy_keys_work_until_turned_off_in_both_modes() {
    for template in MODES {
        let strict = template == "ext-authz.yaml";
        let keysync_env: &[(&str, &str)] = if strict {
            &[("KEYSYNC_ACCEPT_LEGACY_KEYS", "false")]
        } else {
            &[]
        };
        // ext_authz: keysync is strict from the start; the filter: a second, strict
        // Envoy beside the default one.
        let stack = Stack::start_with(keysync_env, |options| options.template = template.into());
        let org = stack.create_org("legacy");
        let new_key = stack.create_key(&org, &[]);
        let database = database_of(&stack.database_url);
        let legacy = KeyPopulation::new(&stack.postgres, database, &org, "legacy");
        legacy.insert(0..1);
        stack
            .gateway
            .wait_for_status("/", &new_key.key, 200, DEADLINE);

        if strict {
            let response = stack.gateway.get_with_key("/orders", &legacy.secret(0));
            assert_eq!(response.status, 403, "{}", response.text());
        } else {
            stack
                .gateway
                .wait_for_status("/", &legacy.secret(0), 200, DEADLINE);
            let strict_gateway = stack.start_another_gateway(|options| {
                options.auth_config = r#"{"role":"auth","accept_legacy_keys":false}"#.into();
            });
            strict_gateway.wait_for_status("/", &new_key.key, 200, DEADLINE);
            let response = strict_gateway.get_with_key("/orders", &legacy.secret(0));
            assert_eq!(response.status, 403, "{}", response.text());
            strict_gateway.wait_for_stat("bad_checksum", DEADLINE, |count| count == 1);
        }
    }
}
