//! `keys set-quota`: a key's own quota set, replaced and cleared on any key, and a key's
//! change that waits for its organization's following the day that change committed.

use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    audited, listed_key, period, quota_cell, quota_json, quotas, revision, served, text, usage_row,
};
use crate::common::*;

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
    let mut transaction = org_lock::hold(&pool, org_id).await;
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
    org_lock::until_waiting(&pool, &waiting).await;
    transaction.commit().await.unwrap();
    let outcome = waiting.await.unwrap().unwrap();
    let quota = outcome.quota.unwrap();
    assert_eq!(quota.reset_day, 15);
    assert_eq!(quota.used, 30);
    assert_eq!(usage_row(&postgres, &url, 2, &key, period(15).start), "30");
}
