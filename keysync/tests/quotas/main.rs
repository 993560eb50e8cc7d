//! Monthly quotas, the operator side, against a real PostgreSQL: `orgs set-quota` and
//! `keys set-quota` setting, replacing and clearing rows of `quotas`, each change taking
//! a new `quota_revision` and recording an audit event, this period's `quota_usage` row
//! started from the hourly rollup (forwarded requests only, this period only), a
//! reset day that moves the periods of the organization's key quotas, the listings'
//! used/monthly, every misuse (one line, exit 1, nothing written), and the HTTP API's
//! endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use common::*;
use keysync::admin_api::{router, ApiSettings, ApiState};
use keysync::quota::period::Period;
use keysync_e2e::TestPostgres;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The period with reset day `day` now, as the commands compute it.
fn period(day: u8) -> Period {
    Period::containing(day, Utc::now())
}

/// How many revisions of the list of quotas were taken.
fn revision(postgres: &TestPostgres, url: &str) -> i64 {
    let row = sql(
        postgres,
        url,
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM quota_revision",
    );
    row.parse().unwrap()
}

fn quotas(postgres: &TestPostgres, url: &str) -> String {
    sql(
        postgres,
        url,
        "SELECT subject_kind, subject_id, org_id, monthly_limit, reset_day FROM quotas \
         ORDER BY subject_kind, subject_id",
    )
}

/// The usage row of a subject in the period starting at `start` (empty: none).
fn usage_row(
    postgres: &TestPostgres,
    url: &str,
    kind: u8,
    subject: &str,
    start: DateTime<Utc>,
) -> String {
    sql(
        postgres,
        url,
        &format!(
            "SELECT used FROM quota_usage WHERE subject_kind = {kind} \
             AND subject_id = '{subject}' AND period_start = '{}'",
            text(start)
        ),
    )
}

fn count(postgres: &TestPostgres, url: &str, table: &str) -> String {
    sql(postgres, url, &format!("SELECT count(*) FROM {table}"))
}

/// Rows of the hourly rollup, as a usage flush would have left them.
fn served(postgres: &TestPostgres, url: &str, rows: &[(DateTime<Utc>, &str, &str, u8, i64)]) {
    for (hour, org, key, outcome, requests) in rows {
        sql(
            postgres,
            url,
            &format!(
                "INSERT INTO usage_hourly VALUES ('{}', '{org}', '{key}', {outcome}, \
                 {requests}, 0, {requests}, 0, 0, 0, 0, 0)",
                text(*hour)
            ),
        );
    }
}

/// The audit records of `action`, oldest first.
fn audited(url: &str, action: &str) -> Vec<Value> {
    let all = json(url, &["audit", "--json", "--limit", "1000"]);
    let mut records: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["action"] == action)
        .cloned()
        .collect();
    records.reverse();
    records
}

fn quota_json(monthly: i64, used: i64, day: u8) -> Value {
    let period = period(day);
    json!({
        "monthly": monthly,
        "used": used,
        "reset_day": day,
        "period_start": text(period.start),
        "resets_at": text(period.end),
    })
}

