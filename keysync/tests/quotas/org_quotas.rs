//! `orgs set-quota`: an organization's quota set, replaced and cleared, usage before it
//! counted, and a new reset day moving its keys' periods.

use chrono::TimeDelta;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{
    audited, count, listed_key, listed_org, period, quota_cell, quota_json, quotas, revision,
    served, text, usage_row,
};
use crate::common::*;

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
