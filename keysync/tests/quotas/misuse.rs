//! Every misuse of `set-quota`: one line, exit 1, nothing written.

use keysync_e2e::TestPostgres;
use uuid::Uuid;

use super::{count, quotas, revision};
use crate::common::*;

#[test]
fn set_quota_misuse_is_one_line_and_writes_nothing() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "ci", &[]).key_id;
    ok(
        &url,
        &[
            "orgs",
            "set-quota",
            &org,
            "--monthly",
            "100",
            "--reset-day",
            "3",
        ],
    );
    ok(&url, &["keys", "set-quota", &key, "--monthly", "10"]);
    let state = |postgres: &TestPostgres| {
        (
            quotas(postgres, &url),
            count(postgres, &url, "quota_usage"),
            count(postgres, &url, "audit_events"),
            revision(postgres, &url),
        )
    };
    let before = state(&postgres);
    let unknown = Uuid::new_v4().to_string();

    let mut cases: Vec<(Vec<&str>, String)> = Vec::new();
    for (what, id) in [("orgs", org.as_str()), ("keys", key.as_str())] {
        for (args, expected) in [
            (
                vec!["--monthly", "0"],
                "invalid --monthly '0': expected a whole number from 1 to 1000000000000000",
            ),
            (
                vec!["--monthly", "-5"],
                "invalid --monthly '-5': expected a whole number",
            ),
            (
                vec!["--monthly", "1000000000000001"],
                "invalid --monthly '1000000000000001'",
            ),
            (vec!["--monthly", "ten"], "invalid --monthly 'ten'"),
            (vec!["--monthly", "1e3"], "invalid --monthly '1e3'"),
            (vec![], "give --monthly N"),
        ] {
            let mut full = vec![what, "set-quota", id];
            full.extend_from_slice(&args);
            cases.push((full, expected.to_owned()));
        }
    }
    for (args, expected) in [
        (
            vec!["--clear", "--monthly", "5"],
            "--clear cannot be combined with --monthly or --reset-day",
        ),
        (
            vec!["--clear", "--reset-day", "5"],
            "--clear cannot be combined with --monthly or --reset-day",
        ),
        (
            vec!["--monthly", "5", "--reset-day", "29"],
            "invalid --reset-day '29': expected a day of the month from 1 to 28",
        ),
        (
            vec!["--monthly", "5", "--reset-day", "0"],
            "invalid --reset-day '0'",
        ),
        (
            vec!["--monthly", "5", "--reset-day", "first"],
            "invalid --reset-day 'first'",
        ),
        (vec!["--reset-day", "5"], "--reset-day needs --monthly"),
    ] {
        let mut full = vec!["orgs", "set-quota", org.as_str()];
        full.extend_from_slice(&args);
        cases.push((full, expected.to_owned()));
    }
    for (args, expected) in [
        (
            vec!["--clear", "--monthly", "5"],
            "--clear cannot be combined with --monthly",
        ),
        (
            vec!["--monthly", "5", "--reset-day", "3"],
            "a key's quota follows its organization's reset day",
        ),
        (
            vec!["--monthly", "5", "--reset-day"],
            "a key's quota follows its organization's reset day",
        ),
    ] {
        let mut full = vec!["keys", "set-quota", key.as_str()];
        full.extend_from_slice(&args);
        cases.push((full, expected.to_owned()));
    }
    for (args, expected) in &cases {
        assert_one_line_error(&keysync(Some(&url), args), expected);
        // Checked before connecting: the same error without a database.
        assert_one_line_error(&keysync(None, args), expected);
    }
    for (args, expected) in [
        (
            vec!["orgs", "set-quota", &unknown, "--monthly", "5"],
            format!("organization {unknown} not found"),
        ),
        (
            vec!["orgs", "set-quota", &unknown, "--clear"],
            format!("organization {unknown} not found"),
        ),
        (
            vec!["keys", "set-quota", &unknown, "--monthly", "5", "--json"],
            format!("key {unknown} not found"),
        ),
        (
            vec!["keys", "set-quota", &unknown, "--clear"],
            format!("key {unknown} not found"),
        ),
        (
            vec!["keys", "set-quota", "nope", "--monthly", "5"],
            "invalid key id 'nope': not a UUID".to_owned(),
        ),
        (
            vec!["orgs", "set-quota", "nope", "--clear"],
            "invalid org id 'nope': not a UUID".to_owned(),
        ),
    ] {
        assert_one_line_error(&keysync(Some(&url), &args), &expected);
    }
    assert_eq!(state(&postgres), before);

    // --help names the flags; the key's hides --reset-day, which it refuses.
    let help = keysync(None, &["orgs", "set-quota", "--help"]);
    for flag in ["--monthly", "--reset-day", "--clear", "--json"] {
        assert!(help.stdout.contains(flag), "{}", help.stdout);
    }
    let help = keysync(None, &["keys", "set-quota", "--help"]);
    assert!(help.success, "{help:?}");
    assert!(help.stdout.contains("--monthly"), "{}", help.stdout);
    assert!(!help.stdout.contains("--reset-day"), "{}", help.stdout);
}