fn listed_org(url: &str, org: &str) -> Value {
    json(url, &["orgs", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["org_id"] == org)
        .unwrap()
        .clone()
}

fn listed_key(url: &str, org: &str, key_id: &str) -> Value {
    json(url, &["keys", "list", "--org-id", org, "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key_id"] == key_id)
        .unwrap()
        .clone()
}

/// The QUOTA cell of the row starting with `id` in a table.
fn quota_cell(table: &str, id: &str) -> String {
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let column = header.iter().position(|name| *name == "QUOTA").unwrap();
    let line = table
        .lines()
        .find(|line| line.starts_with(id))
        .unwrap_or_else(|| panic!("{id} not in {table}"));
    // Cells are separated by two spaces or more; names here have no spaces.
    line.split_whitespace().nth(column).unwrap().to_owned()
}

#[test]
fn orgs_set_quota_counts_usage_before_it_and_moves_its_keys_periods() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let other = create_org(&url, "Other");
    let first = create_key(&url, &org, "first", &[]).key_id;
    let second = create_key(&url, &org, "second", &[]).key_id;
    let start = period(1).start;
    served(
        &postgres,
        &url,
        &[
            // Forwarded this period: counted (1 other, 2..5 answered).
            (start, &org, &first, 2, 100),
            (start, &org, &first, 5, 20),
            (start, &org, &second, 1, 5),
            // Refused by a rate limit, a quota, a policy: not counted.
            (start, &org, &first, 6, 7),
            (start, &org, &first, 7, 3),
            (start, &org, &first, 8, 4),
            // Before this period (day 1), inside the one from day 15.
            (start - TimeDelta::hours(1), &org, &first, 2, 1000),
            // Another organization's.
            (start, &other, &Uuid::new_v4().to_string(), 2, 50),
        ],
    );
    assert_eq!(revision(&postgres, &url), 0);

    let day_1 = period(1);
    assert_eq!(
        ok(&url, &["orgs", "set-quota", &org, "--monthly", "10000"]),
        format!(
            "organization {org}: quota 10000 requests a month, periods starting on day 1 \
             (UTC); 125 used since {}, resets at {}\n",
            text(day_1.start),
            text(day_1.end)
        )
    );
    assert_eq!(quotas(&postgres, &url), format!("1|{org}|{org}|10000|1"));
    assert_eq!(usage_row(&postgres, &url, 1, &org, day_1.start), "125");
    assert_eq!(revision(&postgres, &url), 1);
    let records = audited(&url, "org.quota_set");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["actor"], "cli");
    assert_eq!(records[0]["object_type"], "org");
    assert_eq!(records[0]["object_id"], org.as_str());
    assert_eq!(records[0]["org_id"], org.as_str());
    assert_eq!(records[0]["old_value"], Value::Null);
    assert_eq!(
        records[0]["new_value"],
        json!({"monthly": 10000, "reset_day": 1})
    );

    // The same again changes nothing: no revision, no record.
    let again = json(
        &url,
        &["orgs", "set-quota", &org, "--monthly", "10000", "--json"],
    );
    assert_eq!(
        again,
        json!({"org_id": org, "quota": quota_json(10000, 125, 1), "changed": false})
    );
    assert_eq!(revision(&postgres, &url), 1);
    assert_eq!(audited(&url, "org.quota_set").len(), 1);

    // A new reset day: the period from the 15th holds the earlier 1000 too.
    let moved = json(
        &url,
        &[
            "orgs",
            "set-quota",
            &org,
            "--monthly",
            "20000",
            "--reset-day",
            "15",
            "--json",
        ],
    );
    assert_eq!(moved["quota"], quota_json(20000, 1125, 15));
    assert_eq!(moved["changed"], true);
    assert_eq!(
        usage_row(&postgres, &url, 1, &org, period(15).start),
        "1125"
    );
    // Without --reset-day the day is kept.
    let kept = json(
        &url,
        &["orgs", "set-quota", &org, "--monthly", "30000", "--json"],
    );
    assert_eq!(kept["quota"], quota_json(30000, 1125, 15));
    assert_eq!(quotas(&postgres, &url), format!("1|{org}|{org}|30000|15"));
    assert_eq!(revision(&postgres, &url), 3);
    let records = audited(&url, "org.quota_set");
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[1]["old_value"],
        json!({"monthly": 10000, "reset_day": 1})
    );
    assert_eq!(
        records[1]["new_value"],
        json!({"monthly": 20000, "reset_day": 15})
    );
    assert_eq!(
        records[2]["new_value"],
        json!({"monthly": 30000, "reset_day": 15})
    );

    // Listings: used/monthly, and null or `-` without a quota.
    assert_eq!(listed_org(&url, &org)["quota"], quota_json(30000, 1125, 15));
    assert_eq!(listed_org(&url, &other)["quota"], Value::Null);
    let table = ok(&url, &["orgs", "list"]);
    assert_eq!(quota_cell(&table, &org), "1125/30000", "{table}");
    assert_eq!(quota_cell(&table, &other), "-", "{table}");
    assert_eq!(
        json(&url, &["keys", "list", "--org-id", &org, "--json"])[0]["quota"],
        Value::Null,
        "the org's quota is on the org list"
    );

    // A key's quota follows the org's day: from the 15th, the first key served 1120.
    let key_quota = json(
        &url,
        &["keys", "set-quota", &first, "--monthly", "500", "--json"],
    );
    assert_eq!(key_quota["quota"], quota_json(500, 1120, 15));
    assert_eq!(
        listed_key(&url, &org, &first)["quota"],
        quota_json(500, 1120, 15)
    );

    // Cleared, the org's day is 1 again for its keys: their rows of that period start.
    let usage_rows = count(&postgres, &url, "quota_usage");
    assert_eq!(
        ok(&url, &["orgs", "set-quota", &org, "--clear"]),
        format!("organization {org}: no quota\n")
    );
    assert_eq!(usage_row(&postgres, &url, 2, &first, day_1.start), "120");
    assert_eq!(
        listed_key(&url, &org, &first)["quota"],
        quota_json(500, 120, 1)
    );
    assert_eq!(
        count(&postgres, &url, "quota_usage")
            .parse::<i64>()
            .unwrap(),
        usage_rows.parse::<i64>().unwrap() + 1,
        "one row: the key's; the org's is not started without a quota"
    );
    assert_eq!(listed_org(&url, &org)["quota"], Value::Null);
    assert_eq!(quotas(&postgres, &url), format!("2|{first}|{org}|500|"));
    let cleared = audited(&url, "org.quota_set");
    assert_eq!(cleared.len(), 4);
    assert_eq!(
        cleared[3]["old_value"],
        json!({"monthly": 30000, "reset_day": 15})
    );
    assert_eq!(cleared[3]["new_value"], Value::Null);
    assert_eq!(revision(&postgres, &url), 5);
    // Clearing again changes nothing.
    assert!(ok(&url, &["orgs", "set-quota", &org, "--clear"]).ends_with(" (unchanged)\n"));
    assert_eq!(revision(&postgres, &url), 5);

    // A usage row the flushes raised past the rollup is never lowered.
    sql(
        &postgres,
        &url,
        &format!(
            "UPDATE quota_usage SET used = 9999 WHERE subject_kind = 1 \
             AND subject_id = '{org}' AND period_start = '{}'",
            text(day_1.start)
        ),
    );
    let raised = json(
        &url,
        &["orgs", "set-quota", &org, "--monthly", "10", "--json"],
    );
    assert_eq!(raised["quota"], quota_json(10, 9999, 1));
}

#[test]
fn keys_set_quota_sets_replaces_and_clears_any_key() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "ci", &[]).key_id;
    let plain = create_key(&url, &org, "plain", &[]).key_id;
    let start = period(1).start;
    served(
        &postgres,
        &url,
        &[
            (start, &org, &key, 2, 40),
            (start, &org, &key, 4, 2),
            (start, &org, &key, 7, 9),
            (start, &org, &plain, 2, 1000),
        ],
    );

    let day_1 = period(1);
    assert_eq!(
        ok(&url, &["keys", "set-quota", &key, "--monthly", "100"]),
        format!(
            "key {key}: quota 100 requests a month of its own, periods starting on its \
             organization's day 1 (UTC); 42 used since {}, resets at {}\n",
            text(day_1.start),
            text(day_1.end)
        )
    );
    assert_eq!(quotas(&postgres, &url), format!("2|{key}|{org}|100|"));
    assert_eq!(usage_row(&postgres, &url, 2, &key, day_1.start), "42");
    assert_eq!(revision(&postgres, &url), 1);

    let again = json(
        &url,
        &["keys", "set-quota", &key, "--monthly", "100", "--json"],
    );
    assert_eq!(
        again,
        json!({"key_id": key, "org_id": org, "quota": quota_json(100, 42, 1), "changed": false})
    );
    assert_eq!(revision(&postgres, &url), 1);

    let replaced = json(
        &url,
        &["keys", "set-quota", &key, "--monthly", "200", "--json"],
    );
    assert_eq!(replaced["quota"], quota_json(200, 42, 1));
    assert_eq!(revision(&postgres, &url), 2);

    // Listed for the key itself; `-` and null for a key without one.
    let table = ok(&url, &["keys", "list", "--org-id", &org]);
    assert_eq!(quota_cell(&table, &key), "42/200", "{table}");
    assert_eq!(quota_cell(&table, &plain), "-", "{table}");
    assert_eq!(
        listed_key(&url, &org, &key)["quota"],
        quota_json(200, 42, 1)
    );
    assert_eq!(listed_key(&url, &org, &plain)["quota"], Value::Null);
    assert_eq!(
        json(&url, &["keys", "get", &key, "--json"])["quota"],
        quota_json(200, 42, 1)
    );

    // A revoked key may be given one, like a limit.
    ok(&url, &["keys", "revoke", &plain]);
    let revoked = json(
        &url,
        &["keys", "set-quota", &plain, "--monthly", "5", "--json"],
    );
    assert_eq!(revoked["quota"], quota_json(5, 1000, 1));

    assert_eq!(
        ok(&url, &["keys", "set-quota", &key, "--clear"]),
        format!("key {key}: no quota of its own\n")
    );
    assert_eq!(quotas(&postgres, &url), format!("2|{plain}|{org}|5|"));
    assert_eq!(listed_key(&url, &org, &key)["quota"], Value::Null);
    assert_eq!(revision(&postgres, &url), 4);
    assert!(ok(&url, &["keys", "set-quota", &key, "--clear"]).ends_with(" (unchanged)\n"));
    assert_eq!(revision(&postgres, &url), 4);

    let records = audited(&url, "key.quota_set");
    let values: Vec<(Value, Value, Value)> = records
        .iter()
        .map(|record| {
            (
                record["object_id"].clone(),
                record["old_value"].clone(),
                record["new_value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            (json!(key), Value::Null, json!({"monthly": 100})),
            (json!(key), json!({"monthly": 100}), json!({"monthly": 200})),
            (json!(plain), Value::Null, json!({"monthly": 5})),
            (json!(key), json!({"monthly": 200}), Value::Null),
        ]
    );
    assert!(records
        .iter()
        .all(|record| record["object_type"] == "key" && record["org_id"] == org.as_str()));
}

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

/// The operator API in process, on the test database, with an admin token from the CLI.
struct Api {
    app: axum::Router,
}

impl Api {
    async fn new(url: &str) -> Api {
        let pool = keysync::database::connect(url).await.unwrap();
        Api {
            app: router(ApiState::new(pool, ApiSettings::default())),
        }
    }

    async fn send(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }
}

fn token(url: &str, read_only: bool) -> (String, String) {
    let mut args = vec!["admin-tokens", "create", "--name", "t", "--json"];
    if read_only {
        args.push("--read-only");
    }
    let created = json(url, &args);
    (
        created["token"].as_str().unwrap().to_owned(),
        created["token_id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_http_api_sets_and_clears_quotas_like_the_cli() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "ci", &[]).key_id;
    served(&postgres, &url, &[(period(1).start, &org, &key, 3, 8)]);
    let api = Api::new(&url).await;
    let (admin, admin_id) = token(&url, false);
    let (reader, _) = token(&url, true);
    let org_path = format!("/v1/orgs/{org}/quota");
    let key_path = format!("/v1/keys/{key}/quota");

    let (status, set) = api
        .send(
            &admin,
            "PUT",
            &org_path,
            Some(json!({"monthly": 1000, "reset_day": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(
        set,
        json!({"org_id": org, "quota": quota_json(1000, 8, 1), "changed": true})
    );
    let (status, set) = api
        .send(&admin, "PUT", &key_path, Some(json!({"monthly": 50})))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(
        set,
        json!({"key_id": key, "org_id": org, "quota": quota_json(50, 8, 1), "changed": true})
    );
    let (_, got) = api
        .send(&reader, "GET", &format!("/v1/orgs/{org}"), None)
        .await;
    assert_eq!(got["quota"], quota_json(1000, 8, 1));
    let (_, listed) = api
        .send(&reader, "GET", &format!("/v1/orgs/{org}/keys"), None)
        .await;
    assert_eq!(listed["items"][0]["quota"], quota_json(50, 8, 1));
    for action in ["org.quota_set", "key.quota_set"] {
        let records = audited(&url, action);
        assert_eq!(records.len(), 1, "{action}");
        assert_eq!(records[0]["actor"], "admin_token");
        assert_eq!(records[0]["actor_token_id"], admin_id.as_str());
    }
    assert_eq!(revision(&postgres, &url), 2);

    // Refused: one error shape, nothing written.
    let before = (
        quotas(&postgres, &url),
        count(&postgres, &url, "audit_events"),
        revision(&postgres, &url),
    );
    let unknown = Uuid::new_v4();
    for (token, method, path, body, status, code) in [
        (
            &admin,
            "PUT",
            org_path.clone(),
            Some(json!({"monthly": 0})),
            422,
            "invalid_value",
        ),
        (
            &admin,
            "PUT",
            org_path.clone(),
            Some(json!({"monthly": 1_000_000_000_000_001_i64})),
            422,
            "invalid_value",
        ),
        (
            &admin,
            "PUT",
            org_path.clone(),
            Some(json!({"monthly": 5, "reset_day": 29})),
            422,
            "invalid_value",
        ),
        (
            &admin,
            "PUT",
            org_path.clone(),
            Some(json!({"monthly": "5"})),
            400,
            "invalid_request",
        ),
        (
            &admin,
            "PUT",
            org_path.clone(),
            Some(json!({"reset_day": 5})),
            400,
            "invalid_request",
        ),
        (
            &admin,
            "PUT",
            key_path.clone(),
            Some(json!({"monthly": -1})),
            422,
            "invalid_value",
        ),
        (
            &admin,
            "PUT",
            key_path.clone(),
            Some(json!({"monthly": 5, "reset_day": 3})),
            400,
            "invalid_request",
        ),
        (
            &admin,
            "PUT",
            format!("/v1/orgs/{unknown}/quota"),
            Some(json!({"monthly": 5})),
            404,
            "org_not_found",
        ),
        (
            &admin,
            "DELETE",
            format!("/v1/orgs/{unknown}/quota"),
            None,
            404,
            "org_not_found",
        ),
        (
            &admin,
            "PUT",
            format!("/v1/keys/{unknown}/quota"),
            Some(json!({"monthly": 5})),
            404,
            "key_not_found",
        ),
        (
            &admin,
            "DELETE",
            format!("/v1/keys/{unknown}/quota"),
            None,
            404,
            "key_not_found",
        ),
        (
            &admin,
            "PUT",
            "/v1/keys/nope/quota".to_owned(),
            Some(json!({"monthly": 5})),
            400,
            "invalid_request",
        ),
        (
            &reader,
            "PUT",
            org_path.clone(),
            Some(json!({"monthly": 5})),
            403,
            "read_only_token",
        ),
        (
            &reader,
            "DELETE",
            key_path.clone(),
            None,
            403,
            "read_only_token",
        ),
    ] {
        let (answered, error) = api.send(token, method, &path, body).await;
        assert_eq!(answered.as_u16(), status, "{method} {path}: {error}");
        assert_eq!(error["error"], code, "{method} {path}: {error}");
        assert_eq!(error.as_object().unwrap().len(), 2, "{error}");
    }
    assert_eq!(
        (
            quotas(&postgres, &url),
            count(&postgres, &url, "audit_events"),
            revision(&postgres, &url),
        ),
        before
    );

    // DELETE clears; a second DELETE changes nothing.
    for path in [&key_path, &org_path] {
        let (status, cleared) = api.send(&admin, "DELETE", path, None).await;
        assert_eq!(status, StatusCode::OK, "{cleared}");
        assert_eq!(cleared["quota"], Value::Null);
        assert_eq!(cleared["changed"], true);
        let (_, again) = api.send(&admin, "DELETE", path, None).await;
        assert_eq!(again["changed"], false);
    }
    assert_eq!(quotas(&postgres, &url), "");
    assert_eq!(revision(&postgres, &url), 4);
}

/// A key's quota change that waits for its organization's quota change reads the reset
/// day that change committed, so it starts the usage row of the right period.
#[tokio::test]
async fn a_key_quota_waiting_for_its_org_s_change_follows_the_new_day() {
    use keysync::operations::actor::Actor;
    use keysync::operations::quotas::{self as ops, KeyQuotaChange, Monthly};

    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "ci", &[]).key_id;
    // Served before this month's first: in the period from the 15th only.
    served(&postgres, &url, &[(period(15).start, &org, &key, 2, 30)]);
    let pool = keysync::database::connect(&url).await.unwrap();
    let org_id: Uuid = org.parse().unwrap();
    let key_id: Uuid = key.parse().unwrap();

    // An organization change in progress: it holds the lock and has written day 15.
    let mut transaction = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM organizations WHERE id = $1 FOR NO KEY UPDATE")
        .bind(org_id)
        .execute(&mut *transaction)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO quotas (subject_kind, subject_id, org_id, monthly_limit, reset_day) \
         VALUES (1, $1, $1, 1000, 15)",
    )
    .bind(org_id)
    .execute(&mut *transaction)
    .await
    .unwrap();
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move {
            let monthly = Monthly::new(100).unwrap();
            ops::set_key_quota(
                &pool,
                Actor::Cli,
                key_id,
                KeyQuotaChange::Set(monthly),
                Utc::now(),
            )
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the key's change waits for the lock"
    );
    transaction.commit().await.unwrap();
    let outcome = waiting.await.unwrap().unwrap();
    let quota = outcome.quota.unwrap();
    assert_eq!(quota.reset_day, 15);
    assert_eq!(quota.used, 30);
    assert_eq!(usage_row(&postgres, &url, 2, &key, period(15).start), "30");
}
